"""A write to the desired state, as every route makes it: a commit, then a trigger.

Writes never touch Docker or PostgreSQL: the control plane validates and commits them (to
``main``, or to a change-request branch for protected environments) and the daemon applies the
commit. ``?wait=true`` then follows the environment's status until the daemon has applied that
very commit.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconciler.api.auth import check_production_write
from reconciler.api.context import (
    REQUEST_ID,
    ApiContext,
    change_request_param,
    principal_of,
    wait_params,
)
from reconciler.api.httpbody import InvalidRequest
from reconciler.core.errors import OdooOpsError
from reconciler.engine.status import Condition, EnvironmentStatus
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author


async def commit_write(
    ctx: ApiContext,
    request: Request,
    op: changes.Operation | changes.FileOperation,
    body: Mapping[str, Any],
) -> Response:
    """Commit ``op`` as the token's subject; answer 202 (or, waiting, once applied).

    ``X-Request-Id`` is the client's correlation id (the commit's ``Request-Id`` trailer); the
    change request a protected write opens is named by the server, and a write joins an
    existing one only through ``change_request`` in ``body``, as that request's owner.
    """
    principal = principal_of(request)
    wait, timeout = wait_params(request)
    state = ctx.state()
    if isinstance(op, changes.FileOperation) or any(
        s.key == op.key and s.protected for s in state.environments
    ):
        client = request.client.host if request.client else ""
        check_production_write(principal, client, ctx.production_allowlist)
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
    if not REQUEST_ID.fullmatch(request_id):
        raise InvalidRequest(
            "X-Request-Id must be 1 to 64 letters, digits, '-' or '_'",
            remediation="send a UUID or leave the header out (one is generated)",
        )
    join = change_request_param(body.get("change_request"))
    author = Author(principal.name, principal.email)
    write = functools.partial(
        ctx.plane.write,
        op,
        author,
        subject=principal.subject,
        request_id=request_id,
        pr=bool(body.get("pr", False)),
        change_request=join,
    )
    result = await run_in_threadpool(write)
    if not result.change_request:
        ctx.plane.trigger()
    doc: dict[str, Any] = {
        "commit": result.commit,
        "branch": result.branch,
        "change_request": result.change_request,
        "request_id": result.request_id,
    }
    if result.change_request:
        doc["change_request_id"] = result.change_request_id
    if result.url:
        doc["change_request_url"] = result.url
    if isinstance(op, changes.FileOperation):
        doc["path"] = op.path
    else:
        doc["environment"] = str(op.key)
        doc["status"] = f"/v1/environments/{op.key.project}/{op.key.env}/status"
        if wait and not result.change_request:
            return await _converged(ctx, op, result.commit, doc, timeout)
    return JSONResponse(doc, status_code=202)


async def _converged(
    ctx: ApiContext, op: changes.Operation, commit: str, doc: dict[str, Any], timeout: float
) -> Response:
    """``?wait=true``: answer once the daemon has applied ``commit`` to the environment.

    200 with ``converged`` true (Ready on that commit, or gone after a destroy) or false
    (it failed: ``environment_status`` says why); 504 when the time is up. A newer commit
    to the same environment also ends the wait: the environment moved on.
    """
    deadline = time.monotonic() + timeout
    key = str(op.key)
    while time.monotonic() < deadline:
        status = ctx.plane.statuses().get(key)
        if status is None and op.verb == "destroy":
            return JSONResponse({**doc, "converged": True, "environment_status": None})
        ready = ready_condition(status) if status is not None else None
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


def ready_condition(status: EnvironmentStatus) -> Condition | None:
    return next((c for c in status.conditions if c.type == "Ready"), None)
