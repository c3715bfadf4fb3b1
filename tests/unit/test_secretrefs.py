"""The allowlist of secret references and the host of a git URL (pure)."""

from __future__ import annotations

import pytest

from reconciler.core.model import SecretRef
from reconciler.core.secretrefs import SecretPolicy, host_of, normal_host, refusal


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://github.com/acme/x.git", "github.com"),
        ("https://GitHub.COM./acme/x.git", "github.com"),
        ("https://git.example:8443/acme/x.git", "git.example"),
        ("ssh://git@gitlab.example:2222/acme/x.git", "gitlab.example"),
        ("git@github.com:acme/x.git", "github.com"),
        ("http://[::1]:8080/x.git", "::1"),
        ("http://127.0.0.1:9/x.git", "127.0.0.1"),
        ("file:///srv/git/x.git", None),
        ("/srv/git/x.git", None),
        ("https://bad_host/x.git", None),
    ],
)
def test_the_host_a_git_url_connects_to(url: str, host: str | None) -> None:
    assert host_of(url) == host


@pytest.mark.parametrize("text", ["", "a b", "-x.example", "x..example", "https://x", "a/b"])
def test_what_is_not_a_host(text: str) -> None:
    assert normal_host(text) is None


@pytest.mark.parametrize(
    ("prefix", "directory"),
    [
        ("", "/etc/odooops/secrets"),
        ("1X", "/etc/x"),
        ("X_", "relative"),
        ("X_", "/"),
        ("X_", "/a/../b"),
    ],
)
def test_a_policy_refuses_a_prefix_or_directory_that_allows_everything(
    prefix: str, directory: str
) -> None:
    with pytest.raises(ValueError):
        SecretPolicy(env_prefix=prefix, secrets_dir=directory)


def test_named_secrets_are_judged_only_when_the_store_is_known() -> None:
    """``odooops validate`` on a checkout cannot see the store; the daemon can."""
    ref = SecretRef(secret="acme-git")
    assert refusal(ref, SecretPolicy()) is None
    unknown = refusal(ref, SecretPolicy(named={}))
    assert unknown is not None and unknown.code == "secret_unknown"
    assert refusal(ref, SecretPolicy(named={"acme-git": ()})) is None


def test_a_secret_declared_for_no_host_is_never_a_credential() -> None:
    found = refusal(
        SecretRef(secret="salt"),
        SecretPolicy(named={"salt": ()}),
        credential_for="https://github.com/acme/x.git",
    )
    assert found is not None and found.code == "credential_host_forbidden"
    assert "not to github.com" in found.message
