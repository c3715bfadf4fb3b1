"""The encrypted secret store (files in a temporary directory, no services)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from reconciler.core.errors import OdooOpsError, SecretsError
from reconciler.core.model import SecretRef
from reconciler.core.secretrefs import SecretPolicy
from reconciler.drivers.secrets import SecretStore, load_master_key, write_new_key

KEY = bytes(range(32))


def test_secrets_survive_a_restart_and_are_not_stored_in_clear(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "s.enc", KEY)
    value = store.get_or_create("db/acme/prod")
    assert SecretStore(tmp_path / "s.enc", KEY).get("db/acme/prod") == value
    assert value.encode() not in (tmp_path / "s.enc").read_bytes()
    assert (tmp_path / "s.enc").stat().st_mode & 0o777 == 0o600


def test_generated_secrets_are_letters_and_digits_only(tmp_path: Path) -> None:
    """A leading '-' would be taken for an option by the official Odoo entrypoint."""
    store = SecretStore(tmp_path / "s.enc", KEY)
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


# ------------------------------------------------------------------------- named secrets


def store_in(tmp_path: Path) -> SecretStore:
    """A store whose secrets directory is ``tmp_path/secrets`` (made, 0700)."""
    (tmp_path / "secrets").mkdir(mode=0o700, exist_ok=True)
    policy = SecretPolicy(secrets_dir=str(tmp_path / "secrets"))
    return SecretStore(tmp_path / "s.enc", KEY, policy)


def test_a_named_secret_is_listed_with_its_hosts_never_its_value(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.set_named("acme-git", "ghp_t0ken", ("GitHub.com.", "10.0.0.7"))
    assert store.named() == {"acme-git": ("10.0.0.7", "github.com")}
    assert b"ghp_t0ken" not in (tmp_path / "s.enc").read_bytes()
    assert store.resolve(SecretRef(secret="acme-git")) == "ghp_t0ken"
    assert store.policy.named == {"acme-git": ("10.0.0.7", "github.com")}


def test_two_processes_sharing_the_store_never_lose_each_other_s_entries(tmp_path: Path) -> None:
    """The daemon holds the store open while ``odooops secret set`` writes to it."""
    daemon, cli = store_in(tmp_path), store_in(tmp_path)
    password = daemon.get_or_create("db/acme/prod")
    cli.set_named("acme-git", "ghp_t0ken", ("github.com",))
    assert daemon.named() == {"acme-git": ("github.com",)}
    daemon.get_or_create("db/acme/staging")
    reopened = store_in(tmp_path)
    assert reopened.get("db/acme/prod") == password
    assert reopened.get("db/acme/staging") is not None
    assert reopened.resolve(SecretRef(secret="acme-git")) == "ghp_t0ken"


def test_an_update_sets_and_removes_several_entries_at_once_for_every_reader(
    tmp_path: Path,
) -> None:
    """What a rotation needs: the new value in and the old one out in one write."""
    daemon, other = store_in(tmp_path), store_in(tmp_path)
    daemon.update({"odoo-admin/acme/prod": "old", "odoo-admin-next/acme/prod": "new"})
    assert other.get("odoo-admin-next/acme/prod") == "new"
    other.update({"odoo-admin/acme/prod": "new", "odoo-admin-next/acme/prod": None})
    assert daemon.get("odoo-admin/acme/prod") == "new"
    assert daemon.get("odoo-admin-next/acme/prod") is None
    daemon.update({"never-there": None})  # removing what is not there is no error


def test_an_update_never_touches_a_named_secret(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.set_named("acme-git", "ghp_t0ken")
    with pytest.raises(ValueError, match="named secret"):
        store.update({"odoo-admin/acme/prod": "x", "user/acme-git": None})
    assert store.get("odoo-admin/acme/prod") is None
    assert store.resolve(SecretRef(secret="acme-git")) == "ghp_t0ken"


@pytest.mark.parametrize(
    ("name", "value", "hosts"),
    [
        ("db/acme/prod", "x", ()),
        ("", "x", ()),
        ("acme-git", "", ()),
        ("acme-git", "x", ("not a host",)),
        ("acme-git", "x", ("https://github.com",)),
    ],
)
def test_a_bad_name_host_or_empty_value_is_refused_and_nothing_stored(
    tmp_path: Path, name: str, value: str, hosts: tuple[str, ...]
) -> None:
    store = store_in(tmp_path)
    with pytest.raises(OdooOpsError) as info:
        store.set_named(name, value, hosts)
    assert info.value.code == "usage"
    assert info.value.remediation.startswith(("odooops secret set", "printf"))
    assert not (tmp_path / "s.enc").exists()


def test_the_daemon_s_own_entries_cannot_be_resolved_by_name(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.get_or_create("db/acme/prod")
    with pytest.raises(SecretsError) as info:
        store.resolve(SecretRef(secret="db/acme/prod"))
    assert info.value.code == "secret_ref_forbidden"


def test_an_unknown_named_secret_says_how_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(SecretsError) as info:
        store_in(tmp_path).resolve(SecretRef(secret="acme-git"))
    assert info.value.code == "secret_unknown"
    assert info.value.remediation.startswith("odooops secret set acme-git")


def test_variables_are_read_only_with_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applied again at use: a reference validated under another policy is still refused."""
    monkeypatch.setenv("ODOOOPS_SECRET_S3", "key-id")
    monkeypatch.setenv("ODOOOPS_MASTER_KEY", base64.b64encode(KEY).decode())
    store = store_in(tmp_path)
    assert store.resolve(SecretRef(env="ODOOOPS_SECRET_S3")) == "key-id"
    with pytest.raises(SecretsError) as info:
        store.resolve(SecretRef(env="ODOOOPS_MASTER_KEY"))
    assert info.value.code == "secret_ref_forbidden"
    assert base64.b64encode(KEY).decode() not in info.value.render()


def test_files_are_read_only_inside_the_secrets_directory(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    (tmp_path / "secrets" / "pg-admin").write_text("pw\n")
    (tmp_path / "api.key").write_text("signing-key")
    assert store.resolve(SecretRef(file=str(tmp_path / "secrets" / "pg-admin"))) == "pw"
    for path in (tmp_path / "api.key", tmp_path / "secrets" / ".." / "api.key"):
        with pytest.raises(SecretsError) as info:
            store.resolve(SecretRef(file=str(path)))
        assert info.value.code == "secret_ref_forbidden"


def test_a_symlink_out_of_the_secrets_directory_is_not_followed(tmp_path: Path) -> None:
    """The path is inside, the file it reaches is not: refused on the real path."""
    store = store_in(tmp_path)
    (tmp_path / "master.key").write_text("the-master-key")
    os.symlink(tmp_path / "master.key", tmp_path / "secrets" / "innocent")
    with pytest.raises(SecretsError) as info:
        store.resolve(SecretRef(file=str(tmp_path / "secrets" / "innocent")))
    assert info.value.code == "secret_ref_forbidden"
    assert "symlink" in info.value.message
    assert "the-master-key" not in info.value.render()


def test_a_symlink_inside_the_secrets_directory_is_followed(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    (tmp_path / "secrets" / "pg-admin.v2").write_text("pw2")
    os.symlink("pg-admin.v2", tmp_path / "secrets" / "pg-admin")
    assert store.resolve(SecretRef(file=str(tmp_path / "secrets" / "pg-admin"))) == "pw2"


@pytest.mark.parametrize(
    ("ref", "url", "code"),
    [
        (SecretRef(secret="acme-git"), "https://github.com/acme/x.git", None),
        (SecretRef(secret="acme-git"), "git@github.com:acme/x.git", None),
        (
            SecretRef(secret="acme-git"),
            "https://evil.example/acme/x.git",
            "credential_host_forbidden",
        ),
        (SecretRef(secret="acme-git"), "file:///srv/x.git", "credential_host_forbidden"),
        (SecretRef(secret="other"), "https://github.com/acme/x.git", "secret_unknown"),
        (SecretRef(env="ODOOOPS_SECRET_GIT"), "https://github.com/x.git", "secret_ref_forbidden"),
    ],
)
def test_a_repository_credential_is_given_only_for_its_declared_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: SecretRef, url: str, code: str | None
) -> None:
    monkeypatch.setenv("ODOOOPS_SECRET_GIT", "env-token")
    store = store_in(tmp_path)
    store.set_named("acme-git", "ghp_t0ken", ("github.com",))
    if code is None:
        assert store.credential(ref, url) == "ghp_t0ken"
        return
    with pytest.raises(SecretsError) as info:
        store.credential(ref, url)
    assert info.value.code == code
    assert "ghp_t0ken" not in info.value.render() and "env-token" not in info.value.render()
