"""The platform as a whole: health, readiness, the plan, policies, projects, tokens, audit,
metrics and the API's own description."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import peek
from reconciler.api.context import (
    ApiContext,
    body,
    plan_doc,
    principal_of,
    project_doc,
    query_of,
    sees_files,
    unknown_project,
)
from reconciler.api.httpbody import InvalidRequest
from reconciler.api.writes import commit_write
from reconciler.core import durations
from reconciler.core.errors import OdooOpsError
from reconciler.engine.metrics import CONTENT_TYPE
from reconciler.gitops import changes

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "openapi.json"


def routes(ctx: ApiContext) -> list[BaseRoute]:
    plane, guarded, authority = ctx.plane, ctx.guarded, ctx.authority
    openapi = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))

    async def health(request: Request) -> Response:
        """Liveness, public: the process answers."""
        return JSONResponse({"status": "pass"})

    async def get_openapi(request: Request) -> Response:
        """This API's OpenAPI 3.1 document, public: clients and fuzzers discover the routes here."""
        return JSONResponse(openapi)

    @guarded("env:read")
    async def ready(request: Request) -> Response:
        """Readiness: a valid state commit is loaded and the last pass ran."""
        daemon = plane.daemon_status()
        ok = plane.state() is not None
        return JSONResponse(
            {
                "ready": ok,
                "state_commit": daemon.state_commit,
                "last_poll": daemon.last_poll,
                "state_error": daemon.state_error,
            },
            status_code=200 if ok else 503,
        )

    @guarded("env:read")
    async def daemon_status(request: Request) -> Response:
        """The daemon's own status: the state commit in force (and a rejected head), the last
        poll, the last pass's duration, the number of passes, and the branches that get no
        environment because they are past their TTL. Answered whether or not a valid state
        commit is loaded, so ``odooops status`` can always say why."""
        daemon = plane.daemon_status()
        return JSONResponse(
            {
                "ready": plane.state() is not None,
                "state_commit": daemon.state_commit,
                "state_error": daemon.state_error,
                "last_poll": daemon.last_poll,
                "last_pass_seconds": daemon.last_pass_seconds,
                "passes": daemon.passes,
                "expired": dict(daemon.expired),
            }
        )

    @guarded("env:read")
    async def get_plan(request: Request) -> Response:
        """What the next pass would do (exact, side-effect free), within the token's globs."""
        result = await run_in_threadpool(plane.plan)
        return JSONResponse(plan_doc(result, principal_of(request)))

    @guarded("env:read")
    async def get_routes(request: Request) -> Response:
        """The route table the proxy serves (each environment's hosts, upstreams, allowlist,
        body limit, maintenance) and each host's certificate, within the token's globs."""
        doc = plane.routes()
        principal = principal_of(request)
        doc["routes"] = [
            r for r in doc["routes"] if principal.may_touch(f"{r['project']}/{r['env']}")
        ]
        return JSONResponse(doc)

    @guarded("deploy")
    async def reconcile(request: Request) -> Response:
        """Run a pass now instead of waiting for the poll; environments held after a failure
        that waiting cannot fix (a deploy that failed on its code) are tried again too."""
        plane.retry()
        return JSONResponse({"triggered": True}, status_code=202)

    @guarded("env:read")
    async def get_policies(request: Request) -> Response:
        """Branch rules and protection in force (from the last valid state commit)."""
        policies = ctx.state().policies
        return JSONResponse(
            {
                "branches": [
                    {"match": r.match, "tier": r.tier.value, "auto_create": r.auto_create}
                    for r in policies.rules
                ],
                "protected_tiers": sorted(t.value for t in policies.protected_tiers),
                "prune": {"allow_empty": policies.allow_empty},
            }
        )

    @guarded("admin", query={"pr", "change_request"})
    async def update_policies(request: Request) -> Response:
        """Replace policies.yaml (validated whole; a change request if it touches production)."""
        op = changes.FileOperation(
            "policies.yaml", await _document(request), "chore(policies): update policies"
        )
        return await commit_write(ctx, request, op, _routing(request))

    @guarded("env:read")
    async def list_projects(request: Request) -> Response:
        """Projects and their application repositories (credentials never shown)."""
        return JSONResponse({"items": [project_doc(p) for p in ctx.state().projects.values()]})

    @guarded("env:read")
    async def show_project(request: Request) -> Response:
        """One project and its application repository (credentials never shown)."""
        name = str(request.path_params["name"])
        project = ctx.state().projects.get(name)
        if project is None:
            raise unknown_project(name)
        return JSONResponse(project_doc(project))

    @guarded("admin", query={"pr", "change_request"})
    async def update_project(request: Request) -> Response:
        """Create or replace projects/<name>.yaml (validated whole; secrets only by reference).

        The guard has checked that ``name`` is a project name, so it is safe in a path."""
        name = str(request.path_params["name"])
        doc = await _document(request)
        op = changes.FileOperation(f"projects/{name}.yaml", doc, f"chore(project): update {name}")
        return await commit_write(ctx, request, op, _routing(request))

    @guarded("admin")
    async def create_token(request: Request) -> Response:
        """Mint a token for someone (admin): the same as odooops token create."""
        fields = await body(
            request,
            {"subject", "scopes", "environments", "ttl", "name", "email"},
            required={"subject", "scopes"},
        )
        scopes, envs = fields["scopes"], fields.get("environments", [])
        if not (isinstance(scopes, list) and all(isinstance(x, str) for x in scopes)) or not (
            isinstance(envs, list) and all(isinstance(x, str) for x in envs)
        ):
            raise InvalidRequest(
                "scopes and environments are lists of strings",
                remediation='{"subject": "ann", "scopes": ["env:read"]}',
            )
        try:
            ttl = durations.parse_duration(fields["ttl"]) if "ttl" in fields else None
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"ttl: {exc}", remediation='"ttl": "12h"') from None
        token = authority.mint(
            fields["subject"],
            scopes,
            environments=envs,
            ttl=ttl,
            name=fields.get("name"),
            email=fields.get("email"),
        )
        minted = peek(token)
        if authority.revocations is not None:  # the daemon's: every mint is on record
            await run_in_threadpool(
                authority.revocations.record,
                {
                    "event": "minted",
                    "jti": minted["jti"],
                    "subject": fields["subject"],
                    "scopes": " ".join(scopes),
                    "environments": " ".join(envs),
                    "expires_at": minted.get("expires_at", ""),
                    "by": principal_of(request).subject,
                    "via": "api",
                },
            )
        return JSONResponse(
            {
                "token": token,
                "jti": minted["jti"],
                "subject": fields["subject"],
                "scopes": scopes,
                "expires_at": minted.get("expires_at", ""),
            },
            status_code=201,
        )

    @guarded("admin")
    async def revoke_token(request: Request) -> Response:
        """Revoke a token by its jti or as a whole (admin); refused on every request after."""
        fields = await body(request, {"jti", "token", "reason"}, required={"reason"})
        if ("jti" in fields) == ("token" in fields):
            raise InvalidRequest(
                "send exactly one of jti and token",
                remediation='{"jti": "0f3c...", "reason": "laptop lost"}',
            )
        ledger = authority.revocations
        if ledger is None:
            raise _no_ledger()
        target = peek(fields["token"]) if "token" in fields else {"jti": fields["jti"]}
        entry = await run_in_threadpool(
            functools.partial(
                ledger.revoke,
                target["jti"],
                by=principal_of(request).subject,
                reason=fields["reason"],
                subject=target.get("subject", ""),
                expires_at=target.get("expires_at", ""),
            )
        )
        return JSONResponse({"revoked": True, **entry})

    @guarded("env:read", query={"limit"})
    async def get_audit(request: Request) -> Response:
        """Who changed what: the state repository's history (every state is a commit).

        A token with environment globs sees only the commits that touch nothing but files of
        its environments (``sees_files``).
        """
        limit = query_of(request).whole("limit", 50, 1, 500, remediation="GET /v1/audit?limit=50")
        principal = principal_of(request)
        visible = None if not principal.environments else functools.partial(sees_files, principal)
        items = await run_in_threadpool(plane.audit, limit, visible)
        return JSONResponse({"items": [c.audit() for c in items]})

    @guarded("env:read")
    async def get_metrics(request: Request) -> Response:
        """Prometheus text format; scrape with a bearer token (env:read). A token with
        environment globs gets the per-environment series of its environments only."""
        if ctx.metrics is None:
            raise OdooOpsError(
                "metrics are not collected by this process",
                code="not_found",
                remediation="scrape the daemon's API",
            )
        principal = principal_of(request)
        visible = None if not principal.environments else principal.may_touch
        return Response(ctx.metrics.render(visible), media_type=CONTENT_TYPE)

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/openapi.json", get_openapi, methods=["GET"]),
        Route("/v1/ready", ready, methods=["GET"]),
        Route("/v1/daemon", daemon_status, methods=["GET"]),
        Route("/v1/plan", get_plan, methods=["GET"]),
        Route("/v1/routes", get_routes, methods=["GET"]),
        Route("/v1/reconcile", reconcile, methods=["POST"]),
        Route("/v1/policies", get_policies, methods=["GET"]),
        Route("/v1/projects", list_projects, methods=["GET"]),
        Route("/v1/policies", update_policies, methods=["PUT"]),
        Route("/v1/projects/{name}", show_project, methods=["GET"]),
        Route("/v1/projects/{name}", update_project, methods=["PUT"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
        Route("/v1/tokens/revoke", revoke_token, methods=["POST"]),
        Route("/v1/audit", get_audit, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
    ]


async def _document(request: Request) -> dict[str, object]:
    """A whole file's content as a JSON object; the state validator judges its keys."""
    try:
        doc = json.loads(await request.body() or b"null")
    except (ValueError, RecursionError):
        raise InvalidRequest(
            "the request body is not JSON", remediation="send a JSON object"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "the request body must be a JSON object",
            remediation="send the file's content as a JSON object",
        )
    return doc


def _routing(request: Request) -> dict[str, object]:
    """Where a whole-file write goes: ``?pr=true``, ``?change_request=ID`` (its owner's)."""
    query = query_of(request)
    return {"pr": query.flag("pr"), "change_request": query.text("change_request", 64)}


def _no_ledger() -> OdooOpsError:
    return OdooOpsError(
        "this API keeps no token revocation list and audit log",
        code="not_found",
        remediation="mint and revoke through the daemon's API, or with odooops token "
        "create|revoke --data-dir DATA_DIR",
    )
