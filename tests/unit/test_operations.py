"""Rules of the data plane that hold before any database is reached (no services needed)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import Desired, Tier
from reconciler.data.lifecycle import OperationBusy
from reconciler.data.operations import DataHost, DataOps
from reconciler.engine.ledger import Ledger
from tests.factories import desired


class Host:
    """Just enough of an engine to resolve environments; the Docker driver is never reached."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.wants = {w.key: w for w in (desired("prod"), desired("qa", Tier.STAGING))}

    @property
    def docker(self) -> Any:
        return None  # handed to Lifecycle; any use of it fails the test with AttributeError

    def desired(self) -> Desired:
        return Desired("c" * 40, self.wants)

    def journal(self) -> Any:
        return None  # no data move starts in these tests

    def database_replaced(
        self, key: object, initialised: bool, revision: str = "", modules: object = None
    ) -> None:
        raise AssertionError("no data move swaps anything in these tests")

    @property
    def instance(self) -> str:
        return "unit"

    def is_initialised(self, want: Any) -> bool:
        return False  # no database was made in these tests


def test_a_protected_export_takes_the_operation_lock_and_never_runs_mid_restore(
    tmp_path: Path,
) -> None:
    """An export of production's live data waits a little for the lock, then is refused with
    nothing sent."""
    ops = DataOps(cast(DataHost, Host(tmp_path)))
    ops.export_wait = 0.2
    key = desired("prod").key
    out = io.BytesIO()
    with ops.lifecycle.exclusive(key), pytest.raises(OperationBusy) as info:
        ops.export(key, out)
    assert info.value.code == "operation_busy" and info.value.retryable
    assert out.getvalue() == b""


def test_a_protected_export_starts_once_a_short_operation_ends(tmp_path: Path) -> None:
    """A reconcile run holding the lock for a moment (after a copy restarts the source) does
    not fail the export: it starts when the lock is free, and holds it while it runs."""
    ops = DataOps(cast(DataHost, Host(tmp_path)))
    key = desired("prod").key
    held = threading.Event()
    seen: list[bool] = []

    def hold_briefly() -> None:
        with ops.lifecycle.exclusive(key):
            held.set()
            time.sleep(0.3)

    def export_zip(site: object, out: io.BytesIO, version: str) -> object:
        # the export holds the lock while it writes
        with pytest.raises(OperationBusy), ops.lifecycle.exclusive(key, wait=0):
            pass
        seen.append(True)
        out.write(b"zip")
        return SimpleNamespace(files=1, bytes_in=3)

    ops.lifecycle.export_zip = export_zip  # type: ignore[method-assign,assignment]
    ops.site = lambda want: None  # type: ignore[method-assign,assignment,return-value]
    holder = threading.Thread(target=hold_briefly)
    holder.start()
    held.wait(5)
    out = io.BytesIO()
    assert ops.export(key, out) == {"files": 1, "bytes": 3}
    holder.join()
    assert seen == [True] and out.getvalue() == b"zip"


@pytest.mark.parametrize("operation", ["admin_credentials", "rotate_admin_password"])
def test_an_environment_without_its_database_has_no_administrator_to_show_or_rotate(
    tmp_path: Path, operation: str
) -> None:
    """Refused before any secret is made or any database reached."""
    ops = DataOps(cast(DataHost, Host(tmp_path)))
    key = desired("qa", Tier.STAGING).key
    with pytest.raises(OdooOpsError) as refused:
        getattr(ops, operation)(key)
    assert refused.value.code == "database_not_initialised"
    assert refused.value.remediation.startswith(f"odooops status {key}")


def test_the_neutralisation_sql_is_asked_of_odoo_once_per_image_and_module_set(
    tmp_path: Path,
) -> None:
    """``odoo neutralize --stdout`` reads the installed modules' scripts from the image: the
    same image and module set give the same SQL, so a second environment (or copy) of them
    costs no one-off container; another module set or image asks Odoo again."""
    from reconciler.core.modules import ModuleSnapshot
    from reconciler.drivers.protocols import OneOff

    runs: list[str] = []

    class Docker:
        def has_image(self, image: str) -> bool:
            return True

        def run_once(self, want: Any, password: str, args: Any, timeout: float, **kw: Any) -> Any:
            runs.append(want.image)
            return OneOff(0, "", f"-- sql of {want.image}\n")

    host = Host(tmp_path)
    host.password = lambda key: "pw"  # type: ignore[attr-defined]
    ops = DataOps(cast(DataHost, host))
    ops.host = cast(DataHost, SimpleNamespace(docker=Docker(), password=lambda key: "pw"))
    states = {"base": "installed", "sale": "installed", "crm": "uninstalled"}
    ops.module_snapshot = lambda want, database=None: ModuleSnapshot(dict(states), False)  # type: ignore[method-assign]
    qa, dev = desired("qa", Tier.STAGING), desired("dev", Tier.DEV)
    assert qa.image == dev.image
    first = ops.odoo_neutralize_sql(qa, "db1")
    assert ops.odoo_neutralize_sql(dev, "db2") == first and runs == [qa.image]
    states["crm"] = "installed"
    ops.odoo_neutralize_sql(dev, "db2")
    assert len(runs) == 2


class MarkingHost(Host):
    """A host whose journal is a real ledger, and whose notes are kept."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.ledger = Ledger(data_dir / "ledger.db")
        self.notes: list[tuple[str, str]] = []

    def journal(self) -> Any:
        return self.ledger

    def note(self, key: object, kind: str, ok: bool, reason: str, message: str = "") -> None:
        self.notes.append((kind, reason))


@pytest.mark.parametrize(
    ("data_revision", "honoured"),
    [
        ("b" * 40, True),  # the data the person asking saw
        ("a" * 40, True),  # restored already (a restart after the swap): forgotten by it
        ("c" * 40, False),  # updated since (the change request waited): dropped
    ],
)
def test_a_rollback_s_restore_holds_only_on_the_data_it_was_asked_on(
    tmp_path: Path, data_revision: str, honoured: bool
) -> None:
    host = MarkingHost(tmp_path)
    ops = DataOps(cast(DataHost, host))
    key = desired("prod").key
    host.ledger.put_restore_mark(
        key, {"revision": "a" * 40, "backup": "2026-12-01-10-00", "data_revision": "b" * 40}
    )
    assert not ops.restore_requested(key, "d" * 40, data_revision)  # another revision
    assert ops.restore_requested(key, "a" * 40, data_revision) is honoured
    assert (host.ledger.restore_mark(key) is not None) is honoured
    assert (("DataRollback", "Dropped") in host.notes) is not honoured
