"""Prometheus metrics of a daemon (pure: an in-memory status source)."""

from __future__ import annotations

from reconciler.engine.metrics import Metrics
from reconciler.engine.status import EnvironmentStatus, Health, Sync


def statuses() -> dict[str, EnvironmentStatus]:
    return {
        "a/x": EnvironmentStatus("a", "x", sync=Sync.SYNCED, health=Health.HEALTHY),
        "a/y": EnvironmentStatus("a", "y", sync=Sync.SYNCED, health=Health.HEALTHY),
        "a/z": EnvironmentStatus("a", "z", sync=Sync.OUT_OF_SYNC, health=Health.DEGRADED),
    }


def test_environments_are_counted_by_sync_and_health_at_scrape_time() -> None:
    text = Metrics(statuses).render().decode()
    assert 'odooops_environments{health="Healthy",sync="Synced"} 2.0' in text
    assert 'odooops_environments{health="Degraded",sync="OutOfSync"} 1.0' in text


def test_pass_and_api_metrics_are_exposed_per_registry() -> None:
    """Two daemons in one process never share counters."""
    first, second = Metrics(statuses), Metrics(dict)
    first.passes.labels("ok").inc()
    first.pass_seconds.observe(0.2)
    first.api_seconds.labels("GET", "/v1/environments", "200").observe(0.01)
    text = first.render().decode()
    assert 'odooops_reconcile_passes_total{result="ok"} 1.0' in text
    assert "odooops_reconcile_duration_seconds_count 1.0" in text
    assert 'route="/v1/environments"' in text
    assert "odooops_reconcile_passes_total{" not in second.render().decode()


def test_a_narrowed_scrape_recounts_and_drops_other_environments() -> None:
    """A token limited to some environments sees their series only, the rest unchanged."""
    backed_up = {
        **statuses(),
        "b/w": EnvironmentStatus(
            "b", "w", sync=Sync.SYNCED, health=Health.HEALTHY, last_backup="2030-01-01T00:00:00"
        ),
    }
    metrics = Metrics(lambda: backed_up)
    metrics.passes.labels("ok").inc()
    text = metrics.render(lambda key: key in ("a/x", "a/z")).decode()
    assert 'odooops_environments{health="Healthy",sync="Synced"} 1.0' in text
    assert 'odooops_environments{health="Degraded",sync="OutOfSync"} 1.0' in text
    assert 'project="b"' not in text
    assert 'odooops_reconcile_passes_total{result="ok"} 1.0' in text
    assert 'env="w",project="b"' in metrics.render().decode()
