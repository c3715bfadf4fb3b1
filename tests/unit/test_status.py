"""The status store: persisted status, stable ports, events (files in a temp dir)."""

from __future__ import annotations

from pathlib import Path

from reconciler.engine.status import Condition, EnvironmentStatus, Health, StatusStore


def test_condition_and_health_changes_become_events_that_survive_a_restart(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "status.json")
    base = EnvironmentStatus("acme", "qa")
    pending = base.with_condition(Condition("Ready", False, "Pending", "create-odoo"))
    store.put("acme/qa", pending)
    store.put("acme/qa", pending)  # nothing changed: no new event
    ready = pending.with_condition(Condition("Ready", True, "Converged", "revision abc"))
    from dataclasses import replace

    store.put_many({"acme/qa": replace(ready, health=Health.HEALTHY)})
    events = StatusStore(tmp_path / "status.json").events("acme/qa")
    assert [(e["type"], e["reason"]) for e in events] == [
        ("Health", "Healthy"),
        ("Ready", "Converged"),
        ("Ready", "Pending"),
    ]


def test_ports_are_stable_and_never_handed_out_twice(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "status.json")
    a = store.port_for("acme/a", 18000, 18010, busy={18000})
    b = store.port_for("acme/b", 18000, 18010, busy={18000})
    assert (a, b) == (18001, 18002)
    assert StatusStore(tmp_path / "status.json").port_for("acme/a", 18000, 18010, set()) == a


def test_read_only_store_never_writes(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "status.json", read_only=True)
    store.put("acme/qa", EnvironmentStatus("acme", "qa"))
    assert not (tmp_path / "status.json").exists()
