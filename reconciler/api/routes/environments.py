"""Environments: declare, change, remove, suspend, deploy (commits); status, events, logs;
the Odoo administrator's login (shown and rotated, each time recorded in the audit log).

The administrator's password is a credential to the environment's whole Odoo: it needs the
``shell`` scope (whose ``psql`` and ``odoo shell`` reach as much) and, on a protected
environment, a client in the production allowlist. Every view and rotation is appended to
the token audit log (``reconciler.api.revocations``, beside the tokens' minting and
revocation, so what a leaked token did is read in one place) *before* the password is read
or changed: when nothing can record it, nothing is shown. The password never reaches a log.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import Forbidden, Principal, authorize, check_production_write
from reconciler.api.context import (
    NAME,
    WAIT,
    ApiContext,
    Handler,
    body,
    declared,
    env_key,
    principal_of,
    query_of,
    quoted,
    unknown,
    unknown_project,
)
from reconciler.api.httpbody import InvalidRequest, json_object
from reconciler.api.writes import commit_write
from reconciler.core import durations, expiry
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.core.validation import is_branch_name
from reconciler.gitops import changes

# ``pr`` and ``change_request`` say where the commit goes, not what it changes.
ROUTING_FIELDS = {"pr", "change_request"}
CREATE_FIELDS = {"project", "name", "branch", "tier", "revision", "owner", "overrides"} | (
    ROUTING_FIELDS
)
PATCH_FIELDS = {"branch", "tier", "revision", "owner", "overrides", "protected"} | ROUTING_FIELDS
# A password in an answer is kept by no cache between the daemon and the client.
NO_STORE = {"Cache-Control": "no-store"}


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    plane, guarded = ctx.plane, ctx.guarded

    @guarded("env:read")
    async def list_environments(request: Request) -> Response:
        """Every environment the daemon knows, with its status."""
        principal = principal_of(request)
        items = [s.to_dict() for k, s in plane.statuses().items() if principal.may_touch(k)]
        return JSONResponse({"items": items})

    @guarded("env:read", per_env=True)
    async def show_environment(request: Request) -> Response:
        """One environment: its declaration and its status."""
        key = env_key(request)
        status = plane.statuses().get(str(key))
        spec = declared(plane, key)
        if status is None and spec is None:
            raise unknown(key)
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
        key = env_key(request)
        status = plane.statuses().get(str(key))
        if status is None:
            raise unknown(key)
        return JSONResponse(status.to_dict())

    @guarded("env:write", query=WAIT)
    async def create_environment(request: Request) -> Response:
        """Declare an environment: a commit adding its file (with its ``expires`` when its
        tier has a ttl and it is not protected)."""
        fields_in = await body(request, CREATE_FIELDS, required={"name"})
        state = ctx.state()
        project = fields_in.get("project")
        name = f"{project}/{fields_in['name']}" if project is not None else fields_in["name"]
        if "branch" not in fields_in:  # the branch of the same name
            fields_in = {**fields_in, "branch": changes.default_branch(name, state.projects)}
        key = changes.resolve_name(name, sorted(state.projects))
        if project is not None and key.project != project:
            raise unknown_project(project)
        if not (NAME.fullmatch(key.project) and NAME.fullmatch(key.env)):
            raise InvalidRequest(
                f"{key} is not a valid environment name",
                remediation="name it PROJECT/ENV with lowercase letters, digits and hyphens, "
                "starting with a letter (at most 32 characters each), e.g. acme/qa",
            )
        principal = principal_of(request)
        authorize(principal, "env:write", str(key))
        check_branch(fields_in)
        fields: dict[str, Any] = {
            k: fields_in[k]
            for k in ("branch", "tier", "revision", "owner", "overrides")
            if k in fields_in
        }
        fields["owner"] = owner_of(principal, fields.get("owner"))
        expires = expiry.for_new_file(key, fields, state, ctx.clock())
        if expires is not None:
            fields["expires"] = durations.format_instant(expires)
        op = changes.Operation("create", key, fields, quota=True)
        return await commit_write(ctx, request, op, fields_in)

    @guarded("env:write", per_env=True, query=WAIT)
    async def update_environment(request: Request) -> Response:
        """Change an environment's declaration (a JSON merge patch of its file)."""
        fields_in = await body(request, PATCH_FIELDS, nullable=PATCH_FIELDS - ROUTING_FIELDS)
        check_branch(fields_in)
        fields = {k: v for k, v in fields_in.items() if k not in ROUTING_FIELDS}
        op = changes.Operation("update", env_key(request), fields)
        return await commit_write(ctx, request, op, fields_in)

    @guarded("env:write", per_env=True, query=WAIT | {"change_request"})
    async def destroy_environment(request: Request) -> Response:
        """Remove an environment's file; the daemon prunes it (protected data is kept)."""
        routing = {"change_request": query_of(request).text("change_request", 64)}
        op = changes.Operation("destroy", env_key(request))
        return await commit_write(ctx, request, op, routing)

    def lifecycle(verb: str) -> Handler:
        @guarded("env:write", per_env=True, query=WAIT)
        async def handler(request: Request) -> Response:
            fields_in = await body(request, ROUTING_FIELDS)
            op = changes.Operation(verb, env_key(request))
            return await commit_write(ctx, request, op, fields_in)

        handler.__name__ = f"{verb}_environment"
        handler.__doc__ = f"{verb.capitalize()} an environment (a commit)."
        return handler

    @guarded("deploy", per_env=True, query=WAIT)
    async def deploy_environment(request: Request) -> Response:
        """Point an environment at a branch (tracking its head) or a pinned commit."""
        fields_in = await body(request, {"branch", "revision"} | ROUTING_FIELDS)
        if "branch" not in fields_in and "revision" not in fields_in:
            raise InvalidRequest(
                "deploy needs a branch or a revision",
                remediation="odooops deploy ENV --branch release/v2",
            )
        check_branch(fields_in)
        fields: dict[str, Any] = {k: fields_in[k] for k in ("branch", "revision") if k in fields_in}
        fields.setdefault("revision", "track")
        op = changes.Operation("deploy", env_key(request), fields)
        return await commit_write(ctx, request, op, fields_in)

    @guarded("env:read", per_env=True)
    async def environment_events(request: Request) -> Response:
        """What happened to the environment: condition and health changes, newest first."""
        key = env_key(request)
        if str(key) not in plane.statuses():
            raise unknown(key)
        return JSONResponse({"items": plane.events(key)})

    @guarded("env:read", per_env=True, query={"follow", "tail", "since"})
    async def environment_logs(request: Request) -> Response:
        """Logs of every container of the environment, streamed; ``follow`` keeps it open."""
        query = query_of(request)
        follow = query.flag("follow")
        tail = query.whole("tail", 200, 1, 10_000, remediation="odooops logs ENV --tail 200")
        since_raw = query.text("since", max_length=20)
        since: int | None = None
        if since_raw is not None:
            try:
                since = int(time.time() - durations.parse_duration(since_raw).total_seconds())
            except ValueError:
                raise InvalidRequest(
                    f"since must be a duration such as 10m, 2h or 7d, got {quoted(since_raw)}",
                    remediation="odooops logs ENV --since 10m",
                ) from None
        key = env_key(request)
        if str(key) not in plane.statuses() and declared(plane, key) is None:
            raise unknown(key)
        # A followed stream may stay open for hours: each subject has a few at most, and one
        # ends (its Docker connections closed) when its client goes away.
        slot = ctx.streams.open(principal_of(request).subject) if follow else None

        async def body_lines() -> AsyncIterator[str]:
            try:
                async for line in plane.logs(key, follow, since, tail):
                    yield line + "\n"
            finally:
                if slot is not None:
                    slot.close()

        return StreamingResponse(body_lines(), media_type="text/plain; charset=utf-8")

    async def credential_access(request: Request, event: str) -> EnvKey:
        """The checks before a credential is touched, then the audit record of the access."""
        key = env_key(request)
        if any(s.key == key and s.protected for s in ctx.state().environments):
            client = request.client.host if request.client else ""
            check_production_write(principal_of(request), client, ctx.production_allowlist)
        try:
            await run_in_threadpool(plane.data().environment, key)
        except OdooOpsError as exc:
            if exc.code == "environment_not_found":
                raise unknown(key) from None
            raise
        await run_in_threadpool(audit, request, event, key)
        return key

    def audit(request: Request, event: str, key: EnvKey, **extra: str) -> None:
        principal = principal_of(request)
        log = ctx.authority.revocations
        if log is None:
            raise AuditUnavailable(
                "this API keeps no audit log, so it shows and changes no credential",
                remediation="ask the daemon's own API, which records each access in "
                "DATA_DIR/token-audit.jsonl (odooops daemon --state-repo URL)",
            )
        entry = {
            "event": event,
            "environment": str(key),
            "subject": principal.subject,
            "jti": principal.token_id,
            "client": request.client.host if request.client else "",
            **extra,
        }
        try:
            log.record(entry)
        except OSError as exc:
            raise AuditUnavailable(
                f"the audit log cannot be written ({exc.strerror or type(exc).__name__}): no "
                "credential is shown or changed",
                remediation="odooops status (then check the daemon's data directory: free "
                "space, permissions of token-audit.jsonl)",
            ) from None

    @guarded("shell", per_env=True)
    async def environment_credentials(request: Request) -> Response:
        """The Odoo administrator's login and password, recorded in the audit log first."""
        key = await credential_access(request, "credentials_viewed")
        doc = await run_in_threadpool(plane.data().admin_credentials, key)
        return JSONResponse(doc, headers=NO_STORE)

    @guarded("shell", per_env=True)
    async def rotate_credentials(request: Request) -> Response:
        """A new administrator password, into the secret store and the database."""
        await json_object(request, {})
        key = await credential_access(request, "credentials_rotated")
        try:
            doc = await run_in_threadpool(plane.data().rotate_admin_password, key)
        except OdooOpsError as exc:
            with contextlib.suppress(OdooOpsError):  # the client sees the rotation's own error
                await run_in_threadpool(
                    audit, request, "credentials_rotate_failed", key, error=exc.code
                )
            raise
        return JSONResponse(doc, headers=NO_STORE)

    return [
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
        Route(f"{env}/credentials", environment_credentials, methods=["GET"]),
        Route(f"{env}/credentials/rotate", rotate_credentials, methods=["POST"]),
    ]


class AuditUnavailable(OdooOpsError):
    """503: no audit log can record the access, so no credential is shown or changed."""

    code = "audit_unavailable"


def check_branch(fields: dict[str, Any]) -> None:
    """Refuse, before anything is committed, a branch name git would refuse or one that could
    mislead whoever reads it (control or invisible characters): the state validator refuses
    it too, but only after the write was prepared, and with less to say."""
    branch = fields.get("branch")
    if isinstance(branch, str) and not is_branch_name(branch):
        raise InvalidRequest(
            f"branch {quoted(branch)} is not a branch name OdooOps accepts",
            remediation="use a name `git check-ref-format --branch NAME` accepts, without "
            "control or invisible characters, not starting with '-' or 'refs/' "
            "(e.g. release/v2)",
        )


def owner_of(principal: Principal, asked: str | None) -> str:
    """Who a new environment belongs to, for quotas: the token's subject. Only an admin token
    may create one for someone else (``owner`` in the body); an email in a commit is never
    who counts, since anyone can write any."""
    if asked is None or asked == principal.subject:
        return principal.subject
    if principal.has("admin"):
        return asked
    raise Forbidden(
        f"the token of {principal.subject} may create environments for itself only, not for "
        f"{asked}",
        remediation="leave owner out (it is the token's subject), or ask an admin to create it",
    )
