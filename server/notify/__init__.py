"""Notifications: rollout events and stable alerts to webhooks, signed, retried, in order.

events      the Event and how audit rows become events (type, severity, Slack text)
signing     the HMAC-SHA256 signature header over a body and a timestamp
transport   one HTTP POST with the standard library (the seam tests and benchmarks fake)
delivery    one receiver: bounded queue, own thread, retries with backoff and jitter
hook        the pre-promotion hook: a URL that must answer 2xx before a step or promotion
alerts      a stable version's error rate crossing a threshold with no rollout running
settings    the typed `[notifications]` configuration
notifier    the fan-out: every event to its receivers and one structured log line
"""
