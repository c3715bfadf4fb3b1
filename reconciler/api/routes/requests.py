"""Change requests: protected writes waiting for a second person (list, show, review).

A token with environment globs sees, and reviews, only the requests that change nothing but
files of its environments (``sees_files``); any other answers as if it did not exist.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import Principal
from reconciler.api.context import (
    ApiContext,
    Handler,
    principal_of,
    request_id_param,
    sees_files,
)
from reconciler.gitops.changerequests import ChangeRequest, UnknownChangeRequest
from reconciler.gitops.gitsource import Author


def routes(ctx: ApiContext) -> list[BaseRoute]:
    plane, guarded = ctx.plane, ctx.guarded

    def visible(principal: Principal, cr: ChangeRequest) -> ChangeRequest:
        if not sees_files(principal, cr.files):
            raise UnknownChangeRequest(
                f"no change request {cr.id}", remediation="odooops requests list --state-repo URL"
            )
        return cr

    @guarded("env:read")
    async def list_requests(request: Request) -> Response:
        """Change requests of protected writes, open, merged and closed."""
        principal = principal_of(request)
        items = await run_in_threadpool(plane.change_requests().list)
        return JSONResponse(
            {"items": [c.to_dict() for c in items if sees_files(principal, c.files)]}
        )

    @guarded("env:read")
    async def show_request(request: Request) -> Response:
        """One change request."""
        cr = await run_in_threadpool(plane.change_requests().get, request_id_param(request))
        return JSONResponse(visible(principal_of(request), cr).to_dict())

    def review(action: str) -> Handler:
        @guarded("admin")
        async def handler(request: Request) -> Response:
            principal = principal_of(request)
            who, subject = Author(principal.name, principal.email), principal.subject
            crs = plane.change_requests()
            request_id = request_id_param(request)
            visible(principal, await run_in_threadpool(crs.get, request_id))
            if action == "merge":
                commit = await run_in_threadpool(crs.merge, request_id, who, subject)
                plane.trigger()
                return JSONResponse(
                    {"id": request_id, "state": "merged", "commit": commit}, status_code=202
                )
            call = crs.approve if action == "approve" else crs.close
            cr = await run_in_threadpool(call, request_id, who, subject)
            return JSONResponse(cr.to_dict())

        handler.__name__ = f"{action}_request"
        handler.__doc__ = f"{action.capitalize()} a change request (admin; a commit)."
        return handler

    return [
        Route("/v1/requests", list_requests, methods=["GET"]),
        Route("/v1/requests/{id}", show_request, methods=["GET"]),
        Route("/v1/requests/{id}/approve", review("approve"), methods=["POST"]),
        Route("/v1/requests/{id}/merge", review("merge"), methods=["POST"]),
        Route("/v1/requests/{id}/close", review("close"), methods=["POST"]),
    ]
