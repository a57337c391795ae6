"""Automatic promotion: the policy (typed data), the decision records, the pure `decide()` with
its statistical gates, and the controller that evaluates rollouts and acts through the rollout
controller.

May import rollout, shadow, telemetry (the rolling windows), outcomes (the outcome windows and
their statistics) and the leaves; no grpc.
"""
