"""Shadow execution off the request path: the work item and its result, the bounded executor,
the per-output comparison, the per-candidate aggregates (each output's running statistics)
and their report.

Imports only the leaves (clock, intervals); it runs any object with a `run` method, so it
needs nothing from serving.
"""
