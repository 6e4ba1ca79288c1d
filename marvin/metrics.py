"""Prometheus metrics, in a registry of their own so two apps in one process don't collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from marvin.models import Reply

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "marvin_commands_total",
            "Commands handled, by command group and decision",
            ["group", "decision"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "marvin_ack_seconds",
            "Time from receiving a Slack request to answering it",
            ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 3),
            registry=self.registry,
        )
        self.refused = Counter(
            "marvin_refused_total",
            "Deliveries refused at once because the backlog would make answers too late",
            ["kind"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "marvin_outbound_api_errors_total",
            "Failed calls to outside APIs",
            ["api", "method", "error"],
            registry=self.registry,
        )

    def command(self, reply: Reply) -> None:
        group = (reply.command or "unknown").split(" ")[0]
        decision = (reply.denied_by and f"denied:{reply.denied_by}") or reply.kind
        self.commands.labels(group=group, decision=decision).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
