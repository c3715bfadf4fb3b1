"""PostgreSQL drivers: a shared database server, and a dev environment's own server container.

Both do only catalog work as an administrator: roles, databases, renames, and whether Odoo's
tables exist. Nothing here reads or writes data inside a database a workload controls: a
``SELECT`` of a workload's table could run the workload's function (a view) with the admin's
rights, so such work logs in as the environment's own role (``reconciler.data``).

What the daemon owns, and how far it got, is in its ledger (``reconciler.engine.ledger``), not
here: a database's ``COMMENT`` is writable by its owner, so the comment written here is for
humans reading ``\\l+`` and is never read back.

Passwords reach the server only as SCRAM-SHA-256 verifiers computed here, so no plaintext
password can appear in the server's statement log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from reconciler.core.errors import DriverError
from reconciler.core.model import DatabaseServer, EnvKey, check_instance
from reconciler.drivers.protocols import Runtime
from reconciler.drivers.secrets import SecretStore


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The ``SCRAM-SHA-256$...`` string PostgreSQL stores (RFC 5802/7677), computed client-side."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


# A login that can do nothing but own its database: no superuser, no role or database
# creation, no replication, no row-level-security bypass.
_ROLE_OPTIONS = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
# Odoo's module table: present once ``odoo -i`` has created the schema. Asked in the catalog
# (pg_class), never by reading the table, which a workload could have replaced by a view.
_ODOO_TABLE = "ir_module_module"


class PostgresDriver:
    """Talks to one shared server as its admin user."""

    def __init__(self, server: DatabaseServer, instance: str, secrets: SecretStore) -> None:
        self.server = server
        self.instance = check_instance(instance)
        self.secrets = secrets

    @property
    def name(self) -> str:
        return self.server.name

    @contextmanager
    def _connect(
        self, dbname: str = "postgres"
    ) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        ref = self.server.admin_password
        password = self.secrets.resolve(ref) if ref is not None else None
        try:
            conn = psycopg.connect(
                host=self.server.host,
                port=self.server.port,
                user=self.server.admin_user,
                password=password,
                dbname=dbname,
                autocommit=True,
                connect_timeout=5,
                application_name="odooops",
            )
        except psycopg.OperationalError as exc:
            raise DriverError(
                f"database server {self.server.name} ({self.server.host}:{self.server.port}) "
                f"is unreachable: {str(exc).strip().splitlines()[0]}",
                code="database_unreachable",
                remediation=(
                    f"pg_isready -h {self.server.host} -p {self.server.port} "
                    f"(and check database_servers.{self.server.name} in odooops.yaml)"
                ),
            ) from exc
        try:
            yield conn
        except psycopg.OperationalError as exc:
            raise DriverError(
                f"database server {self.server.name}: {str(exc).strip().splitlines()[0]}",
                code="database_unreachable",
                remediation=f"pg_isready -h {self.server.host} -p {self.server.port}",
            ) from exc
        except psycopg.Error as exc:
            raise DriverError(
                f"database server {self.server.name}: {str(exc).strip().splitlines()[0]}"
            ) from exc
        finally:
            conn.close()

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def existing(self, names: Sequence[str]) -> set[str]:
        if not names:
            return set()
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [list(names)]
            ).fetchall()
        return {str(r[0]) for r in rows}

    def ensure_role(self, key: EnvKey, password: str) -> bool:
        """Make the environment's role log in with ``password`` (the store's), creating it when
        missing; returns whether it existed.

        The store is the truth about a password, the role only a copy: a role kept with a
        protected environment's data is given the store's password again whenever its
        environment is declared, so the Odoo container can log in. Idempotent.
        """
        role = sql.Identifier(key.role)
        verifier = sql.Literal(scram_verifier(password))
        with self._connect() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", [key.role]
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} " + _ROLE_OPTIONS + " PASSWORD {}").format(role, verifier)
            )
            # A member of another role could SET ROLE to it: the environment's role is none.
            for (granted,) in conn.execute(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
                [key.role],
            ).fetchall():
                conn.execute(
                    sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(str(granted)), role)
                )
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(self._note(key)))
            )
        return exists is not None

    def foreign_claim(self, key: EnvKey) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                [key.role],
            ).fetchone()
        claimed = noted_instance(row[0] if row else None)
        return claimed if claimed not in (None, self.instance) else None

    def create_database(self, key: EnvKey) -> None:
        db = sql.Identifier(key.database)
        created = False
        with self._connect() as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [key.database]
            ).fetchone():
                conn.execute(
                    sql.SQL(
                        "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                        "TEMPLATE template0"
                    ).format(db, sql.Identifier(key.role))
                )
                created = True
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(self._note(key)))
            )
        if created:  # only while nothing of the workload's is in it
            with self._connect(key.database) as conn:
                create_trigram(conn, key.role)

    def has_odoo(self, key: EnvKey) -> bool:
        with self._connect(key.database) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = %s AND n.nspname = 'public'",
                [_ODOO_TABLE],
            ).fetchone()
        return row is not None

    def drop_database(self, key: EnvKey, name: str | None = None) -> None:
        with self._connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name or key.database)
                )
            )

    def drop_role(self, key: EnvKey) -> None:
        with self._connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(key.role)))

    def _note(self, key: EnvKey) -> str:
        return database_note(self.instance, key)


def create_trigram(conn: psycopg.Connection[Any], owner: str) -> None:
    """``pg_trgm`` in a database the platform made, owned by the environment's role.

    Odoo creates it only in databases it creates itself (its fuzzy search and trigram
    indexes need it); a database made by the platform gets it here, as its owner would (it
    is a trusted extension), so a dump's ``COMMENT ON EXTENSION pg_trgm`` loaded as that
    role later still succeeds. Run on a new, empty database only.
    """
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")


def database_note(instance: str, key: EnvKey) -> str:
    """The ``COMMENT`` of our roles and databases: for humans and for cleaning up by hand
    (``\\l+``). Ownership is never read from it (a database's owner can rewrite the database's);
    a role's, which only an admin can write, is read to refuse another instance's name."""
    return json.dumps(
        {
            "odooops.instance": instance,
            "odooops.project": key.project,
            "odooops.env": key.env,
            "odooops.note": "informational: ownership is in the daemon's ledger",
        },
        sort_keys=True,
    )


def noted_instance(note: object) -> str | None:
    """The instance a ``database_note`` names; None when there is no note or it names none."""
    if not isinstance(note, str):
        return None
    try:
        doc = json.loads(note)
    except ValueError:
        return None
    instance = doc.get("odooops.instance") if isinstance(doc, dict) else None
    return instance if isinstance(instance, str) and instance else None


class DedicatedDatabase:
    """A dev environment's own PostgreSQL container, administered through the runtime.

    The environment's role is that server's superuser (the container's ``POSTGRES_USER``); the
    container belongs to the environment alone, so nothing else lives there.
    """

    def __init__(self, runtime: Runtime, key: EnvKey) -> None:
        self.runtime, self.key = runtime, key

    @property
    def name(self) -> str:
        return "dedicated"

    def _psql(self, sql_text: str, database: str = "postgres") -> str:
        return self.runtime.exec_psql(self.key.db_container, self.key.role, database, sql_text)

    def ping(self) -> None:
        self._psql("SELECT 1")

    def existing(self, names: Sequence[str]) -> set[str]:
        out = self._psql("SELECT datname FROM pg_database")
        present = set(out.split())
        return {n for n in names if n in present}

    def ensure_role(self, key: EnvKey, password: str) -> bool:
        # The container made the role from its password file; keep it equal to the store's.
        self._psql(f"ALTER ROLE \"{key.role}\" PASSWORD '{scram_verifier(password)}'")
        return True

    def foreign_claim(self, key: EnvKey) -> str | None:
        return None  # the container is this instance's (its labels say so)

    def create_database(self, key: EnvKey) -> None:
        if key.database not in self.existing([key.database]):
            self._psql(f'CREATE DATABASE "{key.database}" OWNER "{key.role}"')
            self._psql("CREATE EXTENSION IF NOT EXISTS pg_trgm", key.database)

    def has_odoo(self, key: EnvKey) -> bool:
        out = self._psql(
            f"SELECT count(*) FROM pg_class WHERE relname = '{_ODOO_TABLE}'", key.database
        )
        return out.strip() not in ("", "0")

    def drop_database(self, key: EnvKey, name: str | None = None) -> None:
        database = name or key.database
        if not re.fullmatch(r"[a-z0-9_]+", database):  # made by this daemon: never quoted text
            raise DriverError(f"refusing to drop a database named {database!r}")
        self._psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def drop_role(self, key: EnvKey) -> None:
        return None  # the role is the container's own superuser: it goes with the container
