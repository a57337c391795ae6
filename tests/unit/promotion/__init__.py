"""Unit tests of server.promotion: policy, decisions, gates and the controller."""
