"""Automatic promotion: the policy (typed data), the decision records, the pure `decide()` with
its statistical gates, and the controller that evaluates rollouts and acts through the rollout
controller (with what it remembers of each rollout, the evidence of a step, and the commands a
decision becomes, each in its own module).

May import rollout, shadow, telemetry (the rolling windows), outcomes (the outcome windows and
their statistics) and the leaves; no grpc.
"""
