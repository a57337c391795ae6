"""Unit tests of server.api without a server: status codes, tokens, message conversions."""
