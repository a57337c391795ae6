"""Observability: OpenTelemetry spans per inference and per shadow run, the span processor that
keeps per-version rolling windows, and the Prometheus exposition (collectors over the server's
state, the process's and each version's resource figures).

May import rollout (routes and stages), shadow (shadow results and reports) and the leaves;
no grpc.
"""
