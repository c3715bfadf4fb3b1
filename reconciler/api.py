"""The REST API (Starlette), versioned under ``/v1``: reads from the daemon's view, writes as
commits.

Every route but ``/v1/health`` and ``/v1/openapi.json`` needs a bearer token with the route's
scope (and, for one environment, a token whose environment globs cover it). Writes to the
desired state never touch Docker or PostgreSQL: they become a commit to the state repository
(``ControlPlane.write``), answered ``202`` with the commit and a status link, and they trigger a
reconcile pass. Every error has one shape, ``{error, message, remediation, docs}``, with a
stable code. The OpenAPI document is kept by hand next to this module (``openapi.json``) and
served as is; a test holds it to the routes. Operations on live data (backups, restores,
copies, dumps, caught mail) are not commits: they are the jobs of ``reconciler.dataapi``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from reconciler import changes, durations
from reconciler.auth import Principal, TokenAuthority, authorize, check_production_write
from reconciler.changerequests import ChangeRequests
from reconciler.dataapi import DataPlane, data_routes
from reconciler.errors import OdooOpsError, sanitize
from reconciler.gitsource import Author, CommitInfo
from reconciler.httpbody import InvalidRequest, json_object
from reconciler.jobs import JobStore
from reconciler.metrics import CONTENT_TYPE, Metrics
from reconciler.model import EnvKey, StateConfig
from reconciler.planner import Plan
from reconciler.statewriter import WriteResult
from reconciler.status import Condition, DaemonStatus, EnvironmentStatus
from webhooks.receiver import webhook_route

HTTP_STATUS = {
    "invalid_request": 400,
    "unauthenticated": 401,
    "token_expired": 401,
    "forbidden": 403,
    "unknown_environment": 404,
    "not_found": 404,
    "environment_exists": 409,
    "push_conflict": 409,
    "conflict": 409,
    "invalid_state": 422,
    "rate_limited": 429,
    "no_state": 503,
    "docker_unreachable": 503,
    "database_unreachable": 503,
    "fetch_failed": 503,
    "push_failed": 503,
    "push_rejected": 409,
    "invalid_path": 400,
    "invalid_webhook": 401,
    "unknown_change_request": 404,
    "invalid_token_request": 400,
    "wait_timeout": 504,
    "environment_not_found": 404,
    "environment_held": 409,
    "backup_not_found": 404,
    "backup_not_good": 409,
    "mail_not_found": 404,
    "confirm_required": 409,
    "copy_onto_protected": 409,
    "operation_busy": 409,
    "copy_source_not_ready": 409,
    "backup_key_missing": 503,
    "backup_key_invalid": 503,
    "backup_key_mismatch": 409,
    "backup_storage_unreachable": 503,
    "backup_corrupt": 422,
    "odoo_dump_invalid": 422,
    "filestore_invalid": 422,
    "not_an_odoo_database": 422,
    "pg_client_missing": 503,
    "export_failed": 503,
    "copy_failed": 503,
    "restore_failed": 422,
    "mask_failed": 422,
    "neutralize_failed": 503,
}


class Terminal(Protocol):
    """An interactive process with a TTY (``ShellSession`` of the Docker driver)."""

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def resize(self, columns: int, rows: int) -> None: ...

    def close(self) -> None: ...


class ControlPlane(Protocol):
    """What the API needs of the daemon (``reconciler.controlplane.DaemonControlPlane``)."""

    def statuses(self) -> Mapping[str, EnvironmentStatus]: ...

    def events(self, key: EnvKey) -> list[dict[str, Any]]: ...

    def daemon_status(self) -> DaemonStatus: ...

    def state(self) -> StateConfig | None: ...

    def plan(self) -> Plan: ...

    def write(
        self,
        op: changes.Operation | changes.FileOperation,
        author: Author,
        request_id: str,
        pr: bool,
    ) -> WriteResult: ...

    def trigger(self) -> None: ...

    def audit(self, limit: int) -> list[CommitInfo]: ...

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> Iterator[str]: ...

    def change_requests(self) -> ChangeRequests: ...

    def shell(self, key: EnvKey, kind: str) -> Terminal: ...

    def record_session(self, entry: Mapping[str, str]) -> None: ...

    def sessions(self, limit: int) -> list[dict[str, str]]: ...

    def data(self) -> DataPlane: ...

    def jobs(self) -> JobStore: ...


class RateLimited(OdooOpsError):
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many requests; retry in {retry_after} s",
            remediation=f"wait {retry_after} s, then run the command again",
        )
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per subject: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(
        self, rate: float = 10.0, burst: int = 40, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, subject: str) -> None:
        now = self._clock()
        bucket = self._buckets.setdefault(subject, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            raise RateLimited(max(1, int((1 - bucket.tokens) / self.rate) + 1))
        bucket.tokens -= 1


Handler = Callable[[Request], Awaitable[Response]]
CREATE_FIELDS = {"project", "name", "branch", "tier", "revision", "owner", "overrides", "pr"}
PATCH_FIELDS = {"branch", "tier", "revision", "owner", "overrides", "protected", "pr"}
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
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
# The name rule of schemas/common.schema.json; the validator ignores a file named ``.yaml``,
# so an empty name would be committed rather than refused.
_NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")
# It becomes part of a branch name (``odooops/change-ID``) and a commit trailer.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def create_app(
    plane: ControlPlane,
    authority: TokenAuthority,
    *,
    production_allowlist: tuple[str, ...] = (),
    limiter: RateLimiter | None = None,
    metrics: Metrics | None = None,
    webhook_secret: Callable[[], str | None] = lambda: None,
    upload_dir: Path | None = None,
) -> Starlette:
    """The app. Webhooks (``/v1/webhooks/{forge}``) authenticate by signature, not by token;
    without a ``webhook_secret`` they answer 404."""
    limiter = limiter or RateLimiter()

    def count_webhook(forge: str, event: str, result: str) -> None:
        if metrics is not None:
            metrics.webhooks.labels(forge, event, result).inc()

    webhooks = webhook_route(webhook_secret, lambda event: plane.trigger(), count_webhook)
    openapi = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))

    def guarded(scope: str, per_env: bool = False) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                principal = authority.authenticate_header(request.headers.get("authorization"))
                limiter.take(principal.subject)
                env = _env_name(request) if per_env else None
                authorize(principal, scope, env)
                request.state.principal = principal
                return await handler(request)

            endpoint.__name__ = handler.__name__
            endpoint.__doc__ = handler.__doc__
            return endpoint

        return wrap

    async def health(request: Request) -> Response:
        """Liveness, public: the process answers."""
        return JSONResponse({"status": "pass"})

    async def get_openapi(request: Request) -> Response:
        """This API's OpenAPI 3.1 document, public: clients and fuzzers discover the routes here."""
        return JSONResponse(openapi)

    @guarded("env:read")
    async def ready(request: Request) -> Response:
        """Readiness: a valid state commit is loaded and the last pass ran."""
        daemon = plane.daemon_status()
        ok = plane.state() is not None
        return JSONResponse(
            {
                "ready": ok,
                "state_commit": daemon.state_commit,
                "last_poll": daemon.last_poll,
                "state_error": daemon.state_error,
            },
            status_code=200 if ok else 503,
        )

    @guarded("env:read")
    async def list_environments(request: Request) -> Response:
        """Every environment the daemon knows, with its status."""
        principal: Principal = request.state.principal
        items = [s.to_dict() for k, s in plane.statuses().items() if principal.may_touch(k)]
        return JSONResponse({"items": items})

    @guarded("env:read", per_env=True)
    async def show_environment(request: Request) -> Response:
        """One environment: its declaration and its status."""
        key = _key(request)
        status = plane.statuses().get(str(key))
        spec = _declared(plane, key)
        if status is None and spec is None:
            raise _unknown(key)
        return JSONResponse(
            {
                "environment": str(key),
                "declared": spec,
                "status": status.to_dict() if status else None,
            }
        )

    @guarded("env:read", per_env=True)
    async def environment_status(request: Request) -> Response:
        """Sync, health and conditions of one environment."""
        key = _key(request)
        status = plane.statuses().get(str(key))
        if status is None:
            raise _unknown(key)
        return JSONResponse(status.to_dict())

    @guarded("env:write")
    async def create_environment(request: Request) -> Response:
        """Declare an environment: a commit adding its file."""
        body = await _body(request, CREATE_FIELDS, required={"name", "branch"})
        state = _state(plane)
        project = body.get("project")
        name = f"{project}/{body['name']}" if project is not None else body["name"]
        key = changes.resolve_name(name, sorted(state.projects))
        if project is not None and key.project != project:
            raise _unknown_project(project)
        if not (_NAME.fullmatch(key.project) and _NAME.fullmatch(key.env)):
            raise InvalidRequest(
                f"{key} is not a valid environment name",
                remediation="name it PROJECT/ENV with lowercase letters, digits and hyphens, "
                "starting with a letter (at most 32 characters each), e.g. acme/qa",
            )
        authorize(request.state.principal, "env:write", str(key))
        fields: dict[str, Any] = {
            k: body[k] for k in ("branch", "tier", "revision", "owner", "overrides") if k in body
        }
        return await _write(request, changes.Operation("create", key, fields), body)

    @guarded("env:write", per_env=True)
    async def update_environment(request: Request) -> Response:
        """Change an environment's declaration (a JSON merge patch of its file)."""
        body = await _body(request, PATCH_FIELDS, nullable=PATCH_FIELDS - {"pr"})
        fields = {k: v for k, v in body.items() if k != "pr"}
        return await _write(request, changes.Operation("update", _key(request), fields), body)

    @guarded("env:write", per_env=True)
    async def destroy_environment(request: Request) -> Response:
        """Remove an environment's file; the daemon prunes it (protected data is kept)."""
        return await _write(request, changes.Operation("destroy", _key(request)), {})

    def lifecycle(verb: str) -> Handler:
        @guarded("env:write", per_env=True)
        async def handler(request: Request) -> Response:
            body = await _body(request, {"pr"})
            return await _write(request, changes.Operation(verb, _key(request)), body)

        handler.__name__ = f"{verb}_environment"
        handler.__doc__ = f"{verb.capitalize()} an environment (a commit)."
        return handler

    @guarded("deploy", per_env=True)
    async def deploy_environment(request: Request) -> Response:
        """Point an environment at a branch (tracking its head) or a pinned commit."""
        body = await _body(request, {"branch", "revision", "pr"})
        if "branch" not in body and "revision" not in body:
            raise InvalidRequest(
                "deploy needs a branch or a revision",
                remediation="odooops deploy ENV --branch release/v2",
            )
        fields: dict[str, Any] = {k: body[k] for k in ("branch", "revision") if k in body}
        fields.setdefault("revision", "track")
        return await _write(request, changes.Operation("deploy", _key(request), fields), body)

    @guarded("env:read")
    async def get_plan(request: Request) -> Response:
        """What the next pass would do (exact, side-effect free)."""
        result = await run_in_threadpool(plane.plan)
        return JSONResponse(
            {
                "changes": result.has_changes,
                "actions": [
                    {
                        "environment": str(a.key),
                        "action": a.kind.value,
                        "target": a.target,
                        "reason": a.reason,
                    }
                    for a in result.actions
                ],
                "retained": list(result.retained),
                "held": {str(k): v for k, v in result.held.items()},
            }
        )

    @guarded("deploy")
    async def reconcile(request: Request) -> Response:
        """Run a pass now instead of waiting for the poll."""
        plane.trigger()
        return JSONResponse({"triggered": True}, status_code=202)

    @guarded("env:read")
    async def get_policies(request: Request) -> Response:
        """Branch rules and protection in force (from the last valid state commit)."""
        policies = _state(plane).policies
        return JSONResponse(
            {
                "branches": [
                    {"match": r.match, "tier": r.tier.value, "auto_create": r.auto_create}
                    for r in policies.rules
                ],
                "protected_tiers": sorted(t.value for t in policies.protected_tiers),
                "prune": {"allow_empty": policies.allow_empty},
            }
        )

    @guarded("env:read")
    async def list_projects(request: Request) -> Response:
        """Projects and their application repositories (credentials never shown)."""
        return JSONResponse({"items": [_project(p) for p in _state(plane).projects.values()]})

    @guarded("admin")
    async def update_policies(request: Request) -> Response:
        """Replace policies.yaml (validated whole; a change request if it touches production)."""
        op = changes.FileOperation(
            "policies.yaml", await _document(request), "chore(policies): update policies"
        )
        return await _write(request, op, {"pr": request.query_params.get("pr") == "true"})

    @guarded("env:read")
    async def show_project(request: Request) -> Response:
        """One project and its application repository (credentials never shown)."""
        name = str(request.path_params["name"])
        project = _state(plane).projects.get(name)
        if project is None:
            raise _unknown_project(name)
        return JSONResponse(_project(project))

    @guarded("admin")
    async def update_project(request: Request) -> Response:
        """Create or replace projects/<name>.yaml (validated whole; secrets only by reference)."""
        name = str(request.path_params["name"])
        if not _NAME.fullmatch(name):
            raise InvalidRequest(
                f"{name!r} is not a valid project name",
                remediation="lowercase letters, digits and hyphens, e.g. acme",
            )
        doc = await _document(request)
        op = changes.FileOperation(f"projects/{name}.yaml", doc, f"chore(project): update {name}")
        return await _write(request, op, {"pr": request.query_params.get("pr") == "true"})

    @guarded("admin")
    async def create_token(request: Request) -> Response:
        """Mint a token for someone (admin): the same as odooops token create."""
        body = await _body(
            request,
            {"subject", "scopes", "environments", "ttl", "name", "email"},
            required={"subject", "scopes"},
        )
        scopes, envs = body["scopes"], body.get("environments", [])
        if not (isinstance(scopes, list) and all(isinstance(x, str) for x in scopes)) or not (
            isinstance(envs, list) and all(isinstance(x, str) for x in envs)
        ):
            raise InvalidRequest(
                "scopes and environments are lists of strings",
                remediation='{"subject": "ann", "scopes": ["env:read"]}',
            )
        try:
            ttl = durations.parse_duration(body.get("ttl", "12h"))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"ttl: {exc}", remediation='"ttl": "12h"') from None
        token = authority.mint(
            body["subject"],
            scopes,
            environments=envs,
            ttl=ttl,
            name=body.get("name"),
            email=body.get("email"),
        )
        return JSONResponse(
            {"token": token, "subject": body["subject"], "scopes": scopes}, status_code=201
        )

    async def _write(
        request: Request, op: changes.Operation | changes.FileOperation, body: Mapping[str, Any]
    ) -> Response:
        principal: Principal = request.state.principal
        wait, timeout = _wait_params(request)
        state = _state(plane)
        if isinstance(op, changes.FileOperation) or any(
            s.key == op.key and s.protected for s in state.environments
        ):
            client = request.client.host if request.client else ""
            check_production_write(principal, client, production_allowlist)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        if not _REQUEST_ID.fullmatch(request_id):
            raise InvalidRequest(
                "X-Request-Id must be 1 to 64 letters, digits, '-' or '_'",
                remediation="send a UUID or leave the header out (one is generated)",
            )
        author = Author(principal.name, principal.email)
        result = await run_in_threadpool(
            plane.write, op, author, request_id, bool(body.get("pr", False))
        )
        if not result.change_request:
            plane.trigger()
        doc: dict[str, Any] = {
            "commit": result.commit,
            "branch": result.branch,
            "change_request": result.change_request,
            "request_id": result.request_id,
        }
        if result.url:
            doc["change_request_url"] = result.url
        if isinstance(op, changes.FileOperation):
            doc["path"] = op.path
        else:
            doc["environment"] = str(op.key)
            doc["status"] = f"/v1/environments/{op.key.project}/{op.key.env}/status"
            if wait and not result.change_request:
                return await _converged(op, result.commit, doc, timeout)
        return JSONResponse(doc, status_code=202)

    async def _converged(
        op: changes.Operation, commit: str, doc: dict[str, Any], timeout: float
    ) -> Response:
        """``?wait=true``: answer once the daemon has applied ``commit`` to the environment.

        200 with ``converged`` true (Ready on that commit, or gone after a destroy) or false
        (it failed: ``environment_status`` says why); 504 when the time is up. A newer commit
        to the same environment also ends the wait: the environment moved on.
        """
        deadline = time.monotonic() + timeout
        key = str(op.key)
        while time.monotonic() < deadline:
            status = plane.statuses().get(key)
            if status is None and op.verb == "destroy":
                return JSONResponse({**doc, "converged": True, "environment_status": None})
            ready = _ready(status) if status is not None else None
            decided = ready is not None and (ready.status or ready.reason != "Pending")
            if (
                status is not None
                and ready is not None
                and decided
                and op.verb != "destroy"
                and status.state_commit == commit
            ):
                return JSONResponse(
                    {**doc, "converged": ready.status, "environment_status": status.to_dict()}
                )
            await asyncio.sleep(0.5)
        raise OdooOpsError(
            f"{key} did not converge on {commit[:12]} within {int(timeout)} s; the commit "
            "stands and the daemon keeps working on it",
            code="wait_timeout",
            remediation=f"odooops status {key}",
        )

    @guarded("env:read")
    async def get_metrics(request: Request) -> Response:
        """Prometheus text format; scrape with a bearer token (env:read)."""
        if metrics is None:
            raise OdooOpsError(
                "metrics are not collected by this process",
                code="not_found",
                remediation="scrape the daemon's API",
            )
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @guarded("env:read", per_env=True)
    async def environment_events(request: Request) -> Response:
        """What happened to the environment: condition and health changes, newest first."""
        key = _key(request)
        if str(key) not in plane.statuses():
            raise _unknown(key)
        return JSONResponse({"items": plane.events(key)})

    @guarded("env:read", per_env=True)
    async def environment_logs(request: Request) -> Response:
        """Logs of every container of the environment, streamed; ``follow`` keeps it open."""
        key = _key(request)
        if str(key) not in plane.statuses() and _declared(plane, key) is None:
            raise _unknown(key)
        query = request.query_params
        follow = query.get("follow", "false").lower() in ("1", "true", "yes")
        tail_raw = query.get("tail", "200")
        if not tail_raw.isdigit() or not 1 <= int(tail_raw) <= 10_000:
            raise InvalidRequest(
                "tail must be a whole number from 1 to 10000",
                remediation="odooops logs ENV --tail 200",
            )
        since: int | None = None
        if "since" in query:
            try:
                since = int(time.time() - durations.parse_duration(query["since"]).total_seconds())
            except ValueError as exc:
                raise InvalidRequest(
                    f"since: {exc}", remediation="odooops logs ENV --since 10m"
                ) from None
        lines = plane.logs(key, follow, since, int(tail_raw))
        return StreamingResponse(
            iterate_in_threadpool(line + "\n" for line in lines),
            media_type="text/plain; charset=utf-8",
        )

    @guarded("env:read")
    async def get_audit(request: Request) -> Response:
        """Who changed what: the state repository's history (every state is a commit)."""
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise InvalidRequest(
                "limit must be a whole number from 1 to 500", remediation="GET /v1/audit?limit=50"
            )
        items = await run_in_threadpool(plane.audit, int(raw))
        return JSONResponse({"items": [c.audit() for c in items]})

    @guarded("env:read")
    async def list_requests(request: Request) -> Response:
        """Change requests of protected writes, open, merged and closed."""
        items = await run_in_threadpool(plane.change_requests().list)
        return JSONResponse({"items": [c.to_dict() for c in items]})

    @guarded("env:read")
    async def show_request(request: Request) -> Response:
        """One change request."""
        cr = await run_in_threadpool(plane.change_requests().get, _request_id(request))
        return JSONResponse(cr.to_dict())

    def review(action: str) -> Handler:
        @guarded("admin")
        async def handler(request: Request) -> Response:
            principal: Principal = request.state.principal
            who = Author(principal.name, principal.email)
            crs = plane.change_requests()
            request_id = _request_id(request)
            if action == "merge":
                commit = await run_in_threadpool(crs.merge, request_id, who)
                plane.trigger()
                return JSONResponse(
                    {"id": request_id, "state": "merged", "commit": commit}, status_code=202
                )
            call = crs.approve if action == "approve" else crs.close
            cr = await run_in_threadpool(call, request_id, who)
            return JSONResponse(cr.to_dict())

        handler.__name__ = f"{action}_request"
        handler.__doc__ = f"{action.capitalize()} a change request (admin; a commit)."
        return handler

    @guarded("env:read")
    async def list_sessions(request: Request) -> Response:
        """Shell sessions, newest first: who, which environment, what, when."""
        return JSONResponse({"items": await run_in_threadpool(plane.sessions, 200)})

    async def shell(websocket: WebSocket) -> None:
        """An interactive shell (bash, odoo shell or psql) through ``docker exec`` with a TTY.

        Binary frames carry the terminal's bytes both ways; a text frame
        ``{"resize": [columns, rows]}`` resizes it. Refusals close with 4401/4403/4404 after a
        text frame holding the structured error. Every session is recorded (who, where, what,
        start, end).
        """
        key = EnvKey(str(websocket.path_params["project"]), str(websocket.path_params["env"]))
        kind = websocket.query_params.get("kind", "odoo")
        await websocket.accept()
        try:
            if kind not in ("odoo", "psql", "bash"):
                raise InvalidRequest(
                    f"unknown shell {kind!r}", remediation="odooops shell ENV --kind odoo|psql|bash"
                )
            principal = authority.authenticate_header(websocket.headers.get("authorization"))
            limiter.take(principal.subject)
            authorize(principal, "shell", str(key))
            session = await run_in_threadpool(plane.shell, key, kind)
        except OdooOpsError as exc:
            await websocket.send_text(json.dumps(exc.to_dict()))
            status = HTTP_STATUS.get(exc.code, 500)
            await websocket.close(code=4000 + status if status < 500 else 1011)
            return
        started = datetime.now(UTC).isoformat(timespec="seconds")
        entry = {
            "subject": principal.subject,
            "email": principal.email,
            "environment": str(key),
            "kind": kind,
            "started": started,
        }
        await run_in_threadpool(plane.record_session, {**entry, "event": "start"})

        async def pump_out() -> None:
            while chunk := await run_in_threadpool(session.read):
                await websocket.send_bytes(chunk)
            await websocket.close()

        output = asyncio.create_task(pump_out())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes"):
                    await run_in_threadpool(session.write, message["bytes"])
                elif message.get("text"):
                    _control(session, message["text"])
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            # Synchronous on purpose: a cancelled task must still record the end.
            session.close()
            output.cancel()
            plane.record_session(
                {**entry, "event": "end", "ended": datetime.now(UTC).isoformat(timespec="seconds")}
            )

    env = "/v1/environments/{project}/{env}"
    routes: list[BaseRoute] = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/openapi.json", get_openapi, methods=["GET"]),
        Route("/v1/ready", ready, methods=["GET"]),
        Route("/v1/environments", list_environments, methods=["GET"]),
        Route("/v1/environments", create_environment, methods=["POST"]),
        Route(env, show_environment, methods=["GET"]),
        Route(env, update_environment, methods=["PATCH"]),
        Route(env, destroy_environment, methods=["DELETE"]),
        Route(f"{env}/status", environment_status, methods=["GET"]),
        Route(f"{env}/suspend", lifecycle("suspend"), methods=["POST"]),
        Route(f"{env}/resume", lifecycle("resume"), methods=["POST"]),
        Route(f"{env}/deploy", deploy_environment, methods=["POST"]),
        Route(f"{env}/logs", environment_logs, methods=["GET"]),
        Route(f"{env}/events", environment_events, methods=["GET"]),
        Route("/v1/plan", get_plan, methods=["GET"]),
        Route("/v1/reconcile", reconcile, methods=["POST"]),
        Route("/v1/policies", get_policies, methods=["GET"]),
        Route("/v1/projects", list_projects, methods=["GET"]),
        Route("/v1/policies", update_policies, methods=["PUT"]),
        Route("/v1/projects/{name}", show_project, methods=["GET"]),
        Route("/v1/projects/{name}", update_project, methods=["PUT"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
        Route("/v1/audit", get_audit, methods=["GET"]),
        Route("/v1/requests", list_requests, methods=["GET"]),
        Route("/v1/requests/{id}", show_request, methods=["GET"]),
        Route("/v1/requests/{id}/approve", review("approve"), methods=["POST"]),
        Route("/v1/requests/{id}/merge", review("merge"), methods=["POST"]),
        Route("/v1/requests/{id}/close", review("close"), methods=["POST"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route("/v1/sessions", list_sessions, methods=["GET"]),
        WebSocketRoute(f"{env}/shell", shell),
        *data_routes(
            env, guarded, plane.data, plane.jobs, plane.state, production_allowlist, upload_dir
        ),
        webhooks,
    ]
    middleware = [Middleware(_Timing, metrics=metrics)] if metrics is not None else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            OdooOpsError: _error_response,  # type: ignore[dict-item]
            404: _not_found,
            405: _not_allowed,
        },
    )


async def _error_response(request: Request, exc: OdooOpsError) -> Response:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.code in ("unauthenticated", "token_expired"):
        headers["WWW-Authenticate"] = 'Bearer realm="odooops"'
    return JSONResponse(exc.to_dict(), status_code=HTTP_STATUS.get(exc.code, 500), headers=headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    return await _error_response(
        request,
        OdooOpsError(
            f"no route {request.url.path}",
            code="not_found",
            remediation="see the routes in /v1/openapi.json",
        ),
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    error = OdooOpsError(
        f"{request.method} is not allowed on {request.url.path}",
        code="method_not_allowed",
        remediation="see /v1/openapi.json",
    )
    return JSONResponse(error.to_dict(), status_code=405)


def _env_name(request: Request) -> str:
    return f"{request.path_params['project']}/{request.path_params['env']}"


def _key(request: Request) -> EnvKey:
    return EnvKey(str(request.path_params["project"]), str(request.path_params["env"]))


def _unknown(key: EnvKey) -> OdooOpsError:
    return changes.UnknownEnvironment(
        f"environment {key} is not known", remediation="odooops env list"
    )


class _Timing:
    """API latency per operation (the endpoint's name: bounded label values) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = scope.get("endpoint")
            name = getattr(endpoint, "__name__", "unmatched")
            self.metrics.api_seconds.labels(scope["method"], name, str(status[0])).observe(
                time.perf_counter() - started
            )


async def _document(request: Request) -> dict[str, Any]:
    """A whole file's content as a JSON object; the state validator judges its keys."""
    try:
        doc = json.loads(await request.body() or b"null")
    except (ValueError, RecursionError):
        raise InvalidRequest(
            "the request body is not JSON", remediation="send a JSON object"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "the request body must be a JSON object",
            remediation="send the file's content as a JSON object",
        )
    return doc


def _control(session: Terminal, text: str) -> None:
    """A control frame from the terminal: only ``{"resize": [columns, rows]}`` exists."""
    try:
        doc = json.loads(text)
        columns, rows = doc["resize"]
        session.resize(int(columns), int(rows))
    except (ValueError, KeyError, TypeError):
        pass


def _ready(status: EnvironmentStatus) -> Condition | None:
    return next((c for c in status.conditions if c.type == "Ready"), None)


def _wait_params(request: Request) -> tuple[bool, float]:
    wait = request.query_params.get("wait", "false").lower() in ("1", "true", "yes")
    raw = request.query_params.get("timeout", "600")
    if not raw.isdigit() or not 1 <= int(raw) <= 3600:
        raise InvalidRequest(
            "timeout must be a whole number of seconds from 1 to 3600",
            remediation="?wait=true&timeout=600",
        )
    return wait, float(raw)


def _request_id(request: Request) -> str:
    value = str(request.path_params["id"])
    if not _REQUEST_ID.fullmatch(value):
        raise InvalidRequest(
            "a change request id is 1 to 64 letters, digits, '-' or '_'",
            remediation="odooops requests list",
        )
    return value


def _unknown_project(project: str) -> OdooOpsError:
    return changes.UnknownEnvironment(
        f"project {project!r} is not declared in the state repository",
        remediation="odooops env list (or GET /v1/projects)",
    )


def _state(plane: ControlPlane) -> StateConfig:
    state = plane.state()
    if state is None:
        raise OdooOpsError(
            "no valid state commit is loaded yet",
            code="no_state",
            remediation="odooops status (the daemon reports why)",
        )
    return state


def _declared(plane: ControlPlane, key: EnvKey) -> dict[str, Any] | None:
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


def _project(project: Any) -> dict[str, Any]:
    return {
        "name": project.name,
        "repository": sanitize(project.repo_url),
        "image": project.image,
        "modules": list(project.modules),
        "addons_paths": list(project.addons_paths),
        "database_server": project.database_server,
    }


async def _body(
    request: Request,
    allowed: set[str],
    required: frozenset[str] | set[str] = frozenset(),
    nullable: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """The JSON object of the request, its fields known, present and of the right type."""
    return await json_object(request, {f: FIELD_TYPES[f] for f in allowed}, required, nullable)
