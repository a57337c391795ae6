"""Interop tests: third-party clients and tools against canaryserve (marked interop)."""
