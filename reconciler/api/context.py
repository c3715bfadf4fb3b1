"""What every route module shares: the control plane, token checks, and request parsing.

Routes are grouped by the resource they own (``reconciler.api.routes.*``); each module builds
its routes from one ``ApiContext``, so authentication, rate limits and the error shape are the
same everywhere and no route reaches past the control plane.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from reconciler.api.auth import Principal, TokenAuthority, authorize
from reconciler.api.httpbody import InvalidRequest, json_object
from reconciler.api.plane import ControlPlane
from reconciler.api.ratelimit import RateLimiter
from reconciler.core.errors import OdooOpsError, sanitize
from reconciler.core.model import EnvKey, Project, StateConfig
from reconciler.engine.metrics import Metrics
from reconciler.gitops import changes

Handler = Callable[[Request], Awaitable[Response]]

# A field of the wrong type is refused here: ``bool("false")`` would silently ask for a change
# request, and ``str([])`` would become a project name.
FIELD_TYPES: Mapping[str, type] = {
    "project": str,
    "name": str,
    "branch": str,
    "tier": str,
    "revision": str,
    "owner": str,
    "overrides": dict,
    "protected": bool,
    "pr": bool,
    "subject": str,
    "scopes": list,
    "environments": list,
    "ttl": str,
    "email": str,
}
# The name rule of schemas/common.schema.json; the validator ignores a file named ``.yaml``,
# so an empty name would be committed rather than refused.
NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")
# It becomes part of a branch name (``odooops/change-ID``) and a commit trailer.
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ApiContext:
    plane: ControlPlane
    authority: TokenAuthority
    limiter: RateLimiter
    production_allowlist: tuple[str, ...] = ()
    metrics: Metrics | None = None
    upload_dir: Path | None = None

    def guarded(self, scope: str, per_env: bool = False) -> Callable[[Handler], Handler]:
        """A route that needs a token with ``scope`` (and, ``per_env``, one that covers the
        environment of the path)."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                principal = self.authority.authenticate_header(request.headers.get("authorization"))
                self.limiter.take(principal.subject)
                env = env_name(request) if per_env else None
                authorize(principal, scope, env)
                request.state.principal = principal
                return await handler(request)

            endpoint.__name__ = handler.__name__
            endpoint.__doc__ = handler.__doc__
            return endpoint

        return wrap

    def state(self) -> StateConfig:
        state = self.plane.state()
        if state is None:
            raise OdooOpsError(
                "no valid state commit is loaded yet",
                code="no_state",
                remediation="odooops status (the daemon reports why)",
            )
        return state


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def env_name(request: Request) -> str:
    return f"{request.path_params['project']}/{request.path_params['env']}"


def env_key(request: Request) -> EnvKey:
    return EnvKey(str(request.path_params["project"]), str(request.path_params["env"]))


def unknown(key: EnvKey) -> OdooOpsError:
    return changes.UnknownEnvironment(
        f"environment {key} is not known", remediation="odooops env list"
    )


def unknown_project(project: str) -> OdooOpsError:
    return changes.UnknownEnvironment(
        f"project {project!r} is not declared in the state repository",
        remediation="odooops env list (or GET /v1/projects)",
    )


def wait_params(request: Request) -> tuple[bool, float]:
    wait = request.query_params.get("wait", "false").lower() in ("1", "true", "yes")
    raw = request.query_params.get("timeout", "600")
    if not raw.isdigit() or not 1 <= int(raw) <= 3600:
        raise InvalidRequest(
            "timeout must be a whole number of seconds from 1 to 3600",
            remediation="?wait=true&timeout=600",
        )
    return wait, float(raw)


def request_id_param(request: Request) -> str:
    value = str(request.path_params["id"])
    if not REQUEST_ID.fullmatch(value):
        raise InvalidRequest(
            "a change request id is 1 to 64 letters, digits, '-' or '_'",
            remediation="odooops requests list --state-repo URL",
        )
    return value


def declared(plane: ControlPlane, key: EnvKey) -> dict[str, Any] | None:
    state = plane.state()
    for spec in state.environments if state else ():
        if spec.key == key:
            return {
                "branch": spec.branch,
                "tier": spec.tier.value,
                "revision": spec.revision,
                "protected": spec.protected,
                "suspended": spec.suspended,
                "owner": spec.owner,
                "overrides": dict(spec.overrides),
            }
    return None


def project_doc(project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "repository": sanitize(project.repo_url),
        "image": project.image,
        "modules": list(project.modules),
        "addons_paths": list(project.addons_paths),
        "database_server": project.database_server,
    }


async def body(
    request: Request,
    allowed: set[str],
    required: frozenset[str] | set[str] = frozenset(),
    nullable: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """The JSON object of the request, its fields known, present and of the right type."""
    return await json_object(request, {f: FIELD_TYPES[f] for f in allowed}, required, nullable)
