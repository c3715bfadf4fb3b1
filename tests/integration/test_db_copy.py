"""The three copy strategies against the real PostgreSQL: same data, new owner, live sequences.

The source is read as its own role and the target written as its own, each with a password
(so the tests hold whether the server trusts local logins or asks for passwords).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from reconciler.data.database.copy import CopyFailed, Strategy, copy_database, drop_database
from reconciler.data.database.endpoint import Endpoint

pytestmark = pytest.mark.integration
ADMIN = Endpoint("127.0.0.1", 5432, "postgres", "postgres")


@pytest.fixture
def source(postgres_server: None) -> Iterator[tuple[Endpoint, Endpoint, Endpoint]]:
    """The source database (as the admin reaches it) and the two roles' logins."""
    tag = secrets.token_hex(4)
    src_role, dst_role, db = f"copy_src_{tag}", f"copy_dst_{tag}", f"copy_src_{tag}"
    password = secrets.token_hex(16)
    with ADMIN.connect() as conn:
        conn.execute(f"CREATE ROLE \"{src_role}\" LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE ROLE \"{dst_role}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{db}" OWNER "{src_role}"')
    src_login = ADMIN.with_db(db).as_login(src_role, password)
    with src_login.connect() as c:
        c.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, data bytea)")
        c.execute(
            "CREATE TABLE sale (id serial PRIMARY KEY, partner_id int REFERENCES res_partner)"
        )
        c.execute("CREATE INDEX ON res_partner (name)")
        c.execute(
            "INSERT INTO res_partner (name, data) SELECT 'p' || g, decode(md5(g::text), 'hex') "
            "FROM generate_series(1, 5000) g"
        )
        c.execute(
            "INSERT INTO sale (partner_id) SELECT (g % 5000) + 1 FROM generate_series(1, 2000) g"
        )
    yield ADMIN.with_db(db), src_login, src_login.as_login(dst_role, password)
    with ADMIN.connect() as conn:
        for name in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"copy_%{tag}%"]
        ).fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{name[0]}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{src_role}"')
        conn.execute(f'DROP ROLE IF EXISTS "{dst_role}"')


@pytest.mark.parametrize("strategy", list(Strategy))
def test_each_strategy_copies_data_indexes_sequences_and_hands_objects_over(
    source: tuple[Endpoint, Endpoint, Endpoint], strategy: Strategy
) -> None:
    src, src_login, dst_login = source
    dst_role = dst_login.user
    target = ADMIN.with_db(src.dbname.replace("copy_src_", f"copy_{strategy.value}_"))
    result = copy_database(
        src, target, source_login=src_login, target_login=dst_login, strategy=strategy, jobs=2
    )
    assert (result.strategy, result.tables) == (strategy, 2)
    with target.connect() as conn:
        assert conn.execute("SELECT count(*), max(id) FROM res_partner").fetchone() == (5000, 5000)
        owners = {
            r[0]
            for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }
        assert owners == {dst_role}
        assert conn.execute("SELECT nextval('res_partner_id_seq')").fetchone() == (5001,)
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'res_partner'")
        assert indexes.fetchone() == (2,)
        fks = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()
        assert fks == (1,)
    drop_database(target)


def test_an_existing_target_is_refused_and_left_alone(
    source: tuple[Endpoint, Endpoint, Endpoint],
) -> None:
    src, src_login, dst_login = source
    with pytest.raises(CopyFailed) as refused:
        copy_database(
            src, src, source_login=src_login, target_login=dst_login, strategy=Strategy.STREAM
        )
    assert "already exists" in refused.value.message and refused.value.remediation
    with src.connect() as conn:
        assert conn.execute("SELECT count(*) FROM res_partner").fetchone() == (5000,)


def test_a_failed_copy_leaves_no_target(source: tuple[Endpoint, Endpoint, Endpoint]) -> None:
    """A target owner that does not exist fails the copy; nothing half-written remains."""
    src, src_login, _ = source
    target = ADMIN.with_db(src.dbname.replace("copy_src_", "copy_failed_"))
    with pytest.raises(Exception):  # noqa: B017 - any failure: what matters is what is left
        copy_database(
            src,
            target,
            source_login=src_login,
            target_login=src_login.as_login("no_such_role_x", None),
            strategy=Strategy.STREAM,
        )
    with ADMIN.connect() as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target.dbname])
        assert left.fetchone() is None
