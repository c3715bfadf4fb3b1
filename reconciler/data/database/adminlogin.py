"""The Odoo administrator's password: hashed as Odoo stores it, and written where Odoo reads it.

Odoo keeps a user's password in ``res_users.password`` as passlib's ``pbkdf2_sha512`` string,
``$pbkdf2-sha512$<rounds>$<salt>$<checksum>``: PBKDF2-HMAC-SHA512 of the UTF-8 password over a
16-byte random salt, a 64-byte checksum, both in passlib's "adapted base64" (standard base64
with ``+`` written ``.`` and no ``=`` padding). Odoo 19 hashes with 600,000 rounds and checks
any round count a stored hash names. The hash is computed here with ``hashlib`` alone, so
the daemon needs no passlib and never runs Odoo to set a password.

The administrator is the user Odoo knows as ``base.user_admin`` (``ir_model_data``), whatever
its login became; a database whose ``ir_model_data`` does not name it falls back to the user
whose login is ``admin``. Setting the password is one ``UPDATE`` in its own transaction, run
as the environment's own role. Odoo derives its session tokens from the password hash, so the
sessions opened with a previous password are refused once Odoo computes their token again
(a running worker may keep one in its cache until it restarts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

import psycopg

from reconciler.core.errors import DriverError

__all__ = ["ROUNDS", "AdminUser", "find_admin", "hash_password", "set_password", "verify"]

ROUNDS = 600_000
"""Odoo 19's rounds for ``pbkdf2_sha512`` (``odoo/addons/base/models/res_users.py``)."""
SALT_BYTES = 16
_PREFIX = "$pbkdf2-sha512$"
_CHECKSUM_BYTES = 64


def ab64_encode(data: bytes) -> str:
    """passlib's adapted base64: ``+`` becomes ``.``, no ``=`` padding (``/`` stays)."""
    return base64.b64encode(data).decode("ascii").rstrip("=").replace("+", ".")


def ab64_decode(text: str) -> bytes:
    """The bytes of an adapted base64 string; ``ValueError`` when it is not one."""
    padded = text.replace(".", "+") + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), validate=True)


def hash_password(password: str, *, salt: bytes | None = None, rounds: int = ROUNDS) -> str:
    """``password`` in Odoo's stored form; a new random salt unless one is given (tests)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    checksum = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, rounds)
    return f"{_PREFIX}{rounds}${ab64_encode(salt)}${ab64_encode(checksum)}"


def verify(password: str, stored: str | None) -> bool:
    """Whether ``stored`` is a ``pbkdf2_sha512`` hash of ``password`` (any other form, a
    plain text one included, is not: the platform never writes one)."""
    if not stored or not stored.startswith(_PREFIX):
        return False
    parts = stored[len(_PREFIX) :].split("$")
    if len(parts) != 3 or not parts[0].isdigit() or not 1 <= int(parts[0]) <= 10_000_000:
        return False
    try:
        salt, checksum = ab64_decode(parts[1]), ab64_decode(parts[2])
    except ValueError:
        return False
    if len(checksum) != _CHECKSUM_BYTES:
        return False
    computed = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[0]))
    return hmac.compare_digest(computed, checksum)


@dataclass(frozen=True)
class AdminUser:
    """The administrator's row: its id, its login, and the password hash stored now."""

    id: int
    login: str
    password_hash: str | None = field(default=None, repr=False)


class AdminUserMissing(DriverError):
    """The database names no administrator: neither ``base.user_admin`` nor a login ``admin``."""

    code = "admin_user_missing"
    retryable = False


# The administrator by its external id first (its login may have been changed), then by login.
_FIND = """
    SELECT id, login, password FROM (
        SELECT 0 AS rank, u.id, u.login, u.password FROM res_users AS u
        WHERE u.id = (SELECT d.res_id FROM ir_model_data AS d WHERE d.module = 'base'
                      AND d.name = 'user_admin' AND d.model = 'res.users' LIMIT 1)
        UNION ALL
        SELECT 1, u.id, u.login, u.password FROM res_users AS u WHERE u.login = 'admin'
    ) AS found ORDER BY rank LIMIT 1
"""


def find_admin(conn: psycopg.Connection[Any]) -> AdminUser:
    """The administrator of the database of ``conn``; ``AdminUserMissing`` when there is none."""
    info = conn.info
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema ="
                " current_schema() AND table_name IN ('res_users', 'ir_model_data')"
            )
            row = cur.fetchone()
            found = None
            if row is not None and int(row[0]) == 2:
                cur.execute(_FIND)
                found = cur.fetchone()
    except psycopg.Error as exc:
        raise _failure(conn, "reading the administrator", exc) from exc
    if found is None:
        raise AdminUserMissing(
            f"database {info.dbname} has no administrator: no res_users row is named "
            "base.user_admin in ir_model_data, and none has the login admin",
            remediation=f"psql -h {info.host} -p {info.port} -U {info.user} -d {info.dbname} "
            "-c 'SELECT id, login, active FROM res_users ORDER BY id'  (an Odoo database "
            "always has one: was base installed?)",
        )
    user_id, login, stored = found
    return AdminUser(int(user_id), str(login), None if stored is None else str(stored))


def set_password(
    conn: psycopg.Connection[Any], password: str, *, hashed: str | None = None
) -> AdminUser:
    """Store ``password``'s hash as the administrator's: the look-up and the ``UPDATE`` in one
    transaction (a savepoint inside one the caller holds), so a failure changes nothing.

    The hash is computed before the transaction opens (it takes a good part of a second), so
    the row is locked only for the ``UPDATE``; ``hashed``: ``hash_password(password)``
    computed ahead (``AdminPasswords.prepare``; checking it would cost as much again).
    """
    if hashed is None:
        hashed = hash_password(password)
    try:
        with conn.transaction():
            admin = find_admin(conn)
            with conn.cursor() as cur:  # what Odoo's own _set_encrypted_password runs
                cur.execute("UPDATE res_users SET password = %s WHERE id = %s", (hashed, admin.id))
    except psycopg.Error as exc:
        raise _failure(conn, "setting the administrator's password", exc) from exc
    return AdminUser(admin.id, admin.login, hashed)


def _failure(conn: psycopg.Connection[Any], what: str, exc: psycopg.Error) -> DriverError:
    """A structured error without the server's DETAIL line (it may quote row values)."""
    info = conn.info
    reason = exc.diag.message_primary or type(exc).__name__
    return DriverError(
        f"{what} failed on database {info.dbname}: {reason}; nothing was changed",
        code="admin_password_failed",
        remediation=f"pg_isready -h {info.host} -p {info.port}, then psql -h {info.host} "
        f"-p {info.port} -U {info.user} -d {info.dbname} -c '\\d res_users'",
    )
