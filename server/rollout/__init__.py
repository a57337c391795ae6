"""Rollout state and routing: the pure router over immutable routing-table snapshots, the stage
machine (a model's record and phase, the commands, their pure transitions and the routing
table the states give; `rollout.state` re-exports its public names), the controller that is
its one writer (over the ledger that keeps the states in memory, commits and syncs them, and
the publisher of routing tables), and the durable state store with its audit log.

Imports only the leaves (errors, clock): no grpc, no I/O but the store's own file.
"""
