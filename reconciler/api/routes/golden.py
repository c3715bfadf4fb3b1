"""API routes of golden copies: a production environment's golden copy (whether one is kept and
why, its age, size and revision) and a refresh on demand, as a job like every data operation.

A refresh reads production's data into a new, masked copy: it takes the ``db:backup`` scope,
the one a backup (production's data read out) takes.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.context import WAIT, ApiContext, env_key, wait_params
from reconciler.engine.jobs import wait


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    """The routes, mounted by ``reconciler.api.app.create_app`` under ``env`` (the env path)."""
    guarded, data = ctx.guarded, ctx.plane.data

    @guarded("env:read", per_env=True)
    async def show_golden(request: Request) -> Response:
        """The golden copy of this production environment: kept or not and why, the refresh
        schedule, when it was refreshed (age), its revision, size and masking figures."""
        doc = await run_in_threadpool(data().golden_status, env_key(request))
        return JSONResponse(doc)

    @guarded("db:backup", per_env=True, query=WAIT)
    async def refresh_golden(request: Request) -> Response:
        """Make the golden copy again now (a job): production keeps serving, copies keep
        using the previous golden copy until the new one is swapped in."""
        waiting, timeout = wait_params(request)
        key, principal = env_key(request), request.state.principal
        ops = data()
        await run_in_threadpool(ops.environment, key)  # unknown or held: refused up front
        jobs = ctx.plane.jobs()
        job = jobs.submit(
            "golden-refresh",
            str(key),
            principal.subject,
            lambda progress: ops.refresh_golden(
                key, f"on demand (by {principal.subject})", progress
            ),
        )
        if waiting:
            done = await run_in_threadpool(wait, lambda: jobs.get(job.id), timeout)
            if done is not None and done.state != "running":
                return JSONResponse(done.to_dict(), status_code=200)
        latest = jobs.get(job.id) or job
        return JSONResponse(latest.to_dict(), status_code=202)

    return [
        Route(f"{env}/golden", show_golden, methods=["GET"]),
        Route(f"{env}/golden/refresh", refresh_golden, methods=["POST"]),
    ]
