"""Observability: JSON logs and the process set-up of every service (`logs`), Prometheus metrics
(`metrics`) and OpenTelemetry traces (`tracing`).

Metric names, log fields and OTEL_* variables are part of the service's interface. A module here may
import the standard library, prometheus_client, opentelemetry, `kazru.settings` and other
observability modules; nothing else of kazru, so every layer may use it.
"""
