"""The fleet: rollout state shared by every replica through etcd (docs/fleet.md).

`client` is the etcd v3 client over stubs generated from etcd's own API protos (protos/etcd),
`store` the EtcdStore (a rollout StateStore with a watch) and `election` the Election the
promotion controller runs under; `telemetry` and `outcomes` publish this replica's windows and
merge every replica's. The package talks gRPC, so it lives outside the
transport-free core: it may import `rollout` (the store protocol and the state) and the
leaves; `app` wires it in; nothing in the core imports it.
"""
