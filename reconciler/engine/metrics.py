"""Prometheus metrics of one daemon: reconcile passes, apply queue, environments, API latency.

One registry per daemon (no process-global state, so tests and several engines in a process
never share counters). Environment counts by sync and health are read from the status store
at scrape time, so they can never drift from what ``odooops status`` shows; for the same
reason a scrape limited to some environments (a token with environment globs) recounts them
over those environments only, and drops the other environments' series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.engine.status import EnvironmentStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EnvironmentCollector(Collector):
    """The per-environment families; ``visible`` (``project/env`` -> bool) narrows them."""

    NAMES = frozenset(
        {
            "odooops_environments",
            "odooops_backup_last_good_age_seconds",
            "odooops_certificate_expiry_days",
        }
    )

    def __init__(
        self,
        statuses: Callable[[], Mapping[str, EnvironmentStatus]],
        visible: Callable[[str], bool] | None = None,
    ) -> None:
        self._statuses = statuses
        self._visible = visible

    def _shown(self) -> list[EnvironmentStatus]:
        return [
            s for key, s in self._statuses().items() if self._visible is None or self._visible(key)
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "odooops_environments",
            "Environments by sync and health status.",
            labels=["sync", "health"],
        )
        counts = Counter((s.sync.value, s.health.value) for s in self._shown())
        for (sync, health), n in sorted(counts.items()):
            family.add_metric([sync, health], n)
        yield family
        age = GaugeMetricFamily(
            "odooops_backup_last_good_age_seconds",
            "Seconds since the newest good backup of each backed-up environment (the RPO).",
            labels=["project", "env"],
        )
        now = datetime.now(UTC)
        for status in self._shown():
            if status.last_backup:
                taken = _aware(datetime.fromisoformat(status.last_backup))
                age.add_metric([status.project, status.env], (now - taken).total_seconds())
        yield age
        expiry = GaugeMetricFamily(
            "odooops_certificate_expiry_days",
            "Days until the earliest expiry of the certificates of each routed environment's "
            "hosts (negative once expired; none before the first is issued).",
            labels=["project", "env"],
        )
        for status in self._shown():
            if status.certificate_expires:
                expires = _aware(datetime.fromisoformat(status.certificate_expires))
                expiry.add_metric(
                    [status.project, status.env], (expires - now).total_seconds() / 86400
                )
        yield expiry


def _aware(moment: datetime) -> datetime:
    """A stored time without a zone is UTC (every writer records UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _Narrowed(Collector):
    """The daemon's registry with its per-environment families recounted for ``visible``."""

    def __init__(self, registry: CollectorRegistry, environments: _EnvironmentCollector) -> None:
        self._registry = registry
        self._environments = environments

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.name not in _EnvironmentCollector.NAMES:
                yield family
        yield from self._environments.collect()


class Metrics:
    def __init__(self, statuses: Callable[[], Mapping[str, EnvironmentStatus]]) -> None:
        self._statuses = statuses
        self.registry = CollectorRegistry()
        self.registry.register(_EnvironmentCollector(statuses))
        self.pass_seconds = Histogram(
            "odooops_reconcile_duration_seconds",
            "Duration of reconcile passes.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.passes = PromCounter(
            "odooops_reconcile_passes",
            "Reconcile passes by result.",
            ["result"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "odooops_apply_queue_depth",
            "Environments with actions in the pass being applied.",
            registry=self.registry,
        )
        self.state_rejected = Gauge(
            "odooops_state_commit_rejected",
            "1 while the head of the state repository is invalid.",
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "odooops_api_request_duration_seconds",
            "API latency by route and status.",
            ["method", "route", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.backups = PromCounter(
            "odooops_backups",
            "Backups by result (good or failed).",
            ["result"],
            registry=self.registry,
        )
        self.restore_tests = PromCounter(
            "odooops_restore_tests",
            "Scheduled restore tests by result.",
            ["result"],
            registry=self.registry,
        )
        self.webhooks = PromCounter(
            "odooops_webhook_deliveries",
            "Webhook deliveries by forge, event and result.",
            ["forge", "event", "result"],
            registry=self.registry,
        )

    def render(self, visible: Callable[[str], bool] | None = None) -> bytes:
        """The text exposition; with ``visible``, per-environment series of those only."""
        if visible is None:
            return generate_latest(self.registry)
        narrowed = CollectorRegistry(auto_describe=False)
        narrowed.register(_Narrowed(self.registry, _EnvironmentCollector(self._statuses, visible)))
        return generate_latest(narrowed)
