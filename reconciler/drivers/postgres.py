"""PostgreSQL driver for shared database servers (production and staging databases).

Databases and roles we create carry our labels as a JSON comment, so one query per server
lists everything the daemon owns, with no private bookkeeping. Passwords reach the server only
as SCRAM-SHA-256 verifiers computed here, so no plaintext password can appear in the server's
statement log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from reconciler.core.errors import DriverError
from reconciler.core.model import LABEL_PREFIX, DatabaseServer, EnvKey


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


@dataclass(frozen=True)
class DatabaseRecord:
    key: EnvKey
    name: str
    initialised: bool
    protected: bool


class PostgresDriver:
    """Talks to one shared server as its admin user."""

    def __init__(self, server: DatabaseServer, instance: str) -> None:
        self.server = server
        self.instance = instance

    @contextmanager
    def _connect(
        self, dbname: str = "postgres"
    ) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        password = self.server.admin_password.resolve() if self.server.admin_password else None
        try:
            conn = psycopg.connect(
                host=self.server.host,
                port=self.server.port,
                user=self.server.admin_user,
                password=password,
                dbname=dbname,
                autocommit=True,
                connect_timeout=5,
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
        except psycopg.Error as exc:
            raise DriverError(
                f"database server {self.server.name}: {str(exc).strip().splitlines()[0]}"
            ) from exc
        finally:
            conn.close()

    def _labels(self, key: EnvKey, **extra: str) -> str:
        labels = {
            f"{LABEL_PREFIX}instance": self.instance,
            f"{LABEL_PREFIX}project": key.project,
            f"{LABEL_PREFIX}env": key.env,
            **{f"{LABEL_PREFIX}{k}": v for k, v in extra.items()},
        }
        return json.dumps(labels, sort_keys=True)

    def observe(self) -> dict[EnvKey, DatabaseRecord]:
        """All databases and roles labelled with this instance, in one round trip each."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT d.datname, shobj_description(d.oid, 'pg_database') FROM pg_database d "
                "UNION ALL SELECT r.rolname, shobj_description(r.oid, 'pg_authid') "
                "FROM pg_roles r"
            ).fetchall()
        out: dict[EnvKey, DatabaseRecord] = {}
        for name, comment in rows:
            labels = _parse(comment)
            if labels.get(f"{LABEL_PREFIX}instance") != self.instance:
                continue
            key = EnvKey(labels[f"{LABEL_PREFIX}project"], labels[f"{LABEL_PREFIX}env"])
            if labels.get(f"{LABEL_PREFIX}kind") == "role" and key in out:
                continue
            out[key] = DatabaseRecord(
                key=key,
                name=str(name) if labels.get(f"{LABEL_PREFIX}kind") != "role" else key.database,
                initialised=labels.get(f"{LABEL_PREFIX}initialised") == "true",
                protected=labels.get(f"{LABEL_PREFIX}protected") == "true",
            )
        return out

    def create(self, key: EnvKey, password: str, protected: bool) -> None:
        """Create (or re-key) the role and create the database, idempotently.

        The role is everything a workload's data runs as (Odoo, restores, imports, copies,
        neutralisation), so it can never become anything else: no superuser, no role or
        database creation, no replication, no row-security bypass, and a member of no role,
        so ``SET ROLE`` has nowhere to go. A membership granted by hand is revoked here.
        """
        role, db = sql.Identifier(key.role), sql.Identifier(key.database)
        verifier = sql.Literal(scram_verifier(password))
        with self._connect() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", [key.role]
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(
                    verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                    "NOBYPASSRLS PASSWORD {}"
                ).format(role, verifier)
            )
            memberships = conn.execute(
                "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
                [key.role],
            ).fetchall()
            for (group,) in memberships:
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(str(group)), role))
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    role, sql.Literal(self._labels(key, kind="role"))
                )
            )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [key.database]
            ).fetchone():
                conn.execute(
                    sql.SQL(
                        "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                        "TEMPLATE template0"
                    ).format(db, role)
                )
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            self._comment(conn, key, initialised=False, protected=protected)

    def _comment(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        key: EnvKey,
        *,
        initialised: bool,
        protected: bool,
    ) -> None:
        labels = self._labels(
            key, initialised=str(initialised).lower(), protected=str(protected).lower()
        )
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(key.database), sql.Literal(labels)
            )
        )

    def mark_initialised(self, key: EnvKey, protected: bool) -> None:
        with self._connect() as conn:
            self._comment(conn, key, initialised=True, protected=protected)

    def set_password(self, key: EnvKey, password: str) -> None:
        with self._connect() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(key.role), sql.Literal(scram_verifier(password))
                )
            )

    def drop(self, key: EnvKey) -> None:
        with self._connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(key.database)
                )
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(key.role)))

    def drop_database(self, key: EnvKey) -> None:
        with self._connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(key.database)
                )
            )

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1")


def _parse(comment: object) -> Mapping[str, str]:
    if not isinstance(comment, str) or not comment.startswith("{"):
        return {}
    try:
        value = json.loads(comment)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
