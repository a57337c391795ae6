"""Unit tests of server.shadow: the executor, comparison and aggregates."""
