"""Unit tests of server.serving: dtypes, signatures, tensors, runner, registry, data plane."""
