"""Prometheus metrics of one service instance (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "rerund_webhook_deliveries",
            "Webhook deliveries by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "rerund_push_events",
            "Push notifications stored, by door and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "rerund_jobs_finished", "Jobs finished, by state", ["state"], registry=self.registry
        )
        self.steps = Counter(
            "rerund_steps_finished",
            "Steps finished, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "rerund_step_duration_seconds",
            "Wall time of one rerun step",
            buckets=(0.1, 0.5, 1, 5, 30, 120, 600, 3600),
            registry=self.registry,
        )
        self.queued = Gauge("rerund_jobs_queued", "Jobs waiting", registry=self.registry)
        self.running = Gauge("rerund_jobs_running", "Jobs running", registry=self.registry)
        self.slurm_pending = Gauge(
            "rerund_slurm_steps_pending",
            "Steps submitted to Slurm and waiting in its queue",
            registry=self.registry,
        )
