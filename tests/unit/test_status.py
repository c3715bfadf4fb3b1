"""The status store: persisted status, stable ports, events (files in a temp dir)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.engine.sources import port_probe
from reconciler.engine.status import (
    Condition,
    DaemonStatus,
    EnvironmentStatus,
    Health,
    StatusStore,
)


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
    a = store.port_for("acme/a", 18000, 18010, lambda port: port != 18000)
    b = store.port_for("acme/b", 18000, 18010, lambda port: port != 18000)
    assert (a, b) == (18001, 18002)
    assert StatusStore(tmp_path / "status.json").port_for("acme/a", 18000, 18010) == a


def test_a_port_in_use_anywhere_in_the_range_is_skipped(tmp_path: Path) -> None:
    """Another daemon's containers hold 18000-18003 and something else 18005: the third new
    environment of a pass gets 18006, never a port that is already listened on."""
    in_use = {18000, 18001, 18002, 18003, 18005}
    store = StatusStore(tmp_path / "status.json")
    got = [store.port_for(f"acme/e{i}", 18000, 18010, lambda p: p not in in_use) for i in range(3)]
    assert got == [18004, 18006, 18007]


def test_a_full_port_range_is_a_structured_error_for_that_environment(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "status.json")
    store.port_for("acme/a", 18000, 18001)
    with pytest.raises(OdooOpsError) as err:
        store.port_for("acme/b", 18000, 18001, lambda port: port != 18001)
    assert err.value.code == "port_range_exhausted"
    assert "runtime.port_range" in err.value.remediation
    assert store.ports() == {"acme/a": 18000}


def test_theport_probe_sees_a_listening_socket(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        free = port_probe("127.0.0.1")
        assert free(port) is False
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
    assert port_probe("127.0.0.1")(unused) is True


def test_read_only_store_never_writes(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "status.json", read_only=True)
    store.put("acme/qa", EnvironmentStatus("acme", "qa"))
    assert not (tmp_path / "status.json").exists()


def test_serving_and_wanted_revisions_and_expired_branches_survive_a_restart(
    tmp_path: Path,
) -> None:
    """What runs, what is wanted and which branches get no environment are all read back."""
    store = StatusStore(tmp_path / "status.json")
    store.put("acme/qa", EnvironmentStatus("acme", "qa", revision="b" * 40, serving="a" * 40))
    store.set_daemon(DaemonStatus(passes=3, expired={"acme/feature-old": "past its ttl"}))
    again = StatusStore(tmp_path / "status.json")
    status = again.get("acme/qa")
    assert status is not None and (status.serving, status.revision) == ("a" * 40, "b" * 40)
    assert EnvironmentStatus.from_dict(status.to_dict()) == status
    assert again.daemon.expired == {"acme/feature-old": "past its ttl"}
    assert again.daemon.passes == 3


def test_concurrent_writers_of_one_environment_lose_nothing(tmp_path: Path) -> None:
    """A run writing conditions and a backup writing last_backup at the same moment: both
    land (a separate get and put would lose one of them)."""
    import threading
    from dataclasses import replace

    store = StatusStore(tmp_path / "status.json")
    start = threading.Barrier(2)

    def conditions() -> None:
        start.wait()
        for i in range(200):
            store.modify(
                "acme/prod",
                lambda s, i=i: s.with_condition(Condition("Reconciling", True, "Applying", str(i))),
                "acme",
                "prod",
            )

    def backups() -> None:
        start.wait()
        for i in range(200):
            store.modify(
                "acme/prod", lambda s, i=i: replace(s, last_backup=f"b{i}"), "acme", "prod"
            )

    threads = [threading.Thread(target=conditions), threading.Thread(target=backups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = StatusStore(tmp_path / "status.json").get("acme/prod")
    assert final is not None and final.last_backup == "b199"
    assert [c.message for c in final.conditions if c.type == "Reconciling"] == ["199"]
