"""The ledger's record of what each database's modules were at their last -i/-u."""

from __future__ import annotations

from pathlib import Path

from reconciler.core.model import EnvKey
from reconciler.engine.ledger import DatabaseRecord, DbState, Ledger


def test_modules_are_kept_per_environment_read_at_once_and_forgotten_with_the_database(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    prod, qa = EnvKey("acme", "prod"), EnvKey("acme", "qa")
    ledger.put_database(DatabaseRecord(prod, "shared", "acme__prod", DbState.CREATED, True, "p"))
    ledger.put_modules(prod, {"addons": {"a": "t1"}, "base": "img", "wanted": ["a"]})
    ledger.put_modules(qa, {"addons": {}, "base": "img", "wanted": []})
    ledger.put_modules(prod, {"addons": {"a": "t2"}, "base": "img", "wanted": ["a"]})
    assert ledger.modules(prod) == {"addons": {"a": "t2"}, "base": "img", "wanted": ["a"]}
    assert set(ledger.all_modules()) == {"acme/prod", "acme/qa"}
    assert ledger.all_modules()["acme/prod"] == ledger.modules(prod)
    ledger.forget_database(prod)
    assert ledger.modules(prod) is None and set(ledger.all_modules()) == {"acme/qa"}
