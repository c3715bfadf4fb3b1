"""One error shape for every answer: ``{error, message, remediation, docs}`` with its status.

Each stable error code maps to one HTTP status here, so a route raises the product's own
``OdooOpsError`` and never picks a status code itself.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from reconciler.api.ratelimit import RateLimited, TooManyStreams
from reconciler.core.errors import OdooOpsError

HTTP_STATUS = {
    "invalid_request": 400,
    "invalid_name": 400,
    "unauthenticated": 401,
    "token_expired": 401,
    "token_revoked": 401,
    "token_lifetime_exceeded": 401,
    "revocations_unreadable": 503,
    "approval_stale": 409,
    "forbidden": 403,
    "unknown_environment": 404,
    "not_found": 404,
    "environment_exists": 409,
    "push_conflict": 409,
    "conflict": 409,
    "invalid_state": 422,
    "rate_limited": 429,
    "quota_exceeded": 409,
    "too_many_streams": 429,
    "no_state": 503,
    "docker_unreachable": 503,
    "database_unreachable": 503,
    "fetch_failed": 503,
    "push_failed": 503,
    "push_rejected": 409,
    "invalid_path": 400,
    "invalid_webhook": 401,
    "payload_too_large": 413,
    "unknown_change_request": 404,
    "invalid_token_request": 400,
    "wait_timeout": 504,
    "environment_not_found": 404,
    "environment_held": 409,
    "backup_not_found": 404,
    "backup_not_good": 409,
    "mail_not_found": 404,
    "confirm_required": 409,
    "nothing_kept": 409,
    "image_collected": 409,
    "no_rollback_target": 409,
    "revision_not_deployed": 422,
    "copy_onto_protected": 409,
    "operation_busy": 409,
    "copy_source_not_ready": 409,
    "golden_not_production": 409,
    "golden_missing": 409,
    "golden_inconsistent": 409,
    "backup_key_missing": 503,
    "backup_key_invalid": 503,
    "backup_key_mismatch": 409,
    "backup_storage_unreachable": 503,
    "backup_corrupt": 422,
    "odoo_dump_invalid": 422,
    "dump_forbidden": 422,
    "dump_too_new": 422,
    "filestore_invalid": 422,
    "not_an_odoo_database": 422,
    "pg_client_missing": 503,
    "export_failed": 503,
    "copy_failed": 503,
    "restore_failed": 422,
    "mask_failed": 422,
    "neutralize_failed": 503,
    "audit_unavailable": 503,
    "database_not_initialised": 409,
    "admin_user_missing": 422,
    "admin_password_failed": 503,
    "not_expiring": 409,
    "ttl_too_long": 400,
    "promotion_refused": 409,
    "invalid_promotion": 400,
    "no_migration_pending": 409,
    "branch_exists": 409,
    "nothing_served": 409,
    "branch_environment_not_created": 500,
}
# A 401 about the bearer token (not a webhook's signature) tells the client how to authenticate.
_BEARER_REFUSALS = frozenset(
    {"unauthenticated", "token_expired", "token_revoked", "token_lifetime_exceeded"}
)


def status_of(exc: OdooOpsError) -> int:
    return HTTP_STATUS.get(exc.code, 500)


async def error_response(request: Request, exc: OdooOpsError) -> Response:
    headers = {}
    if isinstance(exc, RateLimited | TooManyStreams):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.code in _BEARER_REFUSALS:
        headers["WWW-Authenticate"] = 'Bearer realm="odooops"'
    return JSONResponse(exc.to_dict(), status_code=status_of(exc), headers=headers)


async def not_found(request: Request, exc: Exception) -> Response:
    return await error_response(
        request,
        OdooOpsError(
            f"no route {request.url.path}",
            code="not_found",
            remediation="see the routes in /v1/openapi.json",
        ),
    )


async def not_allowed(request: Request, exc: Exception) -> Response:
    """405 with ``Allow`` (RFC 9110 requires it): every method of every route on this path.

    Starlette's own header names the methods of the first route that matched the path only,
    and one path here is often several routes (``GET`` and ``POST /v1/environments``).
    """
    allowed = sorted(allowed_methods(request))
    error = OdooOpsError(
        f"{request.method} is not allowed on {request.url.path}",
        code="method_not_allowed",
        remediation=f"use {', '.join(allowed)}; see /v1/openapi.json",
    )
    return JSONResponse(error.to_dict(), status_code=405, headers={"Allow": ", ".join(allowed)})


def allowed_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route.methods or ())
    return methods
