"""Prometheus metrics of a daemon (pure: an in-memory status source)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

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


def test_certificate_expiry_is_days_left_per_routed_environment_at_scrape_time() -> None:
    """Computed from the stored expiry when scraped; none for an environment without one."""
    in_ten_days = (datetime.now(UTC) + timedelta(days=10)).isoformat(timespec="seconds")
    expired = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds")
    found = {
        **statuses(),
        "b/w": EnvironmentStatus("b", "w", certificate_expires=in_ten_days),
        "b/v": EnvironmentStatus("b", "v", certificate_expires=expired),
    }
    metrics = Metrics(lambda: found)
    days = {
        labels["env"]: value
        for labels, value in samples(metrics.render(), "odooops_certificate_expiry_days")
    }
    assert set(days) == {"w", "v"}
    assert 9.99 < days["w"] <= 10 and -2.01 < days["v"] <= -2
    narrowed = samples(metrics.render(lambda key: key == "b/v"), "odooops_certificate_expiry_days")
    assert [labels["env"] for labels, _ in narrowed] == ["v"]


def samples(text: bytes, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one family in a text exposition."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text.decode())
        if family.name == name
        for sample in family.samples
    ]
