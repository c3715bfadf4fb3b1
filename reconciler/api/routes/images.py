"""API routes of environment images: the listing (size, sharing, who uses or keeps each, when
it would be collected) and an on-demand collection (``prune``), dry or confirmed.

Images belong to environments only through their users and the ledger's history, so a token
limited to some environments sees the images its environments use, want or keep for a
rollback; the others (unused, or another instance's) only an unlimited token sees. A prune
removes across every project, so it takes the admin scope, and an explicit ``confirm`` unless
it is dry, as every other destructive call.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.context import ApiContext, principal_of
from reconciler.api.httpbody import json_object
from reconciler.core.errors import OdooOpsError
from reconciler.engine.images import ImageCollector, describe, prune_doc


def routes(ctx: ApiContext) -> list[BaseRoute]:
    def collector() -> ImageCollector:
        images = ctx.plane.images()
        if images is None:
            raise OdooOpsError(
                "images are the daemon's: this API serves no daemon",
                code="not_found",
                remediation="odooops login --api URL --token TOKEN (the daemon's API); then: "
                "odooops images",
            )
        return images

    @ctx.guarded("env:read")
    async def list_images(request: Request) -> Response:
        """Every image built by OdooOps on the engine: tags, project, size and shared size,
        the environments that use it, want it or keep it for a rollback, why it is kept and
        when it would be collected."""
        images = collector()
        doc = describe(await run_in_threadpool(images.report))
        principal = principal_of(request)
        if principal.environments:
            doc["items"] = [
                item
                for item in doc["items"]
                if any(
                    principal.may_touch(env)
                    for field in ("used_by", "wanted_by", "kept_for_rollback_by")
                    for env in item[field]
                )
            ]
        return JSONResponse(doc)

    @ctx.guarded("admin")
    async def prune_images(request: Request) -> Response:
        """Collect now what the daily collection would: ``dry_run`` says what, and removing
        needs ``confirm``. An image the engine refuses to remove (in use) is listed under
        ``failed`` and kept."""
        body = await json_object(request, {"dry_run": bool, "confirm": bool}, required=set())
        dry_run = body.get("dry_run", False)
        if not dry_run and not body.get("confirm", False):
            raise OdooOpsError(
                "removing images needs an explicit confirmation (see what would go with "
                "dry_run first)",
                code="confirm_required",
                remediation="odooops images prune --dry-run; then: odooops images prune --confirm",
            )
        images = collector()
        done = await run_in_threadpool(images.collect, dry_run)
        return JSONResponse(prune_doc(done))

    return [
        Route("/v1/images", list_images, methods=["GET"]),
        Route("/v1/images/prune", prune_images, methods=["POST"]),
    ]
