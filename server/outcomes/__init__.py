"""Business outcomes: who served each request (`served`, a bounded join table the data plane
fills), outcome reports joined to versions (`recorder`), per-version rolling outcome windows
(`windows`), their statistics (`stats`: intervals, differences, lift), the windows' summaries
that merge across a fleet's replicas (`summary`, `publication`, `merged`: the OutcomeSource the
gates and `ab` read) and the A/B view (`ab`).

May import rollout (the router, for routing-key joins and stages) and the leaves; no grpc.
"""
