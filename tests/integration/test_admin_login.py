"""The Odoo administrator's password of each environment, on a real PostgreSQL and daemon.

The first tests build an Odoo database from the stand-in's SQL (no Odoo runs) and check how
the administrator is found and how a rotation orders the store and the database, failures
and interruptions included. The last ones run the engine end to end: a new environment, a
staging copy of production, a restore into production and a rotation, each checked against
the hash in the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.data.credentials import AdminPasswords, next_name, secret_name
from reconciler.data.database import adminlogin
from reconciler.data.database.endpoint import Endpoint
from reconciler.drivers.secrets import SecretStore
from reconciler.engine.status import Health, Sync
from tests.integration.odoo_schema import HOST, PORT, USER, build, connect, scratch_database
from tests.integration.world import World

pytestmark = pytest.mark.integration

KEY = EnvKey("acme", "staging")
Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def odoo_db(postgres_server: None) -> Iterator[str]:
    """A new database with ``base`` installed from the stand-in's SQL."""
    with scratch_database() as name:
        with connect(name) as conn:
            build(conn, ["base"])
        yield name


def endpoint(dbname: str) -> Endpoint:
    return Endpoint(HOST, PORT, USER, dbname)  # the password comes from PGPASSWORD


def admin_hash(dbname: str) -> str | None:
    with connect(dbname) as conn:
        row = conn.execute("SELECT password FROM res_users WHERE id = 2").fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


@pytest.fixture
def passwords(tmp_path: Path) -> AdminPasswords:
    return AdminPasswords(SecretStore(tmp_path / "secrets.enc", bytes(range(32))))


def test_the_administrator_is_found_by_its_external_id_whatever_its_login(odoo_db: str) -> None:
    with connect(odoo_db) as conn:
        conn.execute("UPDATE res_users SET login = 'boss@acme.example' WHERE id = 2")
        conn.execute("INSERT INTO res_users (login, partner_id, company_id) VALUES ('admin', 3, 1)")
        admin = adminlogin.find_admin(conn)
    assert (admin.id, admin.login) == (2, "boss@acme.example")


def test_without_its_external_id_the_administrator_is_the_login_admin(odoo_db: str) -> None:
    with connect(odoo_db) as conn:
        conn.execute("DELETE FROM ir_model_data WHERE name = 'user_admin'")
        admin = adminlogin.set_password(conn, "n3w-Password")
    assert (admin.id, admin.login) == (2, "admin")
    assert adminlogin.verify("n3w-Password", admin_hash(odoo_db))


def test_a_database_without_an_administrator_is_a_structured_error_and_unchanged(
    odoo_db: str,
) -> None:
    with connect(odoo_db) as conn:
        conn.execute("DELETE FROM ir_model_data WHERE name = 'user_admin'")
        conn.execute("UPDATE res_users SET login = 'someone' WHERE id = 2")
        before = admin_hash(odoo_db)
        with pytest.raises(adminlogin.AdminUserMissing) as missing:
            adminlogin.set_password(conn, "x")
    assert missing.value.code == "admin_user_missing"
    assert "SELECT id, login, active FROM res_users" in missing.value.remediation
    assert admin_hash(odoo_db) == before


def test_a_database_without_odoo_s_tables_has_no_administrator(postgres_server: None) -> None:
    with scratch_database() as name, connect(name) as conn, pytest.raises(OdooOpsError) as err:
        adminlogin.find_admin(conn)
    assert err.value.code == "admin_user_missing"


def test_set_writes_the_password_in_force_and_show_verifies_it(
    odoo_db: str, passwords: AdminPasswords
) -> None:
    passwords.set(KEY, endpoint(odoo_db))
    stored = passwords.store.get(secret_name(KEY))
    assert stored and adminlogin.verify(stored, admin_hash(odoo_db))
    assert not adminlogin.verify("admin", admin_hash(odoo_db))
    shown = passwords.show(KEY, endpoint(odoo_db))
    assert (shown.login, shown.password, shown.verified) == ("admin", stored, True)


def test_show_says_when_the_database_holds_another_password(
    odoo_db: str, passwords: AdminPasswords
) -> None:
    """An environment older than the platform's passwords, or one changed in Odoo itself."""
    shown = passwords.show(KEY, endpoint(odoo_db))
    assert shown.verified is False
    assert shown.password == passwords.store.get(secret_name(KEY))


def test_a_rotation_replaces_the_password_in_the_store_and_the_database(
    odoo_db: str, passwords: AdminPasswords
) -> None:
    passwords.set(KEY, endpoint(odoo_db))
    old = passwords.password(KEY)
    rotated = passwords.rotate(KEY, endpoint(odoo_db))
    assert rotated.password != old and rotated.verified
    assert passwords.store.get(secret_name(KEY)) == rotated.password
    assert passwords.store.get(next_name(KEY)) is None
    assert adminlogin.verify(rotated.password, admin_hash(odoo_db))
    assert not adminlogin.verify(old, admin_hash(odoo_db))


def refuse_updates(dbname: str) -> None:
    """From now on every UPDATE of res_users fails (and is rolled back)."""
    with connect(dbname) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'read-only users'; END$$;"
            "CREATE TRIGGER refuse BEFORE UPDATE ON res_users"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )


def test_a_rotation_whose_database_write_fails_keeps_the_old_password_in_force(
    odoo_db: str, passwords: AdminPasswords
) -> None:
    passwords.set(KEY, endpoint(odoo_db))
    old, before = passwords.password(KEY), admin_hash(odoo_db)
    refuse_updates(odoo_db)
    with pytest.raises(OdooOpsError) as failed:
        passwords.rotate(KEY, endpoint(odoo_db))
    assert failed.value.code == "admin_password_failed"
    assert "read-only users" in failed.value.message
    assert admin_hash(odoo_db) == before
    assert passwords.store.get(secret_name(KEY)) == old
    shown = passwords.show(KEY, endpoint(odoo_db))
    assert (shown.password, shown.verified) == (old, True)


def test_a_rotation_killed_after_the_database_write_loses_no_password(
    odoo_db: str, passwords: AdminPasswords
) -> None:
    """The database holds the new password, the store has it only as -next: show finds it,
    and the next rotation first puts it in force (here that rotation's own write fails, so
    what it settled is what stays)."""
    passwords.set(KEY, endpoint(odoo_db))
    old = passwords.password(KEY)
    passwords.store.update({next_name(KEY): "the-new-one"})
    with connect(odoo_db) as conn:
        adminlogin.set_password(conn, "the-new-one")  # step 2 done, step 3 never ran
    shown = passwords.show(KEY, endpoint(odoo_db))
    assert (shown.password, shown.verified) == ("the-new-one", True)
    assert passwords.store.get(secret_name(KEY)) == old  # show only reads
    refuse_updates(odoo_db)
    with pytest.raises(OdooOpsError):
        passwords.rotate(KEY, endpoint(odoo_db))
    assert passwords.store.get(secret_name(KEY)) == "the-new-one"
    assert adminlogin.verify("the-new-one", admin_hash(odoo_db))


def test_a_rotation_killed_before_the_database_write_drops_its_leftover(
    odoo_db: str, passwords: AdminPasswords
) -> None:
    passwords.set(KEY, endpoint(odoo_db))
    old = passwords.password(KEY)
    passwords.store.update({next_name(KEY): "never-written"})
    assert passwords.show(KEY, endpoint(odoo_db)).password == old
    rotated = passwords.rotate(KEY, endpoint(odoo_db))
    assert rotated.password not in (old, "never-written")
    assert passwords.store.get(next_name(KEY)) is None
    assert adminlogin.verify(rotated.password, admin_hash(odoo_db))


# --------------------------------------------------------------------------- end to end
def converge(world: World, *envs: str) -> None:
    result = world.reconcile()
    assert result.errors == {}, result.errors
    for env in envs:
        status = world.engine().status.get(f"{world.project}/{env}")
        assert status is not None
        assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY), status


def stored_hash(world: World, env: str) -> str | None:
    rows = world.query(
        f"{world.project}__{env}".replace("-", "_"),
        "SELECT u.password FROM res_users u JOIN ir_model_data d ON d.res_id = u.id"
        " WHERE d.module = 'base' AND d.name = 'user_admin'",
    )
    assert len(rows) == 1
    return None if rows[0][0] is None else str(rows[0][0])


def password(world: World, env: str) -> str:
    value = world.engine().secrets.get(f"odoo-admin/{world.project}/{env}")
    assert value
    return value


def test_a_new_environment_s_administrator_has_its_own_password_never_admin(
    world: World,
) -> None:
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    hashed = stored_hash(world, "prod")
    assert hashed is not None and hashed.startswith("$pbkdf2-sha512$600000$")
    assert adminlogin.verify(password(world, "prod"), hashed)
    assert not adminlogin.verify("admin", hashed)
    shown = world.engine().data.admin_credentials(EnvKey(world.project, "prod"))
    assert shown == {
        "environment": f"{world.project}/prod",
        "login": "admin",
        "password": password(world, "prod"),
        "verified": True,
    }


def test_a_staging_copy_of_production_gets_staging_s_password_and_rotation_changes_it(
    world: World,
) -> None:
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    world.declare("staging", branch="release/v1", db={"source": "prod", "mask": True})
    converge(world, "staging")
    prod_hash, staging_hash = stored_hash(world, "prod"), stored_hash(world, "staging")
    assert prod_hash != staging_hash
    assert password(world, "prod") != password(world, "staging")
    assert adminlogin.verify(password(world, "staging"), staging_hash)
    assert not adminlogin.verify(password(world, "prod"), staging_hash)
    assert adminlogin.verify(password(world, "prod"), prod_hash)  # production untouched

    key = EnvKey(world.project, "staging")
    old = password(world, "staging")
    rotated = world.engine().data.rotate_admin_password(key)
    assert rotated["password"] == password(world, "staging") != old
    assert adminlogin.verify(rotated["password"], stored_hash(world, "staging"))
    assert not adminlogin.verify(old, stored_hash(world, "staging"))
    assert adminlogin.verify(password(world, "prod"), stored_hash(world, "prod"))

    # A copy made again (odooops db clone prod --to staging) gets staging's password again.
    world.engine().data.clone(EnvKey(world.project, "prod"), key)
    assert adminlogin.verify(rotated["password"], stored_hash(world, "staging"))

    # Its password goes with the environment (production's stays).
    world.remove("staging")
    converge(world, "prod")
    assert world.engine().secrets.get(f"odoo-admin/{world.project}/staging") is None
    assert password(world, "prod")


def test_a_restore_into_production_keeps_production_s_own_password(world: World) -> None:
    """A backup taken before a rotation restores the data, not the password of then."""
    world.declare("prod", branch="main", tier="production")
    converge(world, "prod")
    key = EnvKey(world.project, "prod")
    backup = world.engine().data.backup(key, "before rotation")
    rotated = world.engine().data.rotate_admin_password(key)
    world.engine().data.restore(key, backup["id"], confirm=True)
    assert adminlogin.verify(rotated["password"], stored_hash(world, "prod"))
