"""API routes of image builds: the list (queue position, result), one build, and its log,
streamed while the build runs (``?follow=true``).

A build belongs to the environment whose run asked for it: a token sees the builds of the
environments it may read, as it sees their status.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import Principal
from reconciler.api.context import NAME, ApiContext, principal_of, query_of
from reconciler.api.httpbody import InvalidRequest
from reconciler.core.errors import OdooOpsError
from reconciler.engine.buildqueue import BuildQueue, BuildRecord

_BUILD_ID = re.compile(r"b[0-9]{17}-[0-9a-f]{6}")
FOLLOW_POLL = 0.5  # seconds between two reads of a growing log


def routes(ctx: ApiContext) -> list[BaseRoute]:
    def queue() -> BuildQueue:
        builds = ctx.plane.builds()
        if builds is None:
            raise OdooOpsError(
                "builds are the daemon's: this API serves no daemon",
                code="not_found",
                remediation="log in to the daemon's API: odooops login --api URL --token X",
            )
        return builds

    def visible(request: Request, record: BuildRecord | None, build_id: str) -> BuildRecord:
        principal: Principal = request.state.principal
        if record is None or not principal.may_touch(record.environment):
            raise OdooOpsError(
                f"no build {build_id}",
                code="not_found",
                remediation="odooops builds list",
            )
        return record

    @ctx.guarded("env:read", query={"limit", "project"})
    async def list_builds(request: Request) -> Response:
        """Builds, newest first: queued (with their place), running, green, yellow or red."""
        query = query_of(request)
        limit = query.whole("limit", 50, 1, 200, remediation="odooops builds list --limit 50")
        project = query.text("project", max_length=32)
        if project is not None and not NAME.fullmatch(project):
            raise InvalidRequest(
                f"project must be a project name, got {project!r}",
                remediation="odooops builds list --project acme",
            )
        principal: Principal = request.state.principal
        items = [
            r.to_dict() for r in queue().list(limit, project) if principal.may_touch(r.environment)
        ]
        return JSONResponse({"items": items})

    @ctx.guarded("env:read")
    async def show_build(request: Request) -> Response:
        """One build: its state, times, and for a red one the failing step and excerpt."""
        build_id = str(request.path_params["id"])
        record = queue().get(build_id) if _BUILD_ID.fullmatch(build_id) else None
        return JSONResponse(visible(request, record, build_id).to_dict())

    @ctx.guarded("env:read", query={"follow"})
    async def build_log(request: Request) -> Response:
        """The build's log as text; ``follow`` keeps the stream open until the build ends."""
        follow = query_of(request).flag("follow")
        build_id = str(request.path_params["id"])
        builds = queue()
        record = builds.get(build_id) if _BUILD_ID.fullmatch(build_id) else None
        visible(request, record, build_id)
        path = builds.log_path(build_id)
        slot = ctx.streams.open(principal_of(request).subject) if follow else None

        async def body() -> AsyncIterator[bytes]:
            offset = 0
            try:
                while True:
                    now = builds.get(build_id)
                    done = now is None or now.done
                    chunk = _read_from(path, offset)
                    if chunk:
                        offset += len(chunk)
                        yield chunk
                    if done or not follow:
                        if done:  # what was written just before the end
                            rest = _read_from(path, offset)
                            if rest:
                                yield rest
                        return
                    await asyncio.sleep(FOLLOW_POLL)
            finally:
                if slot is not None:
                    slot.close()

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")

    return [
        Route("/v1/builds", list_builds, methods=["GET"]),
        Route("/v1/builds/{id}", show_build, methods=["GET"]),
        Route("/v1/builds/{id}/log", build_log, methods=["GET"]),
    ]


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(1 << 20)
    except FileNotFoundError:
        return b""
