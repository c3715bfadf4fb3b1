"""Authenticity of a delivery, per forge, compared in constant time.

GitHub signs the raw body (``X-Hub-Signature-256: sha256=<hex>``); Gitea/Forgejo sign it too
(``X-Gitea-Signature: <hex>``, and also send GitHub's header); GitLab sends the shared secret
itself (``X-Gitlab-Token``). A delivery that fails is refused before its body is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from reconciler.core.errors import OdooOpsError


class InvalidDelivery(OdooOpsError):
    code = "invalid_webhook"


def header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def forge_of(headers: Mapping[str, str]) -> str:
    """Which forge sent it: Gitea also sends GitHub's headers, so it is checked first."""
    if header(headers, "X-Gitea-Event") is not None:
        return "gitea"
    if header(headers, "X-Gitlab-Event") is not None:
        return "gitlab"
    if header(headers, "X-GitHub-Event") is not None:
        return "github"
    raise InvalidDelivery(
        "not a GitHub, GitLab or Gitea delivery (no event header)",
        remediation="point the forge's webhook at /webhooks/<forge> with content type JSON",
    )


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> str:
    """Return the forge when the delivery is authentic; raise ``InvalidDelivery`` otherwise."""
    forge = forge_of(headers)
    if forge == "gitlab":
        token = header(headers, "X-Gitlab-Token") or ""
        if not hmac.compare_digest(token.encode(), secret.encode()):
            raise InvalidDelivery(
                "GitLab token does not match",
                remediation="set the same secret token in GitLab and OdooOps",
            )
        return forge
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge == "gitea":
        given = header(headers, "X-Gitea-Signature") or ""
    else:
        given = (header(headers, "X-Hub-Signature-256") or "").removeprefix("sha256=")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise InvalidDelivery(
            f"{forge} signature does not match the body",
            remediation=f"set the same secret in {forge} and OdooOps",
        )
    return forge
