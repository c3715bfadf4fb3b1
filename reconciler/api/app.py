"""The REST API (Starlette), versioned under ``/v1``: reads from the daemon's view, writes as
commits.

Every route but ``/v1/health`` and ``/v1/openapi.json`` needs a bearer token with the route's
scope (and, for one environment, a token whose environment globs cover it). Writes to the
desired state never touch Docker or PostgreSQL: they become a commit to the state repository
(``ControlPlane.write``), answered ``202`` with the commit and a status link, and they trigger a
reconcile pass. Every error has one shape, ``{error, message, remediation, docs}``, with a
stable code. The OpenAPI document is kept by hand next to this module (``openapi.json``) and
served as is; a test holds it to the routes. Operations on live data (backups, restores,
copies, dumps, caught mail) are not commits: they are the jobs of ``routes/data.py``.

The routes live in one module per resource (``routes/``); this module assembles them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.api.auth import TokenAuthority
from reconciler.api.context import ApiContext
from reconciler.api.errors import error_response, not_allowed, not_found
from reconciler.api.plane import ControlPlane
from reconciler.api.ratelimit import RateLimiter
from reconciler.api.routes import (
    builds,
    data,
    environments,
    expiry,
    golden,
    history,
    images,
    platform,
    previews,
    promotion,
    requests,
    shell,
)
from reconciler.api.routes.platform import OPENAPI_PATH
from reconciler.core.errors import OdooOpsError, sanitize
from reconciler.engine.metrics import Metrics
from webhooks.events import Event, PullRequestEvent, TagEvent
from webhooks.receiver import webhook_route
from webhooks.repositories import concerns

__all__ = ["OPENAPI_PATH", "RateLimiter", "create_app"]

ENV_PATH = "/v1/environments/{project}/{env}"


def create_app(
    plane: ControlPlane,
    authority: TokenAuthority,
    *,
    production_allowlist: tuple[str, ...] = (),
    limiter: RateLimiter | None = None,
    metrics: Metrics | None = None,
    webhook_secret: Callable[[], str | None] = lambda: None,
    upload_dir: Path | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The app. Webhooks (``/v1/webhooks/{forge}``) authenticate by signature, not by token;
    without a ``webhook_secret`` they answer 404. A delivery triggers a pass only when it
    concerns the state repository or a project's repository of the last valid state.
    ``clock`` is what writes read as now (expiries); the real one unless a test fakes it."""
    ctx = ApiContext(
        plane=plane,
        authority=authority,
        limiter=limiter or RateLimiter(),
        production_allowlist=production_allowlist,
        metrics=metrics,
        upload_dir=upload_dir,
    )
    if clock is not None:
        ctx = dataclasses.replace(ctx, clock=clock)

    def count_webhook(forge: str, event: str, result: str) -> None:
        if metrics is not None:
            metrics.webhooks.labels(forge, event, result).inc()

    routes = [
        *platform.routes(ctx),
        *environments.routes(ctx, ENV_PATH),
        *expiry.routes(ctx, ENV_PATH),
        *requests.routes(ctx),
        *shell.routes(ctx, ENV_PATH),
        *data.routes(ctx, ENV_PATH),
        *promotion.routes(ctx, ENV_PATH),
        *history.routes(ctx, ENV_PATH),
        *golden.routes(ctx, ENV_PATH),
        *builds.routes(ctx),
        *images.routes(ctx),
        *previews.routes(ctx),
        webhook_route(webhook_secret, lambda event: _on_delivery(plane, event), count_webhook),
    ]
    middleware = [Middleware(_Timing, metrics=metrics)] if metrics is not None else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            OdooOpsError: error_response,  # type: ignore[dict-item]
            404: not_found,
            405: not_allowed,
        },
    )


def _on_delivery(plane: ControlPlane, event: Event) -> bool | str:
    """A pass for a delivery of a watched repository; a pull request's delivery also goes to
    the previews (an application repository's) or the reviews (the state repository's)."""
    state = plane.state()
    projects = [p.repo_url for p in state.projects.values()] if state is not None else []
    if isinstance(event, TagEvent):
        return "a tag moves no environment (environments follow branches or pinned commits)"
    if not concerns(event, [plane.state_repository(), *projects]):
        shown = sanitize(event.repository)[:200] or "(none)"
        return (
            f"repository {shown} is neither the state repository nor a project's "
            "repository.url: nothing to do"
        )
    if isinstance(event, PullRequestEvent):
        plane.pull_request(event)
    plane.trigger()
    return True


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
