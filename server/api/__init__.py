"""The gRPC edge: thin servicers for the inference (Open Inference Protocol) and admin services,
admin message conversion, bearer-token authentication and the error → status-code translation.

With `server.app`, the only package that imports grpc. It may import serving, rollout, shadow,
promotion and the top-level leaves (errors, clock, config); nothing imports it but the app.
"""
