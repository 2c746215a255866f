"""The operator's view of a running server: the live status page and /metrics."""
