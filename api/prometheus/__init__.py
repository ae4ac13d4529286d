"""A Prometheus-compatible query API (PromQL evaluated over Unity's storage) under /prometheus."""

from unity.api.prometheus.routes import routes

__all__ = ["routes"]
