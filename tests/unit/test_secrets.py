"""The encrypted secret store (files in a temporary directory, no services)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from reconciler.core.errors import SecretsError
from reconciler.drivers.secrets import SecretStore, load_master_key, write_new_key

KEY = bytes(range(32))


def test_secrets_survive_a_restart_and_are_not_stored_in_clear(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "s.enc", KEY)
    value = store.get_or_create("db/acme/prod")
    assert SecretStore(tmp_path / "s.enc", KEY).get("db/acme/prod") == value
    assert value.encode() not in (tmp_path / "s.enc").read_bytes()
    assert (tmp_path / "s.enc").stat().st_mode & 0o777 == 0o600


def test_generated_secrets_are_letters_and_digits_only() -> None:
    """A leading '-' would be taken for an option by the official Odoo entrypoint."""
    store = SecretStore(Path("/nonexistent/never-written"), KEY)
    store._write = lambda: None  # type: ignore[method-assign]
    values = [store.get_or_create(f"k{i}") for i in range(200)]
    assert all(v.isalnum() and len(v) == 32 for v in values)


def test_wrong_master_key_is_refused_without_touching_the_store(tmp_path: Path) -> None:
    SecretStore(tmp_path / "s.enc", KEY).get_or_create("x")
    before = (tmp_path / "s.enc").read_bytes()
    with pytest.raises(SecretsError) as info:
        SecretStore(tmp_path / "s.enc", bytes(32))
    assert "master key" in info.value.remediation
    assert (tmp_path / "s.enc").read_bytes() == before


def test_master_key_from_the_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "master.key"
    write_new_key(key_file)
    monkeypatch.setenv("ODOOOPS_MASTER_KEY", base64.b64encode(KEY).decode())
    assert load_master_key(key_file) == KEY
    monkeypatch.delenv("ODOOOPS_MASTER_KEY")
    assert len(load_master_key(key_file)) == 32
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_malformed_master_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODOOOPS_MASTER_KEY", "not-base64!")
    with pytest.raises(SecretsError) as info:
        load_master_key(None)
    assert "init-key" in info.value.remediation


def test_init_key_refuses_to_overwrite(tmp_path: Path) -> None:
    write_new_key(tmp_path / "k")
    with pytest.raises(FileExistsError):
        write_new_key(tmp_path / "k")
