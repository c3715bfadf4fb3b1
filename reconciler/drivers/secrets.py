"""Encrypted store for the daemon's secrets, and the one place secret references are read.

Generated credentials must survive a daemon restart (a new password would lock Odoo out of its
database) but never reach git or logs. The store is one file encrypted with AES-256-GCM under a
master key taken from ``ODOOOPS_MASTER_KEY`` (base64) or a key file; it is rewritten atomically
so a crash never leaves a torn file.

Two kinds of entries share it: the daemon's own (``db/<env>``, ``odoo-admin/<env>``,
``mail/catcher``, ``masking/salt``), which no state file can name, and the operator's named secrets
(``user/<name>``, set with ``odooops secret set``), each with the hosts it may be sent to.
The CLI writes named secrets while the daemon runs, so every change is a read-modify-write
under an exclusive ``flock`` and every read notices a newer file: neither process loses the
other's entries, and the daemon sees a new secret without a restart.

``resolve`` reads a state's secret reference after applying the allowlist again
(``core.secretrefs``), this time on the real path of a file after its symlinks, so a
reference that passed validation under another policy, or a symlink planted in the secrets
directory, still cannot reach the daemon's own keys.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import string
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.core.errors import OdooOpsError, SecretsError
from reconciler.core.model import SecretRef
from reconciler.core.secretrefs import SECRET_NAME, Refusal, SecretPolicy, normal_host, refusal

MASTER_KEY_ENV = "ODOOOPS_MASTER_KEY"
NAMED_PREFIX = "user/"
"""Namespace of the operator's named secrets; everything else is the daemon's own."""

_AAD = b"odooops-secrets-v1"
_ALPHABET = string.ascii_letters + string.digits
_Stamp = tuple[int, int, int] | None


def generate(length: int = 32) -> str:
    """A new secret of letters and digits only (about 190 bits at 32 characters)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def load_master_key(key_file: Path | None) -> bytes:
    """The 32-byte master key: the environment variable wins over the file."""
    raw = os.environ.get(MASTER_KEY_ENV)
    source = f"${MASTER_KEY_ENV}"
    if raw is None and key_file is not None:
        try:
            raw = key_file.read_text().strip()
        except OSError as exc:
            raise SecretsError(
                f"cannot read the master key file {key_file}: {exc.strerror}",
                remediation=f"odooops init-key {key_file}",
            ) from exc
        source = str(key_file)
    if raw is None:
        raise SecretsError(
            "no master key: the secret store cannot be opened",
            remediation="odooops init-key /var/lib/odooops/master.key, then pass --master-key-file",
        )
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SecretsError(
            f"the master key in {source} is not 32 bytes of base64",
            remediation="odooops init-key PATH  (a new key; keep the old one while data exists)",
        )
    return key


def write_new_key(path: Path) -> None:
    """Create a key file readable by its owner only; refuse to overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")


class SecretStore:
    """Thread- and process-safe map of secret names to values, persisted encrypted.

    ``policy`` is the daemon's allowlist of secret references (``--secret-env-prefix``,
    ``--secrets-dir``); ``self.policy`` adds the named secrets the store holds now.
    """

    def __init__(self, path: Path, master_key: bytes, policy: SecretPolicy | None = None) -> None:
        self.path = path
        self._aead = AESGCM(master_key)
        self._policy = policy or SecretPolicy()
        self._lock = threading.Lock()
        self._stamp: _Stamp = None
        self._data: dict[str, str] = {}
        with self._lock:
            self._refresh()

    # ---------------------------------------------------------------------------- file
    def _current_stamp(self) -> _Stamp:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Re-read the file when another process replaced it (caller holds ``_lock``)."""
        stamp = self._current_stamp()
        if stamp != self._stamp or stamp is None:
            self._data = self._read() if stamp is not None else {}
            self._stamp = stamp

    def _read(self) -> dict[str, str]:
        blob = self.path.read_bytes()
        try:
            plain = self._aead.decrypt(blob[:12], blob[12:], _AAD)
        except (InvalidTag, ValueError) as exc:
            raise SecretsError(
                f"the secret store {self.path} cannot be decrypted with this master key",
                remediation="start the daemon with the master key it was created with "
                "(--master-key-file or $ODOOOPS_MASTER_KEY)",
            ) from exc
        data = json.loads(plain)
        return {str(k): str(v) for k, v in data.items()}

    def _write(self) -> None:
        nonce = secrets.token_bytes(12)
        blob = nonce + self._aead.encrypt(nonce, json.dumps(self._data).encode(), _AAD)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._stamp = self._current_stamp()

    @contextmanager
    def _changing(self) -> Iterator[dict[str, str]]:
        """Read-modify-write under the thread lock and an exclusive lock on ``<path>.lock``:
        the entries another process wrote meanwhile are read first, never overwritten."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._refresh()
                before = dict(self._data)
                try:
                    yield self._data
                except BaseException:
                    self._data = before  # nothing half-changed stays in memory
                    raise
                if self._data != before:
                    self._write()
            finally:
                os.close(fd)  # releases the flock

    # ------------------------------------------------------------------ daemon's own
    def get_or_create(self, name: str, length: int = 32) -> str:
        """A generated secret of letters and digits only (about 190 bits at 32 characters).

        Not ``token_urlsafe``: a value starting with ``-`` is taken for an option when the
        official Odoo entrypoint passes it on as ``--db_password VALUE``.
        """
        value = self.get(name)
        if value is not None:
            return value
        with self._changing() as data:
            value = data.get(name)
            if value is None:
                value = generate(length)
                data[name] = value
            return value

    def update(self, changes: Mapping[str, str | None]) -> None:
        """Set (a value) or remove (``None``) several of the daemon's own entries in one
        atomic write: a reader, or a daemon killed meanwhile, sees all of them or none."""
        named = sorted(n for n in changes if n.startswith(NAMED_PREFIX))
        if named:
            raise ValueError(f"{named[0]} is a named secret: set it with set_named")
        with self._changing() as data:
            for name, value in changes.items():
                if value is None:
                    data.pop(name, None)
                else:
                    data[name] = value

    def get(self, name: str) -> str | None:
        with self._lock:
            self._refresh()
            return self._data.get(name)

    def delete(self, name: str) -> None:
        if self.get(name) is None:
            return
        with self._changing() as data:
            data.pop(name, None)

    # ------------------------------------------------------------ operator's named
    def set_named(self, name: str, value: str, hosts: tuple[str, ...] = ()) -> None:
        """Store (or replace) a named secret and the hosts it may be sent to as a repository
        credential; an empty ``hosts`` allows it everywhere but as a credential."""
        if not SECRET_NAME.fullmatch(name):
            raise OdooOpsError(
                f"{name!r:.70} is not a secret name: letters, digits, '.', '_' and '-' "
                "(at most 64, no '/')",
                code="usage",
                remediation="odooops secret set NAME --host HOST (the value on stdin; --host only "
                "for a repository credential)",
            )
        normal: list[str] = []
        for host in hosts:
            found = normal_host(host)
            if found is None:
                raise OdooOpsError(
                    f"{host!r:.70} is not a host name or an IP address",
                    code="usage",
                    remediation=f"odooops secret set {name} --host git.example.com",
                )
            normal.append(found)
        if not value:
            raise OdooOpsError(
                f"no value for secret {name}: the value is read from stdin",
                code="usage",
                remediation=f'printf %s "$TOKEN" | odooops secret set {name}',
            )
        record = json.dumps({"value": value, "hosts": sorted(set(normal))})
        with self._changing() as data:
            data[NAMED_PREFIX + name] = record

    def named(self) -> dict[str, tuple[str, ...]]:
        """Every named secret with its hosts (never a value)."""
        with self._lock:
            self._refresh()
            entries = dict(self._data)
        return {
            key.removeprefix(NAMED_PREFIX): _record(raw)[1]
            for key, raw in sorted(entries.items())
            if key.startswith(NAMED_PREFIX)
        }

    @property
    def policy(self) -> SecretPolicy:
        """The allowlist with the named secrets held now: what validation judges by."""
        return replace(self._policy, named=self.named())

    # ---------------------------------------------------------------- references
    def resolve(self, ref: SecretRef) -> str:
        """The value ``ref`` points to, once the allowlist allows it (again)."""
        self._check(refusal(ref, self.policy))
        return self._value(ref)

    def credential(self, ref: SecretRef, url: str) -> str:
        """A repository credential for ``url``: a named secret declared for its host."""
        self._check(refusal(ref, self.policy, credential_for=url))
        return self._value(ref)

    @staticmethod
    def _check(found: Refusal | None) -> None:
        if found is not None:
            raise SecretsError(found.message, code=found.code, remediation=found.remediation)

    def _value(self, ref: SecretRef) -> str:
        if ref.secret is not None:
            raw = self.get(NAMED_PREFIX + ref.secret)
            if raw is None:  # deleted between the check and now
                raise SecretsError(
                    f"named secret {ref.secret} is not in the secret store",
                    code="secret_unknown",
                    remediation=f"odooops secret set {ref.secret} (the value on stdin)",
                )
            return _record(raw)[0]
        if ref.env is not None:
            value = os.environ.get(ref.env)
            if value is None:
                raise SecretsError(
                    f"environment variable {ref.env} is not set",
                    remediation=f"export {ref.env}=... before starting: odooops daemon "
                    "--state-repo URL",
                )
            return value
        assert ref.file is not None
        return self._file(ref.file)

    def _file(self, path: str) -> str:
        """Read a secrets file whose real path (symlinks followed) is still inside the
        secrets directory; a link pointing out of it is refused, not followed."""
        base = os.path.realpath(self._policy.secrets_dir)
        real = os.path.realpath(path)
        if os.path.commonpath([base, real]) != base or real == base:
            raise SecretsError(
                f"file {path} resolves outside {self._policy.secrets_dir} (through a symlink): "
                "it is not read",
                code="secret_ref_forbidden",
                remediation=f"replace the link {path} by the secret file itself (mode 0600)",
            )
        try:
            return Path(real).read_text().strip()
        except OSError as exc:
            raise SecretsError(
                f"cannot read secret file {path}: {exc.strerror}",
                remediation=f"ls -l {path}",
            ) from exc


def _record(raw: str) -> tuple[str, tuple[str, ...]]:
    """A named secret's entry: its value and its hosts."""
    doc = json.loads(raw)
    return str(doc["value"]), tuple(str(h) for h in doc.get("hosts", []))
