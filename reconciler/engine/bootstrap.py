"""Opening a daemon from its data directory: the one place where an engine is put together.

The CLI builds engines here, so it never touches the secret store or a driver itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.core.errors import SecretsError
from reconciler.core.secretrefs import SecretPolicy
from reconciler.drivers.secrets import MASTER_KEY_ENV, SecretStore, load_master_key, write_new_key
from reconciler.engine.engine import Engine, EngineConfig

__all__ = ["list_secrets", "new_key_file", "open_engine", "set_secret"]


def _open_store(
    data_dir: Path, master_key_file: Path | None, policy: SecretPolicy | None = None
) -> SecretStore:
    key_file = master_key_file or (data_dir / "master.key")
    if master_key_file is None and not key_file.exists() and MASTER_KEY_ENV not in os.environ:
        raise SecretsError(
            f"no master key: neither --master-key-file, ${MASTER_KEY_ENV} nor {key_file}",
            remediation=f"odooops init-key {key_file}",
        )
    return SecretStore(data_dir / "secrets.enc", load_master_key(key_file), policy)


def open_engine(
    config: EngineConfig, master_key_file: Path | None, policy: SecretPolicy | None = None
) -> Engine:
    """The engine of ``config.data_dir``, its secret store opened with the master key and
    the daemon's allowlist of secret references."""
    return Engine(config, _open_store(config.data_dir, master_key_file, policy))


def set_secret(
    data_dir: Path,
    master_key_file: Path | None,
    name: str,
    value: str,
    hosts: tuple[str, ...],
) -> None:
    """Store a named secret in the daemon's store (a running daemon sees it on its next use)."""
    _open_store(data_dir, master_key_file).set_named(name, value, hosts)


def list_secrets(data_dir: Path, master_key_file: Path | None) -> dict[str, tuple[str, ...]]:
    """Named secrets and their hosts; values never leave the store here."""
    return _open_store(data_dir, master_key_file).named()


def new_key_file(path: Path) -> None:
    """A new 32-byte key, base64, in a file only its owner reads (refuses to overwrite)."""
    write_new_key(path)
