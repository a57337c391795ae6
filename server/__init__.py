"""canaryserve: a gRPC model server for ONNX models with canary releases built in."""

__version__ = "0.1.0"
