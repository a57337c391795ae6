"""Unit tests: pure logic, mirroring server/ by package; no server, no sockets, no sleeps."""
