"""The password of the shared PostgreSQL server's admin, for tests and benches.

``scripts/setup.sh`` makes it once and keeps it root-only in /etc/odooops/secrets/pg-admin;
nothing on the machine logs in without a password any more. ``export()`` puts it where every
client of this process and its children looks: ``PGPASSWORD`` (libpq: psycopg, psql,
pg_dump) and ``ODOOOPS_SECRET_PG_ADMIN``, the variable a test state's
``admin_password: {env: ODOOOPS_SECRET_PG_ADMIN}`` names. A password already in
``PGPASSWORD`` wins (another server, a CI secret); ``$ODOOOPS_PG_ADMIN_PASSWORD_FILE`` names
another file.
"""

from __future__ import annotations

import os
from pathlib import Path

PASSWORD_FILE = Path(
    os.environ.get("ODOOOPS_PG_ADMIN_PASSWORD_FILE", "/etc/odooops/secrets/pg-admin")
)
ENV_REF = "ODOOOPS_SECRET_PG_ADMIN"
"""The environment variable a test state's ``admin_password`` names (the allowed prefix)."""


class PasswordUnavailable(RuntimeError):
    """The admin password cannot be read: the machine is not set up, or this is not root."""


def admin_password() -> str:
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    try:
        password = PASSWORD_FILE.read_text().strip()
    except OSError as exc:
        raise PasswordUnavailable(
            f"cannot read the PostgreSQL admin password {PASSWORD_FILE} ({exc.strerror}): "
            "run bash scripts/setup.sh services (as root), run the tests as root, or export "
            "PGPASSWORD"
        ) from exc
    if not password:
        raise PasswordUnavailable(f"{PASSWORD_FILE} is empty: run bash scripts/setup.sh services")
    return password


def export() -> str:
    """Make the password known to this process and its children; returns it."""
    password = admin_password()
    os.environ["PGPASSWORD"] = password
    os.environ[ENV_REF] = password
    return password
