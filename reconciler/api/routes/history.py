"""API routes of an environment's deployment history and of a rollback to one of its versions.

``GET .../history`` lists the last ten deployed versions with their outcome and what a rollback
to each would find (its image, its data). ``POST .../rollback-version`` is a write like any
other: a commit pinning the environment to an earlier revision (through a change request when
protected), refused before anything is written when the version's image was collected or, with
``with_data``, when no data of that version is left. (``POST .../rollback`` is the older data
rollback of ``odooops db rollback``, which stays.)
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import authorize
from reconciler.api.context import WAIT, ApiContext, env_key, unknown
from reconciler.api.httpbody import InvalidRequest, json_object
from reconciler.api.writes import commit_write
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.engine.history import Histories, describe_rollback
from reconciler.gitops import changes


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    """The routes, mounted by ``reconciler.api.app.create_app`` under ``env`` (the env path)."""

    def histories() -> Histories:
        found = ctx.plane.histories()
        if found is None:
            raise OdooOpsError(
                "deployment history is the daemon's: this API serves no daemon",
                code="not_found",
                remediation="odooops login --api URL --token TOKEN (the daemon's API); then: "
                "odooops history ENV",
            )
        return found

    async def current(key: EnvKey) -> str:
        """The revision the environment is pinned to now (as the last pass resolved it)."""
        try:
            want = await run_in_threadpool(ctx.plane.data().environment, key)
        except OdooOpsError as exc:
            if exc.code == "environment_not_found":
                raise unknown(key) from None
            raise
        return want.revision

    @ctx.guarded("env:read", per_env=True)
    async def environment_history(request: Request) -> Response:
        """The last 10 deployed versions, newest first: revision, image, when, health
        (progressing, healthy, failed, rolled-back), the state commit that put it in place
        (author, message), and whether its image, kept data or pre-update backup remain."""
        key = env_key(request)
        found = histories()
        revision = await current(key)
        return JSONResponse(await run_in_threadpool(found.describe, key, revision))

    @ctx.guarded("deploy", per_env=True, query=WAIT)
    async def rollback_version(request: Request) -> Response:
        """Pin the environment to the last healthy version before the current one (or
        ``to``), reusing its retained image; ``with_data`` (and ``confirm``) brings the data of
        that version back too. 202 with the commit, as any write."""
        body = await json_object(
            request,
            {"to": str, "with_data": bool, "confirm": bool, "pr": bool, "change_request": str},
            required=set(),
        )
        key = env_key(request)
        to = body.get("to")
        if to is not None and not (7 <= len(to) <= 40):
            raise InvalidRequest(
                "to must be a revision: 7 to 40 hex digits of a deployed commit",
                remediation=f"odooops history {key}",
            )
        with_data = bool(body.get("with_data", False))
        if with_data:
            authorize(request.state.principal, "db:restore", str(key))
        found = histories()
        revision = await current(key)
        rollback = await run_in_threadpool(
            found.prepare, key, revision, to, with_data, bool(body.get("confirm", False))
        )
        op = changes.Operation(
            "rollback",
            key,
            {"revision": rollback.target.revision},
            trailers=rollback.trailers(),
        )
        try:
            response = await commit_write(ctx, request, op, body)
        except BaseException:
            await run_in_threadpool(found.cancel, rollback)
            raise
        return _with_rollback(response, describe_rollback(rollback))

    return [
        Route(f"{env}/history", environment_history, methods=["GET"]),
        Route(f"{env}/rollback-version", rollback_version, methods=["POST"]),
    ]


def _with_rollback(response: Response, rollback: dict[str, object]) -> Response:
    """The write's answer, with what the rollback goes to."""
    doc = json.loads(bytes(response.body))
    doc["rollback"] = rollback
    return JSONResponse(doc, status_code=response.status_code)
