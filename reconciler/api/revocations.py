"""The token revocation list and the token audit log, both in the daemon's data directory.

Why a file and not the daemon's memory: ``odooops token revoke --data-dir DIR`` and
``POST /v1/tokens/revoke`` both revoke, and a revocation made by the CLI must bite the running
daemon at once. So the list is ``DATA_DIR/revoked-tokens.json``, always replaced whole (written
to a temporary file, then renamed: a reader never sees half a list; mode 0600), and the daemon
re-reads it whenever its inode, size or times change (one ``stat`` per request). Writers take an
``flock`` on a sibling lock file, so a CLI and an API revocation at the same moment both stay.

A list that exists but cannot be read refuses every token (fail closed): a damaged file must
never bring revoked tokens back to life. Every revocation, and every token minted, is appended
to ``DATA_DIR/token-audit.jsonl`` (one JSON object per line, opened ``O_APPEND``), so who did
what to which token stays on record even after an entry of the list is pruned. So is every
view and rotation of an environment's Odoo administrator password, by whose token (never the
password itself): what a token did with a credential is read beside its minting and revocation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.api.auth import InvalidTokenRequest, check_token_id
from reconciler.core.errors import OdooOpsError

__all__ = ["AUDIT_FILE", "REVOKED_FILE", "RevocationList", "RevocationsUnreadable"]

REVOKED_FILE = "revoked-tokens.json"
AUDIT_FILE = "token-audit.jsonl"
_MAX_REASON = 500
# An entry outlives its token's expiry by this much (clock skew, leeway), then is pruned.
_KEEP_AFTER_EXPIRY = timedelta(days=1)


class RevocationsUnreadable(OdooOpsError):
    """503: the revocation list exists but cannot be read; every token is refused meanwhile."""

    code = "revocations_unreadable"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RevocationList:
    """``DATA_DIR/revoked-tokens.json``: jti -> who revoked it, when, why (``auth.Revocations``)."""

    def __init__(self, data_dir: Path, clock: Callable[[], datetime] = _utcnow) -> None:
        self.path = Path(data_dir) / REVOKED_FILE
        self.audit_path = Path(data_dir) / AUDIT_FILE
        self._lock_path = Path(data_dir) / f".{REVOKED_FILE}.lock"
        self._clock = clock
        self._guard = threading.Lock()
        self._seen: tuple[int, ...] | None = None
        self._revoked: dict[str, dict[str, str]] = {}

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._current()

    def entries(self) -> dict[str, dict[str, str]]:
        """Every revoked jti with its record (a copy)."""
        return {k: dict(v) for k, v in self._current().items()}

    def revoke(
        self, token_id: str, *, by: str, reason: str, subject: str = "", expires_at: str = ""
    ) -> dict[str, str]:
        """Add ``token_id`` (idempotent: a second revocation keeps the first record)."""
        check_token_id(token_id)
        if not 1 <= len(reason) <= _MAX_REASON:
            raise InvalidTokenRequest(
                f"the reason must be 1 to {_MAX_REASON} characters",
                remediation=f'odooops token revoke {token_id} --reason "left the team"',
            )
        now = self._clock()
        entry = {
            "at": now.isoformat(timespec="seconds"),
            "by": by,
            "reason": reason,
            "subject": subject,
            "expires_at": expires_at,
        }
        with self._exclusive():
            revoked = self._read()
            kept = {k: v for k, v in revoked.items() if not _expired(v, now)}
            entry = kept.setdefault(token_id, entry)
            self._write(kept)
        self.record(
            {
                "event": "revoked",
                "jti": token_id,
                "by": by,
                "reason": reason,
                "subject": subject,
            }
        )
        return {"jti": token_id, **entry}

    def record(self, event: Mapping[str, str]) -> None:
        line = {"time": self._clock().isoformat(timespec="seconds"), **event}
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)  # one write of one line: appends never interleave
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ internals
    def _current(self) -> dict[str, dict[str, str]]:
        with self._guard:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._seen, self._revoked = None, {}
                return self._revoked
            except OSError as exc:
                raise self._unreadable(exc.strerror or type(exc).__name__) from None
            seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if seen != self._seen:
                self._revoked = self._read()
                self._seen = seen
            return self._revoked

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            doc: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise self._unreadable(type(exc).__name__) from None
        revoked = doc.get("revoked") if isinstance(doc, dict) else None
        if not isinstance(revoked, dict) or not all(
            isinstance(k, str)
            and isinstance(v, dict)
            and all(isinstance(x, str) for x in v.values())
            for k, v in revoked.items()
        ):
            raise self._unreadable("not an object of revoked token ids")
        return revoked

    def _write(self, revoked: Mapping[str, Mapping[str, str]]) -> None:
        fd, name = tempfile.mkstemp(prefix=f".{REVOKED_FILE}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp: mode 0600
                json.dump({"version": 1, "revoked": revoked}, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(name, self.path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _unreadable(self, why: str) -> RevocationsUnreadable:
        return RevocationsUnreadable(
            f"the token revocation list {self.path} cannot be read ({why}); every token is "
            "refused until it can",
            remediation=f"python3 -m json.tool {self.path}  (fix it, or move it aside and "
            f"revoke again each jti listed as revoked in {self.audit_path} with "
            f"odooops token revoke JTI --data-dir {self.path.parent})",
        )


def _expired(entry: Mapping[str, str], now: datetime) -> bool:
    """An entry whose token has expired (plus a margin) protects nothing any more."""
    raw = entry.get("expires_at", "")
    if not raw:
        return False
    try:
        expires = datetime.fromisoformat(raw)
    except ValueError:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires + _KEEP_AFTER_EXPIRY < now
