"""What every route module shares: the control plane, token checks, and request parsing.

Routes are grouped by the resource they own (``reconciler.api.routes.*``); each module builds
its routes from one ``ApiContext``, so authentication, rate limits and the error shape are the
same everywhere and no route reaches past the control plane. The path and the query string are
read here too, strictly and the same way for every route: a name that cannot be a project or
an environment, a query parameter the route does not take, or a value that only looks like
one (``?wait=null``) is refused with ``invalid_request`` naming the parameter, never read as a
default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from reconciler.api.auth import Principal, TokenAuthority, authorize
from reconciler.api.httpbody import InvalidRequest, json_object
from reconciler.api.plane import ControlPlane
from reconciler.api.ratelimit import RateLimiter, StreamBudget
from reconciler.core.errors import OdooOpsError, sanitize
from reconciler.core.model import EnvKey, Project, StateConfig
from reconciler.core.planner import Plan
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
    "change_request": str,
    "jti": str,
    "token": str,
    "reason": str,
}
# The name rule of schemas/common.schema.json; the validator ignores a file named ``.yaml``,
# so an empty name would be committed rather than refused.
NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")
# A client's correlation id (a commit trailer) and a change request's id (part of a branch name).
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Path parameters that name a project or an environment, and what each names.
PATH_NAMES: Mapping[str, str] = {"project": "project", "env": "environment", "name": "project"}
# The query parameters of every write that may wait for the daemon (``wait_params``).
WAIT = frozenset({"wait", "timeout"})
_WHOLE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() also reads "٣" and " 3"


@dataclass(frozen=True)
class ApiContext:
    plane: ControlPlane
    authority: TokenAuthority
    limiter: RateLimiter
    production_allowlist: tuple[str, ...] = ()
    metrics: Metrics | None = None
    upload_dir: Path | None = None
    streams: StreamBudget = field(default_factory=StreamBudget)
    # What writes read as now (an expiry at creation, an extension): a fake one in tests.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def guarded(
        self, scope: str, per_env: bool = False, query: Collection[str] = ()
    ) -> Callable[[Handler], Handler]:
        """A route that needs a token with ``scope`` (and, ``per_env``, one that covers the
        environment of the path) and takes the query parameters ``query``, no others.

        The token is checked before anything of the request is read, so an anonymous caller
        learns nothing from the answer; the names in the path and the query string's
        parameters are checked before the scope, so a malformed request is a 400 whatever
        the token may do.
        """

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                principal = self.authority.authenticate_header(request.headers.get("authorization"))
                self.limiter.take(principal.subject)
                check_path_names(request.path_params)
                request.state.query = Query(request.query_params, query)
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


class Query:
    """The query string of one request, read strictly.

    A parameter the route does not take, or one given twice, is refused rather than ignored:
    a typo (``?wiat=true``) or a second value would otherwise change nothing, silently. Values
    are parsed by the one rule of their kind (``flag``, ``whole``, ``text``), so ``?wait=null``
    is an error on every route, not ``false`` on one and ``true`` on another.
    """

    def __init__(self, params: QueryParams, allowed: Collection[str]) -> None:
        takes = ", ".join(sorted(allowed)) or "no query parameters"
        unknown = sorted(set(params.keys()) - set(allowed))
        if unknown:
            raise InvalidRequest(
                f"unknown query parameter {', '.join(quoted(u) for u in unknown)}",
                remediation=f"this route takes {takes}; see /v1/openapi.json",
            )
        repeated = sorted(k for k in set(params.keys()) if len(params.getlist(k)) > 1)
        if repeated:
            raise InvalidRequest(
                f"query parameter {', '.join(repeated)} is given more than once",
                remediation=f"give {repeated[0]} once",
            )
        self._params = params

    def flag(self, name: str, default: bool = False) -> bool:
        """``true``/``1`` or ``false``/``0``; anything else (``yes``, ``null``, empty) fails."""
        raw = self._params.get(name)
        if raw is None:
            return default
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0"):
            return False
        raise InvalidRequest(
            f"{name} must be true, false, 1 or 0, got {quoted(raw)}",
            remediation=f"?{name}=true or ?{name}=false",
        )

    def whole(self, name: str, default: int, low: int, high: int, remediation: str = "") -> int:
        """A whole number in ``[low, high]``, written in ASCII digits."""
        raw = self._params.get(name)
        if raw is None:
            return default
        if not _WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
            raise InvalidRequest(
                f"{name} must be a whole number from {low} to {high}, got {quoted(raw)}",
                remediation=remediation or f"?{name}={default}",
            )
        return int(raw)

    def text(self, name: str, max_length: int = 200) -> str | None:
        """Printable text of 1 to ``max_length`` characters (no control characters)."""
        raw = self._params.get(name)
        if raw is None:
            return None
        if not 1 <= len(raw) <= max_length or not raw.isprintable():
            raise InvalidRequest(
                f"{name} must be printable text of 1 to {max_length} characters",
                remediation=f"leave {name} out, or send it URL-encoded",
            )
        return raw


def quoted(value: object, limit: int = 40) -> str:
    """A value from the request as it may appear in a message: quoted, shortened, and with
    every control or non-ASCII character escaped, so it cannot rewrite a terminal."""
    text = str(value)
    return json.dumps(text if len(text) <= limit else text[: limit - 3] + "...")


def check_path_names(params: Mapping[str, Any]) -> None:
    """Refuse a path whose project or environment cannot exist (``%C2%84``, ``..``, ``A``):
    it is malformed, and a route must not answer it as an empty but existing thing."""
    for param, what in PATH_NAMES.items():
        value = params.get(param)
        if value is not None and not NAME.fullmatch(str(value)):
            raise InvalidRequest(
                f"{param} {quoted(value)} is not a {what} name",
                remediation="names are lowercase letters, digits and hyphens, starting with a "
                "letter, at most 32 characters (e.g. /v1/environments/acme/qa); "
                "odooops env list",
            )


def query_of(request: Request) -> Query:
    """The query string, as the route's guard checked it."""
    query: Query = request.state.query
    return query


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def sees_files(principal: Principal, paths: Iterable[str]) -> bool:
    """Whether a token may see a change to ``paths`` (a commit, a change request).

    A token without environment globs sees everything. One with globs sees a change only when
    it touches nothing but files of environments inside its globs: a policy, project or
    platform file concerns environments beyond them.
    """
    if not principal.environments:
        return True
    keys = [changes.env_of_path(p) for p in paths]
    return bool(keys) and all(k is not None and principal.may_touch(str(k)) for k in keys)


def plan_doc(plan: Plan, principal: Principal) -> dict[str, Any]:
    """The plan as the API shows it, cut to the environments the token may see."""
    actions = [a for a in plan.actions if principal.may_touch(str(a.key))]
    retained = [note for note in plan.retained if _note_visible(note, principal)]
    return {
        "changes": bool(actions),
        "actions": [
            {
                "environment": str(a.key),
                "action": a.kind.value,
                "target": a.target,
                "reason": a.reason,
            }
            for a in actions
        ],
        "retained": retained,
        "held": {str(k): v for k, v in plan.held.items() if principal.may_touch(str(k))},
        "expired": {str(k): v for k, v in plan.expired.items() if principal.may_touch(str(k))},
    }


# The planner's notes of kept data end with the environment they belong to.
_NOTE_OF = re.compile(r" of protected (?P<key>[a-z0-9-]+/[a-z0-9-]+)$")


def _note_visible(note: str, principal: Principal) -> bool:
    """A note about one environment follows its globs; a platform-wide one needs no globs."""
    if not principal.environments:
        return True
    match = _NOTE_OF.search(note)
    return match is not None and principal.may_touch(match["key"])


def change_request_param(value: object) -> str | None:
    """The change request a write joins (``change_request``), checked like a path id."""
    if value is None:
        return None
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        raise InvalidRequest(
            "change_request must be a change request id: 1 to 64 letters, digits, '-' or '_'",
            remediation="odooops requests list --state-repo URL (its ID column), or leave it out",
        )
    return value


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
    """``?wait=`` and ``?timeout=`` (seconds, 1 to 3600) of a route that takes ``WAIT``."""
    query = query_of(request)
    wait = query.flag("wait")
    timeout = query.whole("timeout", 600, 1, 3600, remediation="?wait=true&timeout=600")
    return wait, float(timeout)


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
