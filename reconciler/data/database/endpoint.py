"""How the daemon reaches one PostgreSQL database: a value, shared by copy, backup and masking.

A database lives on a shared server or in an environment's dedicated container (reached at
the container's address on its private bridge network with the environment's own role, a
superuser inside that container). Two logins reach it: the admin, which only creates, drops
and renames databases and reads the catalogue, and the environment's own role, which every
read and write of the data goes through, so a function, trigger or index expression stored
by a workload only ever runs with that role's rights. Everything goes through an
``Endpoint``, so a copy across servers is the same code as a copy within one, and the client
tools (``pg_dump``, ``pg_restore``) get their connection from ``PG*`` variables instead of a
command line where a password would be visible in ``ps``.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO

import psycopg

from reconciler.core.errors import DriverError
from reconciler.core.model import DatabaseServer
from reconciler.drivers.secrets import SecretStore

_CATALOG_ONLY = "-c search_path=pg_catalog"


@dataclass(frozen=True)
class Endpoint:
    """One database on one server, with the credentials of one login."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)
    server: str = (
        "shared"  # name of the server (or "dedicated") for messages and same-server checks
    )
    # The admin's sessions resolve names in pg_catalog only: a function or operator a workload
    # defined (a better-matching overload in ``public``) can never be picked up by them.
    catalog_only: bool = False

    @classmethod
    def of_server(cls, server: DatabaseServer, dbname: str, secrets: SecretStore) -> Endpoint:
        """A database on a shared server, reached as the server's admin role."""
        ref = server.admin_password
        password = secrets.resolve(ref) if ref is not None else None
        return cls(
            server.host,
            server.port,
            server.admin_user,
            dbname,
            password,
            server.name,
            catalog_only=True,
        )

    def with_db(self, dbname: str) -> Endpoint:
        return replace(self, dbname=dbname)

    def as_login(self, user: str, password: str | None) -> Endpoint:
        """The same database on the same server, reached as another role (an environment's)."""
        return replace(self, user=user, password=password, catalog_only=False)

    def same_server(self, other: Endpoint) -> bool:
        return (self.host, self.port) == (other.host, other.port)

    def __str__(self) -> str:
        return f"{self.dbname} on {self.server} ({self.host}:{self.port})"

    def env(self) -> dict[str, str]:
        """``PG*`` variables for the client tools (the password never on a command line)."""
        out = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGCONNECT_TIMEOUT": "10",
            "PGAPPNAME": "odooops",
        }
        if self.password is not None:
            out["PGPASSWORD"] = self.password
        if self.catalog_only:
            out["PGOPTIONS"] = _CATALOG_ONLY
        return out

    @contextmanager
    def connect(self, autocommit: bool = True) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A connection whose failures become structured, secret-free errors."""
        try:
            conn = psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.dbname,
                autocommit=autocommit,
                connect_timeout=10,
                application_name="odooops",
                options=_CATALOG_ONLY if self.catalog_only else None,
            )
        except psycopg.OperationalError as exc:
            raise DriverError(
                f"cannot connect to database {self}: {str(exc).strip().splitlines()[0]}",
                code="database_unreachable",
                remediation=f"pg_isready -h {self.host} -p {self.port}",
            ) from exc
        try:
            yield conn
        except psycopg.Error as exc:
            raise DriverError(f"database {self}: {str(exc).strip().splitlines()[0]}") from exc
        finally:
            conn.close()


def client_tool(name: str) -> str:
    """Path of ``pg_dump``/``pg_restore``/``psql``; a missing client is a structured error."""
    path = shutil.which(name)
    if path is None:
        raise DriverError(
            f"the PostgreSQL client tool {name} is not installed on the daemon's host",
            code="pg_client_missing",
            retryable=False,
            remediation="apt-get install -y postgresql-client",
        )
    return path


def pg_restore_args(dbname: str) -> list[str]:
    """``pg_restore`` options into ``dbname``, run logged in as the role that is to own every
    object (``--role`` would be no boundary: the admin's session may ``RESET ROLE``)."""
    return ["--no-owner", "--no-acl", "--exit-on-error", f"--dbname={dbname}"]


class Drain(threading.Thread):
    """Reads a client tool's pipe to its end in the background (a full pipe would block the
    tool), keeping the text for the error message."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        super().__init__(daemon=True)
        self.stream, self.text = stream, ""

    def run(self) -> None:
        if self.stream is not None:
            self.text = self.stream.read().decode(errors="replace")
            self.stream.close()


def drain(stream: IO[bytes] | None) -> Drain:
    thread = Drain(stream)
    thread.start()
    return thread
