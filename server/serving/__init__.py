"""Serving one request: the rules for model names and versions, the model registry (versions
side by side), the onnxruntime runner, the warm-up of new versions, the dtype table,
signatures, the protobuf ⇄ numpy tensor bridge and the data plane that routes, runs and
encodes; and repository control, the loads and unloads operators ask for (checked against
routing by the rollout controller, and audited); and what a version costs beyond its run time
(footprint: memory taken at load, sampled CPU time of its runs).

May import rollout (the router), shadow (to submit shadow jobs), telemetry (the request's span),
outcomes (who served each request) and the leaves; no grpc — only the data plane and the
tensor bridge touch generated messages.
"""
