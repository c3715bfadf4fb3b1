"""The Odoo administrator's login of each environment: its password kept by the platform.

Every environment gets a generated administrator password of its own, kept in the daemon's
encrypted secret store as ``odoo-admin/<project>/<env>``, and written into its database as
Odoo stores it (``reconciler.data.database.adminlogin``): when a new database is initialised,
and on every copy, restore or import into the environment, so a staging copy of production
opens with staging's password, never production's, and production keeps its own through a
restore. Nothing ever logs in with Odoo's default ``admin``/``admin``.

A rotation changes two places that cannot share a transaction: the store and the database.
Its order makes sure the password that works is never lost, whatever fails or wherever the
daemon is killed:

1. the new password is stored as ``odoo-admin-next/<project>/<env>``, beside the one in force,
   which stays;
2. its hash is written into the database, in one transaction;
3. only then does it replace the one in force, and ``-next`` goes, in one write of the store.

Killed or failing before 2 commits, the database keeps the old password and the store still
names it as in force. Killed between 2 and 3 (or a commit whose outcome the client never
heard), the database holds the password that is still only ``-next``: showing the login tries
the one in force, then ``-next``, and answers with the one the database's hash verifies; the
next rotation first settles such a leftover (kept in force when the database holds it,
dropped otherwise). The database is never written with a password the store does not hold.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.model import EnvKey
from reconciler.data.database import adminlogin
from reconciler.data.database.endpoint import Endpoint
from reconciler.drivers.secrets import SecretStore, generate

__all__ = ["AdminCredentials", "AdminPasswords", "next_name", "secret_name"]

PASSWORD_LENGTH = 32


def secret_name(key: EnvKey) -> str:
    """The store's entry of the password in force."""
    return f"odoo-admin/{key}"


def next_name(key: EnvKey) -> str:
    """The store's entry of a rotation's new password, until the database holds it."""
    return f"odoo-admin-next/{key}"


@dataclass(frozen=True)
class AdminCredentials:
    """What logs in as the administrator of one environment.

    ``verified`` says the database's hash is this password's: False when it holds another
    (changed in Odoo itself, or an environment older than this platform's passwords).
    """

    environment: str
    login: str
    password: str = field(repr=False)
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "login": self.login,
            "password": self.password,
            "verified": self.verified,
        }


class AdminPasswords:
    """The administrator passwords of environments, over the daemon's secret store.

    Callers hold the environment's operation lock for ``set`` and ``rotate`` (a rotation may
    drop a ``-next`` entry, which must not be one another rotation is writing right now);
    ``show`` changes nothing (but makes a first password when there is none), and needs none.
    """

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-hash")
        self._prepared: dict[EnvKey, tuple[str, Future[str]]] = {}
        self._lock = threading.Lock()

    def password(self, key: EnvKey) -> str:
        """The password in force (made on first use)."""
        return self.store.get_or_create(secret_name(key), PASSWORD_LENGTH)

    def prepare(self, key: EnvKey) -> None:
        """Start hashing the password in force in the background: Odoo's 600,000 PBKDF2
        rounds take about half a second of CPU, which a new environment's ``odoo -i`` (in
        its own container) leaves free; ``set`` then only writes the row."""
        password = self.password(key)
        with self._lock:
            self._prepared[key] = (
                password,
                self._hasher.submit(adminlogin.hash_password, password),
            )

    def set(self, key: EnvKey, login: Endpoint) -> adminlogin.AdminUser:
        """Write the password in force into the database ``login`` reaches."""
        password = self.password(key)
        with self._lock:
            prepared = self._prepared.pop(key, None)
        hashed = prepared[1].result() if prepared is not None and prepared[0] == password else None
        with login.connect() as conn:
            return adminlogin.set_password(conn, password, hashed=hashed)

    def show(self, key: EnvKey, login: Endpoint) -> AdminCredentials:
        """The administrator's login and the password its database holds (see the module's
        docstring for why a ``-next`` password may be the one)."""
        with login.connect() as conn:
            admin = adminlogin.find_admin(conn)
        current = self.password(key)
        pending = self.store.get(next_name(key))
        for candidate in (current, pending):
            if candidate is not None and adminlogin.verify(candidate, admin.password_hash):
                return AdminCredentials(str(key), admin.login, candidate, True)
        return AdminCredentials(str(key), admin.login, current, False)

    def rotate(self, key: EnvKey, login: Endpoint) -> AdminCredentials:
        """A new password, in the store and the database, in the order that loses nothing."""
        with login.connect() as conn:
            admin = adminlogin.find_admin(conn)  # nothing is stored for a database without one
            self._settle(key, admin)
            new = generate(PASSWORD_LENGTH)
            self.store.update({next_name(key): new})
            # A failure here leaves -next for the next show or rotation to judge: whether the
            # commit landed cannot always be known (the connection may drop mid-COMMIT).
            written = adminlogin.set_password(conn, new)
        self.store.update({secret_name(key): new, next_name(key): None})
        return AdminCredentials(str(key), written.login, new, True)

    def forget(self, key: EnvKey) -> None:
        """The environment and its data are gone: so are its passwords."""
        self.store.update({secret_name(key): None, next_name(key): None})

    def _settle(self, key: EnvKey, admin: adminlogin.AdminUser) -> None:
        """Finish an interrupted rotation: its password goes in force when the database holds
        it, and is dropped otherwise."""
        pending = self.store.get(next_name(key))
        if pending is None:
            return
        if adminlogin.verify(pending, admin.password_hash):
            self.store.update({secret_name(key): pending, next_name(key): None})
        else:
            self.store.update({next_name(key): None})
