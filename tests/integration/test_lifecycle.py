"""Database lifecycle end to end: copies, neutralisation, masking, backups, restores, dumps.

Real PostgreSQL, Docker and the Odoo stand-in; backups go to a directory (S3 has its own file).
Production gets realistic personal data first, so every assertion about masking and
neutralisation is made against values that really were there.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.data.backup.errors import BackupCorrupt, BackupKeyMismatch
from reconciler.data.database.adminlogin import verify
from reconciler.engine.status import Health, Sync
from tests.integration.containers import run_once, throwaway
from tests.integration.world import World

pytestmark = pytest.mark.integration

PEOPLE = 300


def converge(world: World, *envs: str) -> None:
    result = world.reconcile()
    assert result.errors == {}, result.errors
    for env in envs:
        status = world.engine().status.get(f"{world.project}/{env}")
        assert status is not None
        assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY), status


def db(world: World, env: str) -> str:
    return f"{world.project}__{env}".replace("-", "_")


def execute(world: World, env: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db(world, env)) as conn:
        conn.execute(statement)


def seed_production(world: World) -> dict[str, set[str]]:
    """Personal data, a live mail server, active crons, an enabled provider and an API key."""
    execute(
        world,
        "prod",
        f"""
        INSERT INTO res_partner (name, email, phone)
        SELECT 'Customer Person ' || g, 'customer' || g || '@real-customer.example.com',
               '+32 470 ' || lpad(g::text, 6, '0')
        FROM generate_series(1, {PEOPLE}) g;
        INSERT INTO ir_mail_server (name, smtp_host, smtp_port, active)
        VALUES ('Real relay', 'smtp.real-company.example.com', 587, true);
        UPDATE ir_cron SET active = true;
        INSERT INTO ir_config_parameter (key, value)
        VALUES ('database.enterprise_code', 'M1234567890');
        INSERT INTO res_users_apikeys (name, user_id, scope, index, key)
        VALUES ('ERP sync', 2, 'rpc', '0123abcd', '$pbkdf2-sha512$6000$c2FsdA$aGFzaA');
        """,
    )
    rows = world.query(db(world, "prod"), "SELECT name, email, phone FROM res_partner")
    return {
        "names": {r[0] for r in rows if r[0] and r[0].startswith("Customer")},
        "emails": {r[1] for r in rows if r[1] and "real-customer" in r[1]},
        "phones": {r[2] for r in rows if r[2] and r[2].startswith("+32")},
    }


def values(world: World, env: str) -> set[str]:
    rows = world.query(db(world, env), "SELECT name, email, phone FROM res_partner")
    return {str(v) for row in rows for v in row if v is not None}


def param(world: World, env: str, key: str) -> str | None:
    rows = world.query(db(world, env), f"SELECT value FROM ir_config_parameter WHERE key = '{key}'")
    return rows[0][0] if rows else None


def filestore_files(world: World, env: str) -> dict[str, int]:
    """Relative path -> inode of every file in the environment's filestore."""
    volume = f"odooops-{world.project}-{env}-filestore"
    listed = run_once(
        throwaway(
            world.images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
            "filestore",
            entrypoint=[
                "/bin/sh",
                "-c",
                f"cd /v/filestore/{db(world, env)} && find . -type f -printf '%p %i\\n'",
            ],
            volumes={volume: {"bind": "/v", "mode": "ro"}},
            user="0",
        )
    )
    return {
        line.split()[0]: int(line.split()[1])
        for line in listed.stdout.decode().splitlines()
        if line.strip()
    }


@pytest.fixture
def prod(world: World) -> Iterator[dict[str, set[str]]]:
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    yield seed_production(world)


def test_declared_copy_is_a_neutralised_masked_copy_with_its_own_files(
    world: World, prod: dict[str, set[str]]
) -> None:
    """db.source: prod gives staging prod's data, neutralised, masked, with a new identity,
    and a filestore of its own: no file is shared, so staging's code cannot rewrite prod's."""
    world.declare(
        "staging", branch="release/v1", db={"source": "prod", "neutralize": True, "mask": True}
    )
    converge(world, "staging")
    assert param(world, "staging", "database.is_neutralized") == "true"
    assert param(world, "staging", "database.uuid") != param(world, "prod", "database.uuid")
    assert param(world, "staging", "database.enterprise_code") is None
    assert param(world, "prod", "database.enterprise_code") == "M1234567890"
    seen = values(world, "staging")
    for kind in ("names", "emails", "phones"):
        assert prod[kind], kind
        assert not (prod[kind] & seen), f"an original {kind[:-1]} survived masking"
    count = world.query(db(world, "staging"), "SELECT count(*) FROM res_partner")[0][0]
    assert count == world.query(db(world, "prod"), "SELECT count(*) FROM res_partner")[0][0]
    servers = world.query(
        db(world, "staging"), "SELECT smtp_host, smtp_user FROM ir_mail_server WHERE active"
    )
    assert servers == [("odooops-mail", f"odooops+{world.project}+staging")]
    crons = world.query(db(world, "staging"), "SELECT count(*) FROM ir_cron WHERE active")
    assert crons[0][0] <= 1  # only the autovacuum job
    prod_files, staging_files = filestore_files(world, "prod"), filestore_files(world, "staging")
    assert prod_files and prod_files.keys() == staging_files.keys()
    assert not set(prod_files.values()) & set(staging_files.values()), "no inode is shared"
    # No credential of production's users: no API key, no password hash of theirs (a masked
    # copy); the one password left is the administrator's, staging's own.
    assert world.query(db(world, "staging"), "SELECT count(*) FROM res_users_apikeys") == [(0,)]
    hashes = world.query(db(world, "staging"), "SELECT password FROM res_users WHERE password > ''")
    staging_admin = world.engine().secrets.get(f"odoo-admin/{world.project}/staging")
    assert len(hashes) == 1 and staging_admin and verify(staging_admin, hashes[0][0])
    # Production itself is untouched.
    assert prod["emails"] <= values(world, "prod")
    assert param(world, "prod", "database.is_neutralized") is None
    assert world.query(db(world, "prod"), "SELECT count(*) FROM res_users_apikeys") == [(1,)]


def test_dev_copy_across_servers_is_streamed_into_its_own_postgresql(
    world: World, prod: dict[str, set[str]]
) -> None:
    """A dev environment (dedicated PostgreSQL) gets a streamed, sanitised copy."""
    world.declare("dev", branch="release/v1", tier="dev", db={"source": "prod"})
    converge(world, "dev")
    events = world.engine().status.events(f"{world.project}/dev")
    copied = [e for e in events if e["type"] == "Copied"]
    assert copied and copied[0]["reason"] == "stream"
    key = EnvKey(world.project, "dev")
    want = world.engine().current.environments[key]  # type: ignore[union-attr]
    site = world.engine().data.site(want)
    with site.login.connect() as conn:
        rows = conn.execute("SELECT name, email, phone FROM res_partner").fetchall()
        flag = conn.execute(
            "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'"
        ).fetchone()
    seen = {str(v) for row in rows for v in row if v is not None}
    assert len(rows) >= PEOPLE and flag == ("true",)
    assert not (prod["emails"] & seen) and not (prod["names"] & seen)


def backup_now(world: World, env: str, reason: str = "manual") -> dict[str, Any]:
    return world.engine().data.backup(EnvKey(world.project, env), reason)


def test_backup_restores_into_another_environment_neutralised_and_masked(
    world: World, prod: dict[str, set[str]]
) -> None:
    """odooops db backup prod, then restore it --to=staging: staging gets sanitised data."""
    world.declare("staging", branch="release/v1")
    converge(world, "prod", "staging")
    manifest = backup_now(world, "prod")
    assert manifest["status"] == "good" and manifest["verified"] is True
    assert manifest["key_id"].startswith("k-")
    assert manifest["modules"]["base"] and manifest["sizes"]["stored_bytes"] > 0
    assert (
        not (world.backup_dir / world.project / "prod" / f"{manifest['id']}.json")
        .read_text()
        .count("real-customer")
    )
    stored = (world.backup_dir / world.project / "prod" / f"{manifest['id']}.backup").read_bytes()
    assert b"real-customer" not in stored and b"Customer Person" not in stored
    result = world.engine().data.restore(
        EnvKey(world.project, "staging"), manifest["id"], EnvKey(world.project, "prod")
    )
    assert result["backup"] == manifest["id"]
    assert result["credentials_removed"]["res_users_apikeys"] == 1
    assert result["credentials_removed"]["res_users.password"] >= 1
    assert "base.passwords" in result["neutralized"]
    converge(world, "staging")
    assert param(world, "staging", "database.is_neutralized") == "true"
    assert not (prod["emails"] & values(world, "staging"))
    count = world.query(db(world, "staging"), "SELECT count(*) FROM res_partner")[0][0]
    assert count >= PEOPLE
    assert filestore_files(world, "staging").keys() == filestore_files(world, "prod").keys()


def test_restore_into_production_needs_confirm_and_takes_a_safety_backup(
    world: World, prod: dict[str, set[str]]
) -> None:
    key = EnvKey(world.project, "prod")
    first = backup_now(world, "prod")
    execute(world, "prod", "DELETE FROM res_partner WHERE email LIKE 'customer1%'")
    with pytest.raises(OdooOpsError) as refused:
        world.engine().data.restore(key, first["id"])
    assert refused.value.code == "confirm_required"
    assert "--confirm" in refused.value.remediation
    world.engine().data.restore(key, first["id"], confirm=True)
    converge(world, "prod")
    assert prod["emails"] <= values(world, "prod"), "production is restored unmasked"
    reasons = [b["reason"] for b in world.engine().data.backups(key)]
    assert any(r.startswith("before restore") for r in reasons)


def test_tampered_truncated_and_wrongly_keyed_backups_are_refused(
    world: World, prod: dict[str, set[str]]
) -> None:
    """Every bad backup is refused before the target changes."""
    world.declare("staging", branch="release/v1")
    converge(world, "prod", "staging")
    manifest = backup_now(world, "prod")
    before = values(world, "staging")
    path = world.backup_dir / world.project / "prod" / f"{manifest['id']}.backup"
    good = path.read_bytes()
    staging, source = EnvKey(world.project, "staging"), EnvKey(world.project, "prod")

    tampered = bytearray(good)
    tampered[len(good) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    with pytest.raises(BackupCorrupt):
        world.engine().data.restore(staging, manifest["id"], source)
    path.write_bytes(good[: len(good) * 2 // 3])
    with pytest.raises(BackupCorrupt):
        world.engine().data.restore(staging, manifest["id"], source)
    assert values(world, "staging") == before
    path.write_bytes(good)
    world.backup_key_file.write_text("A" * 43 + "=")
    with pytest.raises(BackupKeyMismatch) as wrong:
        world.engine().data.restore(staging, manifest["id"], source)
    assert manifest["key_id"] in wrong.value.message
    with pytest.raises(OdooOpsError) as missing:
        world.engine().data.restore(staging, "2001-01-01-00-00", source)
    assert missing.value.code == "backup_not_found"
    assert "odooops db backups" in missing.value.remediation
    assert values(world, "staging") == before
    assert world.scratch_databases() == set()


def test_copy_onto_a_protected_environment_is_refused(
    world: World, prod: dict[str, set[str]]
) -> None:
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    with pytest.raises(OdooOpsError) as refused:
        world.engine().data.clone(EnvKey(world.project, "staging"), EnvKey(world.project, "prod"))
    assert refused.value.code == "copy_onto_protected"


def test_production_update_takes_a_backup_first(world: World, prod: dict[str, set[str]]) -> None:
    world.app.write({"acme_base/README.md": "v2\n"}, "acme v2", branch="main")
    converge(world, "prod")
    backups = world.engine().data.backups(EnvKey(world.project, "prod"))
    assert next(b["reason"] for b in backups if b["status"] == "good").startswith("before update")
    status = world.engine().status.get(f"{world.project}/prod")
    assert status is not None and status.last_backup
    metrics = world.engine().metrics.render().decode()
    assert (
        f'odooops_backup_last_good_age_seconds{{env="prod",project="{world.project}"}}' in metrics
    )


def test_retention_prunes_with_a_fake_clock(world: World, prod: dict[str, set[str]]) -> None:
    """Backups older than the tier's retention go; the newest good one always stays."""
    key = EnvKey(world.project, "prod")
    data = world.engine().data
    want = world.engine().current.environments[key]  # type: ignore[union-attr]
    storage = data.storage()
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    for days in (1, 30, 89, 91, 200):
        taken = now - timedelta(days=days)
        backup_id = taken.strftime("%Y-%m-%d-%H-%M")
        storage.put_json(
            f"{world.project}/prod/{backup_id}.json",
            {"id": backup_id, "status": "good", "started_at": taken.isoformat()},
        )
    doomed = data.prune(want, now)
    assert sorted(doomed) == sorted(
        (now - timedelta(days=d)).strftime("%Y-%m-%d-%H-%M") for d in (91, 200)
    )
    left = {b["id"] for b in data.backups(key)}
    assert len(left) == 3


def test_odoo_dump_zip_exports_and_imports_into_another_environment(
    world: World, prod: dict[str, set[str]], tmp_path: Path
) -> None:
    """Export in Odoo's database-manager format; import it into staging (sanitised)."""
    world.declare("staging", branch="release/v1")
    converge(world, "prod", "staging")
    out = io.BytesIO()
    world.engine().data.export(EnvKey(world.project, "prod"), out)
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    names = archive.namelist()
    assert names[0] == "dump.sql" and "manifest.json" in names
    assert any(n.startswith("filestore/") for n in names)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["db_name"] == db(world, "prod") and "base" in manifest["modules"]
    dump = tmp_path / "prod.zip"
    dump.write_bytes(out.getvalue())
    result = world.engine().data.import_dump(EnvKey(world.project, "staging"), dump)
    assert result["format"] == "zip" and result["filestore_files"] >= 1
    # The import stopped Odoo for its swap and started it again itself, before any pass.
    # Healthy as the daemon judges it: its wait runs the container's own health check (Docker's
    # own report may still say "starting" until its next interval).
    key = EnvKey(world.project, "staging")
    (odoo,) = [
        c
        for c in world.engine().docker.observe(key).containers[key].values()
        if c.name == key.odoo_container
    ]
    assert odoo.running and odoo.health == "healthy", odoo
    converge(world, "staging")
    count = world.query(db(world, "staging"), "SELECT count(*) FROM res_partner")[0][0]
    assert count >= PEOPLE
    assert param(world, "staging", "database.is_neutralized") == "true"
    assert not (prod["emails"] & values(world, "staging"))


def test_a_pass_leaves_an_environment_alone_during_its_data_operation(world: World) -> None:
    """No deployment mid-restore: the pass skips the environment, without back-off."""
    world.declare("staging", branch="release/v1")
    converge(world, "staging")
    key = EnvKey(world.project, "staging")
    world.declare("staging", branch="release/v1", overrides={"workers": 3})
    with world.engine().data.lifecycle.exclusive(key):
        result = world.reconcile()
        assert key not in result.errors
        status = world.engine().status.get(str(key))
        assert status is not None
        busy = next(c for c in status.conditions if c.type == "Reconciling")
        assert busy.reason == "DataOperation"
    converge(world, "staging")
    container = world.containers()[f"odooops-{world.project}-staging-odoo"]
    assert "--workers=3" in container.attrs["Args"]


def test_a_custom_addons_own_neutralize_sql_is_applied_on_a_staging_copy(world: World) -> None:
    """``odoo neutralize`` runs the ``data/neutralize.sql`` of every installed module, custom
    addons included: the platform reads them from the environment's own image, so a copy of
    production with the project's own payment gateway has it turned off."""
    files = {
        "acme_base/data/install.sql": "CREATE TABLE acme_gateway (id serial PRIMARY KEY,"
        " live boolean NOT NULL);\nINSERT INTO acme_gateway (live) VALUES (true);\n",
        "acme_base/data/neutralize.sql": "UPDATE acme_gateway SET live = false;\n",
    }
    for branch in ("main", "release/v1"):
        world.app.write(files, "our own payment gateway", branch=branch)
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    world.declare("staging", branch="release/v1", db={"source": "prod"})
    converge(world, "staging")
    assert world.query(db(world, "staging"), "SELECT live FROM acme_gateway") == [(False,)]
    assert world.query(db(world, "prod"), "SELECT live FROM acme_gateway") == [(True,)]
    assert param(world, "staging", "database.is_neutralized") == "true"
    # Exactly one active outgoing server (the catcher): Odoo's script inserted its dummy,
    # the platform's step left only its own on.
    active = world.query(db(world, "staging"), "SELECT name FROM ir_mail_server WHERE active")
    assert active == [("OdooOps mail catcher",)]
