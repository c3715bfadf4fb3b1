"""Which secret references a daemon accepts, and to which host a repository credential may go.

A state file names secrets; it never holds them. Naming is power too: a file that may name any
environment variable or any file can point the daemon's own keys (the master key, the
PostgreSQL admin password, the API signing key, the backup key) at whatever consumes the
reference, and a repository token is sent, as HTTP basic auth, to whichever host the same file
names. So a reference must come from an allowlist the operator controls, not the state:

- ``{secret: NAME}``: a secret the operator stored with ``odooops secret set NAME`` (the
  ``user/`` namespace of the encrypted store; the daemon's own ``db/...`` and ``mail/...``
  entries cannot be named: a name has no ``/``);
- ``{env: NAME}``: only variables whose name starts with a configured prefix
  (``ODOOOPS_SECRET_`` by default);
- ``{file: PATH}``: only files under a configured directory (``/etc/odooops/secrets`` by
  default), without ``..``; the store resolves symlinks and checks the real path again.

A repository credential (``repository.token``, ``repository.ssh_key``) must be a named secret
whose declared hosts (``odooops secret set NAME --host HOST``) include the repository URL's
host: the operator, never the state file, decides where a credential may be sent.

Pure: ``refusal`` judges one reference against a ``SecretPolicy`` value. Reading a secret is
the store's job (``drivers/secrets.py``), which applies the same rules again at use, so a
reference that validated under another policy is still refused there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from reconciler.core.model import SecretRef

__all__ = [
    "DEFAULT_ENV_PREFIX",
    "DEFAULT_SECRETS_DIR",
    "SECRET_NAME",
    "Refusal",
    "SecretPolicy",
    "host_of",
    "normal_host",
    "refusal",
]

DEFAULT_ENV_PREFIX = "ODOOOPS_SECRET_"
DEFAULT_SECRETS_DIR = "/etc/odooops/secrets"
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A named secret: no ``/``, so a reference can never reach the store's internal entries."""

_ENV_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@(?P<host>[A-Za-z0-9.-]+):")
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class SecretPolicy:
    """The allowlist one daemon applies to secret references.

    ``named`` maps each named secret to the hosts it may be sent to, when the caller can see
    the store (the daemon and its API); ``None`` means unknown (``odooops validate`` on a
    checkout), and then only the rules that need no store are applied.
    """

    env_prefix: str = DEFAULT_ENV_PREFIX
    secrets_dir: str = DEFAULT_SECRETS_DIR
    named: Mapping[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if not _ENV_PREFIX.fullmatch(self.env_prefix):
            raise ValueError(
                f"the environment prefix {self.env_prefix!r} is not a variable name prefix"
            )
        directory = PurePosixPath(self.secrets_dir)
        if not directory.is_absolute() or ".." in directory.parts or directory == directory.parent:
            raise ValueError(
                f"the secrets directory {self.secrets_dir!r} must be an absolute path below /"
            )


@dataclass(frozen=True)
class Refusal:
    """Why a reference is not allowed: a stable ``code`` naming the rule, and the fix."""

    code: str
    message: str
    remediation: str


def normal_host(host: str) -> str | None:
    """``host`` lowercased, without a trailing dot, if it is a host name or an IP address."""
    text = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    labels = text.split(".")
    if text and len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels):
        return text
    return None


def host_of(url: str) -> str | None:
    """The host a git URL connects to (https, ssh, ``git@host:path``); ``None`` for a local
    repository (``file://``, ``/path``) or a URL with no readable host."""
    match = _SCP_LIKE.match(url)
    if match is not None and "://" not in url:
        return normal_host(match.group("host"))
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or not parts.hostname:
        return None
    return normal_host(parts.hostname)


def refusal(
    ref: SecretRef, policy: SecretPolicy, *, credential_for: str | None = None
) -> Refusal | None:
    """Why ``ref`` may not be used, or ``None`` when it may.

    ``credential_for`` is the repository URL when ``ref`` is that repository's credential:
    then only a named secret declared for the URL's host is allowed.
    """
    if credential_for is not None:
        return _credential(ref, policy, credential_for)
    if ref.secret is not None:
        return _named(ref.secret, policy)
    if ref.env is not None:
        if ref.env.startswith(policy.env_prefix) and ref.env != policy.env_prefix:
            return None
        return Refusal(
            "secret_ref_forbidden",
            f"environment variable {ref.env} is not allowed: only variables starting with "
            f"{policy.env_prefix} may be named (the daemon's own keys live in other variables)",
            f"export the secret as {policy.env_prefix}{_suffix(ref.env)} for the daemon and "
            f"write {{env: {policy.env_prefix}{_suffix(ref.env)}}}, or store it with "
            "odooops secret set NAME and write {secret: NAME}",
        )
    if ref.file is not None:
        if _inside(ref.file, policy.secrets_dir):
            return None
        return Refusal(
            "secret_ref_forbidden",
            f"file {ref.file} is not allowed: only files under {policy.secrets_dir} "
            "(without ..) may be named",
            f"move the secret to {policy.secrets_dir}/<name> (mode 0600) and name that file",
        )
    return Refusal(
        "secret_ref_forbidden",
        "an empty secret reference names nothing",
        "write {secret: NAME}, {env: " + policy.env_prefix + "NAME} or {file: "
        f"{policy.secrets_dir}/NAME}}",
    )


def _credential(ref: SecretRef, policy: SecretPolicy, url: str) -> Refusal | None:
    host = host_of(url)
    if ref.secret is None:
        return Refusal(
            "secret_ref_forbidden",
            "a repository credential must be a named secret ({secret: NAME}) declared for the "
            "repository's host, not an environment variable or a file",
            f"odooops secret set NAME --host {host or 'HOST'} --data-dir DATA_DIR (the value on "
            "stdin), then write {secret: NAME}",
        )
    if host is None:
        return Refusal(
            "credential_host_forbidden",
            "a credential is configured for a repository URL without a host (a local path): "
            "it would never be used, and is refused rather than sent anywhere",
            "remove repository.token and repository.ssh_key, or use an https or ssh URL",
        )
    named = _named(ref.secret, policy)
    if named is not None or policy.named is None:
        return named
    hosts = policy.named.get(ref.secret, ())
    if host in hosts:
        return None
    declared = ", ".join(hosts) or "no host"
    return Refusal(
        "credential_host_forbidden",
        f"named secret {ref.secret} may be sent to {declared}, not to {host} (the host of the "
        "repository URL); nothing was sent",
        f"if {host} is meant to receive it: odooops secret set {ref.secret} --host {host} "
        "--data-dir DATA_DIR (the value on stdin again); otherwise fix repository.url",
    )


def _named(name: str, policy: SecretPolicy) -> Refusal | None:
    if not SECRET_NAME.fullmatch(name):
        return Refusal(
            "secret_ref_forbidden",
            f"{name!r:.70} is not a secret name: letters, digits, '.', '_' and '-', no '/'",
            "write {secret: NAME} with a name given to odooops secret set",
        )
    if policy.named is not None and name not in policy.named:
        return Refusal(
            "secret_unknown",
            f"named secret {name} is not in the daemon's secret store",
            f"odooops secret set {name} --data-dir DATA_DIR (the value on stdin; add "
            "--host HOST for a repository credential)",
        )
    return None


def _inside(path: str, directory: str) -> bool:
    """Lexically below ``directory``: absolute, no ``..`` or ``.`` parts, not the directory
    itself. Symlinks are the store's to resolve: this check sees only the text."""
    candidate = PurePosixPath(path)
    if not candidate.is_absolute() or any(part in ("..", ".") for part in path.split("/")):
        return False
    base = PurePosixPath(directory)
    return candidate != base and candidate.is_relative_to(base)


def _suffix(name: str) -> str:
    """A readable variable name for the remediation: the old one without a common prefix."""
    return re.sub(r"^ODOOOPS_", "", name) or "NAME"
