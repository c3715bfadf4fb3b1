"""Rules of the data plane that hold before any database is reached (no services needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.core.model import Desired, Tier
from reconciler.data.lifecycle import OperationBusy
from reconciler.data.operations import DataHost, DataOps
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

    def database_replaced(self, key: object, initialised: bool) -> None:
        raise AssertionError("no data move swaps anything in these tests")

    @property
    def instance(self) -> str:
        return "unit"


def test_a_protected_export_takes_the_operation_lock_and_never_runs_mid_restore(
    tmp_path: Path,
) -> None:
    """An export of production's live data waits for no one: busy means refused, nothing sent."""
    ops = DataOps(cast(DataHost, Host(tmp_path)))
    key = desired("prod").key
    out = io.BytesIO()
    with ops.lifecycle.exclusive(key), pytest.raises(OperationBusy) as info:
        ops.export(key, out)
    assert info.value.code == "operation_busy" and info.value.retryable
    assert out.getvalue() == b""
