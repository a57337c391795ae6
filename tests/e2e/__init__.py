"""End-to-end tests: a real server on port 0, real clients (marked e2e)."""
