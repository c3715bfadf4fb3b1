"""The errors of the backup pipeline, each with the command that diagnoses or fixes it.

They sit apart from ``reconciler.core.errors`` because only the backup modules raise them, and
the engine and the CLI need to tell them apart: a corrupt backup means "pick another one",
a key mismatch means "configure the other key", an unreachable store means "wait or fix the
network" and is the only one worth retrying by itself.
"""

from __future__ import annotations

from reconciler.core.errors import OdooOpsError


class BackupError(OdooOpsError):
    """A backup or restore failed; the base every other backup error derives from."""

    code = "backup_failed"


class BackupCorrupt(BackupError):
    """A backup was tampered with, truncated or damaged: its content must not be used."""

    code = "backup_corrupt"

    def __init__(self, message: str, *, remediation: str = "") -> None:
        super().__init__(
            message,
            remediation=remediation
            or "list the backups with `odooops db backups <env>` and restore another one",
        )


class BackupKeyMismatch(BackupError):
    """The backup was encrypted with another key than the one configured now.

    Both key ids are named (never the keys): the id is what an operator can compare with
    the ids of the keys kept in a password manager or an old ``odooops.yaml``. A caller that
    knows more (which backup of which environment) may pass its own message.
    """

    code = "backup_key_mismatch"

    def __init__(
        self,
        message: str | None = None,
        *,
        needed: str = "",
        configured: str = "",
        remediation: str = "",
    ) -> None:
        self.needed = needed
        self.configured = configured
        super().__init__(
            message
            or f"the backup was encrypted with key {needed} but the configured key is {configured}",
            remediation=remediation
            or (
                f"set backups.encryption_key in odooops.yaml to the key with id {needed}; "
                "a key's id is printed by `python3 -c \"from reconciler.data.backup.crypto import "
                "BackupKey; print(BackupKey.from_text(input(), 'stdin').key_id)\"` "
                "(paste the key on its standard input)"
            ),
        )


class BackupStorageError(BackupError):
    """The backup store cannot be reached, listed or written; the next pass may succeed."""

    code = "backup_storage_unreachable"
    retryable = True
