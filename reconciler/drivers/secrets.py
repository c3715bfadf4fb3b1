"""Encrypted store for generated secrets (database passwords) in the daemon's data directory.

Generated credentials must survive a daemon restart (a new password would lock Odoo out of its
database) but never reach git or logs. The store is one file encrypted with AES-256-GCM under a
master key taken from ``ODOOOPS_MASTER_KEY`` (base64) or a key file; it is rewritten atomically
so a crash never leaves a torn file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import string
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.core.errors import SecretsError

MASTER_KEY_ENV = "ODOOOPS_MASTER_KEY"
_AAD = b"odooops-secrets-v1"
_ALPHABET = string.ascii_letters + string.digits


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
    """Thread-safe map of secret names to values, persisted encrypted."""

    def __init__(self, path: Path, master_key: bytes) -> None:
        self.path = path
        self._aead = AESGCM(master_key)
        self._lock = threading.Lock()
        self._data = self._read()

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def get_or_create(self, name: str, length: int = 32) -> str:
        """A generated secret of letters and digits only (about 190 bits at 32 characters).

        Not ``token_urlsafe``: a value starting with ``-`` is taken for an option when the
        official Odoo entrypoint passes it on as ``--db_password VALUE``.
        """
        with self._lock:
            value = self._data.get(name)
            if value is None:
                value = "".join(secrets.choice(_ALPHABET) for _ in range(length))
                self._data[name] = value
                self._write()
            return value

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._data.get(name)

    def delete(self, name: str) -> None:
        with self._lock:
            if self._data.pop(name, None) is not None:
                self._write()
