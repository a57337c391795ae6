"""canaryserve: a gRPC model server for ONNX models with canary releases built in.

Packages by concern; imports flow one way, left to right, never back:

    errors, clock, intervals   leaves: the exception tree + status names, the Clock, rate bounds
    ticker                     leaf: the periodic background thread every looping part runs
    coercion                   leaf: one config value checked against its setting's type
    freshness                  leaf: each live replica's latest publication, stale ones dropped
    rollout                    router, stage machine, controller, store
    shadow                     shadow jobs, executor, comparison, aggregates
    telemetry                  tracing, rolling windows, Prometheus metrics   (rollout, shadow)
    outcomes                   who served a request, outcome windows and statistics  (rollout)
    promotion                  policy, decide(), controller (rollout, shadow, telemetry, outcomes)
    serving                    registry, runner, tensors, data plane     (… above, but promotion)
    api                        the gRPC edge                         (everything above)
    fleet                      etcd: shared store, watch, leader     (rollout; gRPC + protos/etcd)
    notify                     webhooks, pre-promotion hook, alerts  (rollout, promotion)
    config                     typed configuration                   (notify, promotion)
    assembly                   what the composition root builds from the config (all above)
    app                        the composition root                  (everything above)
    testing                    fakes beside their seams, for tests

tests/unit/test_layout.py holds the graph to this.
"""

__version__ = "0.1.0"
