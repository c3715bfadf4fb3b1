"""Golden copies end to end: real PostgreSQL, Docker and the Odoo stand-in.

With ``golden`` in policies.yaml, a masked copy of production is a template copy of one
neutralised, masked golden copy, made once per refresh: the golden copy and every copy of it
are masked (never an original e-mail), a copy does not mask again, a refresh after a
production update brings the change, and the planner never drops or serves a golden copy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from reconciler.core.golden import golden_database
from reconciler.core.model import EnvKey
from reconciler.data.database.adminlogin import verify
from reconciler.engine.ledger import Ledger
from tests.integration.test_lifecycle import converge, db, param, seed_production, values
from tests.integration.world import World

pytestmark = pytest.mark.integration

# The project's own payment gateway: production's image carries its neutralize.sql, which the
# golden copy's refresh must run (the copies of it never run Odoo's scripts again).
GATEWAY = {
    "acme_base/data/install.sql": "CREATE TABLE acme_gateway (id serial PRIMARY KEY,"
    " live boolean NOT NULL);\nINSERT INTO acme_gateway (live) VALUES (true);\n",
    "acme_base/data/neutralize.sql": "UPDATE acme_gateway SET live = false;\n",
}


def golden_on(world: World, refresh: str = "24h") -> None:
    policies = yaml.safe_load((world.state.dir / "policies.yaml").read_text())
    policies["golden"] = {"refresh": refresh}
    world.state.write({"policies.yaml": yaml.safe_dump(policies)}, "golden copies on")


def golden_values(world: World, name: str) -> set[str]:
    rows = world.query(name, "SELECT name, email, phone FROM res_partner")
    return {str(v) for row in rows for v in row if v is not None}


def record(world: World, env: str = "prod") -> dict[str, Any]:
    ledger = Ledger(world.data_dir / "ledger.db", read_only=True)
    try:
        doc = ledger.golden(EnvKey(world.project, env))
    finally:
        ledger.close()
    assert doc is not None, "no golden copy recorded"
    return doc


def copied_event(world: World, env: str) -> dict[str, Any]:
    events = world.engine().status.events(f"{world.project}/{env}")
    return next(e for e in events if e["type"] == "Copied")


@pytest.fixture
def prod(world: World) -> dict[str, set[str]]:
    for branch in ("main", "release/v1"):
        world.app.write(GATEWAY, "our own payment gateway", branch=branch)
    golden_on(world)
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    return seed_production(world)


def test_copies_of_production_are_template_copies_of_one_masked_golden_copy(
    world: World, prod: dict[str, set[str]]
) -> None:
    """The first copy makes the golden copy (neutralised with production's own scripts,
    masked), then copies it by template; a second copy masks nothing again (a value put into
    the golden copy by hand reaches it as it is); the planner leaves the golden copy alone."""
    world.declare("staging", branch="release/v1", tier="staging", db={"source": "prod"})
    converge(world, "staging")
    golden = golden_database(EnvKey(world.project, "prod"))
    doc = record(world)
    assert doc["database"] == golden and doc["masked_rows"] > 0
    assert doc["revision"] == world.engine().ledger.database(EnvKey(world.project, "prod")).revision  # type: ignore[union-attr]
    # The golden copy: neutralised by the modules' own scripts and the platform's, masked.
    assert world.query(golden, "SELECT live FROM acme_gateway") == [(False,)]
    assert world.query(
        golden, "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'"
    ) == [("true",)]
    for kind in ("names", "emails", "phones"):
        assert prod[kind] and not (prod[kind] & golden_values(world, golden)), kind
    # Staging: a template copy of it, with its own identity, catcher login and admin password.
    event = copied_event(world, "staging")
    assert event["reason"] == "golden-template", event
    assert "golden copy" in event["message"] and doc["refreshed_at"] in event["message"]
    seen = values(world, "staging")
    assert not (prod["emails"] & seen) and not (prod["names"] & seen)
    assert world.query(db(world, "staging"), "SELECT live FROM acme_gateway") == [(False,)]
    assert param(world, "staging", "database.uuid") not in (
        param(world, "prod", "database.uuid"),
        world.query(golden, "SELECT value FROM ir_config_parameter WHERE key='database.uuid'")[0][
            0
        ],
    )
    servers = world.query(
        db(world, "staging"), "SELECT smtp_host, smtp_user FROM ir_mail_server WHERE active"
    )
    assert servers == [("odooops-mail", f"odooops+{world.project}+staging")]
    hashes = world.query(db(world, "staging"), "SELECT password FROM res_users WHERE password > ''")
    admin = world.engine().secrets.get(f"odoo-admin/{world.project}/staging")
    assert len(hashes) == 1 and admin and verify(admin, hashes[0][0])
    # Production is untouched.
    assert prod["emails"] <= values(world, "prod")
    assert world.query(db(world, "prod"), "SELECT live FROM acme_gateway") == [(True,)]

    # A second copy does not mask: a marker put into the golden copy by hand arrives as is.
    with_marker = "INSERT INTO res_partner (name, email) VALUES ('Golden Marker', 'kept@as.is')"
    world.query(golden, with_marker + " RETURNING id")
    world.app.write(GATEWAY, "a branch for qa", branch="qa")
    world.declare("qa", branch="qa", tier="staging", db={"source": "prod"})
    converge(world, "qa")
    assert "kept@as.is" in values(world, "qa")
    assert record(world)["refreshed_at"] == doc["refreshed_at"], "the golden copy was remade"

    # The planner neither drops, adopts nor serves it: passes change nothing about it.
    result = world.reconcile()
    assert result.errors == {}
    assert not [a for a in result.plan.actions if golden in a.target]
    assert golden in world.owned_databases()
    for container in world.containers().values():
        assert golden not in " ".join(container.attrs["Args"])


def test_a_dev_copy_streams_the_golden_copy_into_its_own_postgresql(
    world: World, prod: dict[str, set[str]]
) -> None:
    """A dev tier has its own PostgreSQL: the golden copy is streamed there, still masked."""
    world.declare("dev", branch="release/v1", tier="dev", db={"source": "prod"})
    converge(world, "dev")
    assert copied_event(world, "dev")["reason"] == "golden-stream"
    key = EnvKey(world.project, "dev")
    want = world.engine().current.environments[key]  # type: ignore[union-attr]
    with world.engine().data.site(want).login.connect() as conn:
        rows = conn.execute("SELECT name, email, phone FROM res_partner").fetchall()
    seen = {str(v) for row in rows for v in row if v is not None}
    assert len(rows) >= len(prod["emails"]) and not (prod["emails"] & seen)


def test_a_refresh_after_a_production_update_brings_the_change_and_leaves_nothing(
    world: World, prod: dict[str, set[str]]
) -> None:
    """The schedules refresh the golden copy once production's database is at a new revision
    (and on the policy's schedule): the new copy has the change, masked; the previous one and
    every scratch database are gone; copies go on from the new one."""
    world.declare("staging", branch="release/v1", tier="staging", db={"source": "prod"})
    converge(world, "staging")
    first = record(world)
    engine = world.engine()
    started = engine.schedules.run(datetime.now(UTC), wait=True)
    assert not [s for s in started if "golden" in s], started  # fresh: nothing due
    db_name = db(world, "prod")
    world.query(
        db_name,
        "INSERT INTO res_partner (name, email) VALUES ('New Customer', 'new@real-customer.example')"
        " RETURNING id",
    )
    world.app.write({"acme_base/changed.txt": "1\n"}, "a production update")
    converge(world, "prod")
    started = engine.schedules.run(datetime.now(UTC), wait=True)
    assert [s for s in started if "golden copy" in s and "updated" in s], started
    second = record(world)
    golden = second["database"]
    assert (
        second["refreshed_at"] >= first["refreshed_at"] and second["revision"] != first["revision"]
    )
    count = world.query(golden, "SELECT count(*) FROM res_partner")[0][0]
    assert count == world.query(db_name, "SELECT count(*) FROM res_partner")[0][0]
    assert "new@real-customer.example" not in golden_values(world, golden)
    assert world.scratch_databases() == set()
    assert engine.ledger.entries() == []
    # The policy's own schedule: due a day later, not before.
    later = datetime.now(UTC) + timedelta(hours=25)
    assert [s for s in engine.schedules.run(later, wait=True) if "scheduled" in s]
    assert world.scratch_databases() == set()
    # Status and the on-demand refresh, as the CLI and the API show them.
    shown = engine.data.golden_status(EnvKey(world.project, "prod"))
    assert shown["kept"] and shown["exists"] and shown["size_bytes"] > 0
    assert shown["why"] == ["copied by staging"]


def test_the_golden_copy_goes_when_nothing_copies_production_any_more(
    world: World, prod: dict[str, set[str]]
) -> None:
    world.declare("staging", branch="release/v1", tier="staging", db={"source": "prod"})
    converge(world, "staging")
    golden = record(world)["database"]
    world.remove("staging")
    converge(world, "prod")
    started = world.engine().schedules.run(datetime.now(UTC), wait=True)
    assert [s for s in started if "removal of the golden copy" in s], started
    assert golden not in world.owned_databases()
    assert world.engine().ledger.golden(EnvKey(world.project, "prod")) is None


def test_the_golden_copy_goes_with_production_and_its_role(world: World) -> None:
    """An unprotected production removed from the state: its golden copy, owned by its role,
    is dropped before the role, with the database and the ledger's record."""
    golden_on(world)
    world.declare("prod", branch="main", tier="production", protected=False)
    world.declare("staging", branch="release/v1", tier="staging", db={"source": "prod"})
    converge(world, "prod", "staging")
    golden = record(world)["database"]
    assert golden in world.owned_databases()
    world.allow_empty()
    world.remove("staging")
    world.remove("prod")
    result = world.reconcile()
    assert result.errors == {}, result.errors
    assert world.owned_databases() == set()
    roles = world.query(
        "postgres", f"SELECT rolname FROM pg_roles WHERE rolname LIKE '%{world.project}%'"
    )
    assert roles == []
    assert world.engine().ledger.golden(EnvKey(world.project, "prod")) is None
