"""Opening a daemon from its data directory: the one place where an engine is put together.

The CLI builds engines here, so it never touches the secret store or a driver itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.core.errors import SecretsError
from reconciler.drivers.secrets import MASTER_KEY_ENV, SecretStore, load_master_key, write_new_key
from reconciler.engine.engine import Engine, EngineConfig

__all__ = ["new_key_file", "open_engine"]


def open_engine(config: EngineConfig, master_key_file: Path | None) -> Engine:
    """The engine of ``config.data_dir``, its secret store opened with the master key."""
    key_file = master_key_file or (config.data_dir / "master.key")
    if master_key_file is None and not key_file.exists() and MASTER_KEY_ENV not in os.environ:
        raise SecretsError(
            f"no master key: neither --master-key-file, ${MASTER_KEY_ENV} nor {key_file}",
            remediation=f"odooops init-key {key_file}",
        )
    secrets = SecretStore(config.data_dir / "secrets.enc", load_master_key(key_file))
    return Engine(config, secrets)


def new_key_file(path: Path) -> None:
    """A new 32-byte key, base64, in a file only its owner reads (refuses to overwrite)."""
    write_new_key(path)
