"""API route of pull-request previews: which request each preview is of, where it answers,
when it expires. Previews are environments (``/v1/environments`` lists them too); this view
adds what only a preview has, its request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.context import ApiContext, principal_of
from reconciler.core.durations import format_instant


def routes(ctx: ApiContext) -> list[BaseRoute]:
    @ctx.guarded("env:read")
    async def list_previews(request: Request) -> Response:
        """Every preview the state declares (those a token's globs cover): its request
        (forge, number, page, author, head and base branches), its expiry, and its status."""
        principal = principal_of(request)
        statuses = ctx.plane.statuses()
        items = []
        for spec in sorted(ctx.state().environments, key=lambda s: s.key):
            p = spec.preview
            if p is None or not principal.may_touch(str(spec.key)):
                continue
            status = statuses.get(str(spec.key))
            items.append(
                {
                    "environment": str(spec.key),
                    "request": f"{p.forge}#{p.number}",
                    "request_url": p.url,
                    "author": p.author,
                    "head": p.head,
                    "base": p.base,
                    "fork": p.fork,
                    "expires": format_instant(spec.expires) if spec.expires else None,
                    "url": status.url if status else "",
                    "health": status.health.value if status else "Unknown",
                    "sync": status.sync.value if status else "Unknown",
                }
            )
        return JSONResponse({"items": items})

    return [Route("/v1/previews", list_previews, methods=["GET"])]
