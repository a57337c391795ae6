"""The parts the composition root (`server.app.App`) assembles from the configuration.

    stores       the state store (SQLite, or etcd with leader election) a server starts on
    policies     per-model settings, server-wide ones where a model sets none, as the policies
                 of placement, scheduling, shadow comparison and promotion; the pre-promotion
                 hook
    access       the admin, inference and outcome authenticators
    adoption     every model with ready versions gets a rollout state, a configured stable
                 version is checked, a replaced version file is audited
    publication  what a published routing table does to the process; who is stable
    sources      what /metrics reads of the registry and the schedulers at scrape time
    grpc_server  the gRPC server: options, interceptors, services, health, reflection, listening,
                 draining

Importing this package imports none of them: a unit test of a pure part starts no server.
"""
