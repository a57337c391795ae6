"""Unit tests of server.telemetry: windows, metrics rendering and tracing."""
