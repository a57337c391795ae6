"""Helpers the test tree shares: real servers for e2e and interop tests."""
