"""The shared-server driver against the real PostgreSQL: roles follow the secret store."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reconciler.core.model import DatabaseServer, EnvKey, SecretRef
from reconciler.core.secretrefs import SecretPolicy
from reconciler.drivers.postgres import PostgresDriver
from reconciler.drivers.secrets import SecretStore
from tests.integration import pgadmin

pytestmark = pytest.mark.integration


@pytest.fixture
def driver(tmp_path: Path, postgres_server: None) -> Iterator[PostgresDriver]:
    """A driver of a throw-away instance, reaching the server as its admin through the
    secret reference a state would use; its roles and databases are dropped afterwards."""
    server = DatabaseServer(
        "shared", "127.0.0.1", 5432, "host-gateway", "postgres", SecretRef(env=pgadmin.ENV_REF)
    )
    store = SecretStore(tmp_path / "secrets.enc", secrets.token_bytes(32), SecretPolicy())
    pg = PostgresDriver(server, "t" + secrets.token_hex(4), store)
    made: list[EnvKey] = []
    pg.made = made  # type: ignore[attr-defined]
    yield pg
    for key in made:
        pg.drop_database(key)
        pg.drop_role(key)


def login(key: EnvKey, password: str) -> bool:
    try:
        psycopg.connect(
            host="127.0.0.1", user=key.role, password=password, dbname=key.database
        ).close()
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc)
        return False
    return True


def test_ensure_role_gives_a_kept_role_the_store_s_password(driver: PostgresDriver) -> None:
    """A kept database's role with another password (one an older daemon made) logs in with
    the store's password afterwards, and with the old one no more."""
    key = EnvKey("p" + secrets.token_hex(3), "production")
    driver.made.append(key)  # type: ignore[attr-defined]
    driver.ensure_role(key, "old-password-1")
    driver.create_database(key)
    assert login(key, "old-password-1")
    assert driver.ensure_role(key, "store-password-2") is True
    assert login(key, "store-password-2")
    assert not login(key, "old-password-1")
    assert driver.ensure_role(key, "store-password-2") is True  # idempotent
    assert login(key, "store-password-2")


def test_ensure_role_creates_a_missing_role_without_privileges(driver: PostgresDriver) -> None:
    key = EnvKey("p" + secrets.token_hex(3), "staging")
    driver.made.append(key)  # type: ignore[attr-defined]
    assert driver.ensure_role(key, "store-password") is False
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
            "WHERE rolname = %s",
            [key.role],
        ).fetchone()
    assert row == (True, False, False, False)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        comment = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
            [key.role],
        ).fetchone()
    assert comment is not None and driver.instance in str(comment[0])  # for humans


def test_a_role_another_instance_noted_is_its_claim_and_the_role_cannot_rewrite_it(
    driver: PostgresDriver,
) -> None:
    """Two daemons sharing a server may both declare the same PROJECT/ENV: the role's note names
    the instance that made it, and the environment's own login cannot change that note."""
    key = EnvKey("p" + secrets.token_hex(3), "production")
    driver.made.append(key)  # type: ignore[attr-defined]
    assert driver.foreign_claim(key) is None  # no role yet
    other = PostgresDriver(driver.server, "other-" + secrets.token_hex(2), driver.secrets)
    other.ensure_role(key, "other-password")
    other.create_database(key)
    assert driver.foreign_claim(key) == other.instance
    assert other.foreign_claim(key) is None  # its own
    with (
        psycopg.connect(
            host="127.0.0.1", user=key.role, password="other-password", dbname=key.database
        ) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(f'COMMENT ON ROLE "{key.role}" IS \'{{"odooops.instance": "x"}}\'')
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        conn.execute(f'COMMENT ON ROLE "{key.role}" IS NULL')  # the documented hand-over
    assert driver.foreign_claim(key) is None


def test_a_database_the_platform_creates_has_pg_trgm_owned_by_its_role(
    driver: PostgresDriver,
) -> None:
    """Odoo creates pg_trgm only in databases it creates itself: the platform's get it too,
    owned by the environment's role, as Odoo's own would be."""
    key = EnvKey("p" + secrets.token_hex(3), "staging")
    driver.made.append(key)  # type: ignore[attr-defined]
    driver.ensure_role(key, "store-password")
    driver.create_database(key)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=key.database) as conn:
        row = conn.execute(
            "SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pg_trgm'"
        ).fetchone()
    assert row == (key.role,)
