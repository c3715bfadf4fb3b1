"""The platform as a whole: health, readiness, the plan, policies, projects, tokens, audit,
metrics and the API's own description."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.context import NAME, ApiContext, body, project_doc, unknown_project
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
        """What the next pass would do (exact, side-effect free)."""
        result = await run_in_threadpool(plane.plan)
        return JSONResponse(
            {
                "changes": result.has_changes,
                "actions": [
                    {
                        "environment": str(a.key),
                        "action": a.kind.value,
                        "target": a.target,
                        "reason": a.reason,
                    }
                    for a in result.actions
                ],
                "retained": list(result.retained),
                "held": {str(k): v for k, v in result.held.items()},
                "expired": {str(k): v for k, v in result.expired.items()},
            }
        )

    @guarded("deploy")
    async def reconcile(request: Request) -> Response:
        """Run a pass now instead of waiting for the poll."""
        plane.trigger()
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

    @guarded("admin")
    async def update_policies(request: Request) -> Response:
        """Replace policies.yaml (validated whole; a change request if it touches production)."""
        op = changes.FileOperation(
            "policies.yaml", await _document(request), "chore(policies): update policies"
        )
        return await commit_write(
            ctx, request, op, {"pr": request.query_params.get("pr") == "true"}
        )

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

    @guarded("admin")
    async def update_project(request: Request) -> Response:
        """Create or replace projects/<name>.yaml (validated whole; secrets only by reference)."""
        name = str(request.path_params["name"])
        if not NAME.fullmatch(name):
            raise InvalidRequest(
                f"{name!r} is not a valid project name",
                remediation="lowercase letters, digits and hyphens, e.g. acme",
            )
        doc = await _document(request)
        op = changes.FileOperation(f"projects/{name}.yaml", doc, f"chore(project): update {name}")
        return await commit_write(
            ctx, request, op, {"pr": request.query_params.get("pr") == "true"}
        )

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
            ttl = durations.parse_duration(fields.get("ttl", "12h"))
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
        return JSONResponse(
            {"token": token, "subject": fields["subject"], "scopes": scopes}, status_code=201
        )

    @guarded("env:read")
    async def get_audit(request: Request) -> Response:
        """Who changed what: the state repository's history (every state is a commit)."""
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise InvalidRequest(
                "limit must be a whole number from 1 to 500", remediation="GET /v1/audit?limit=50"
            )
        items = await run_in_threadpool(plane.audit, int(raw))
        return JSONResponse({"items": [c.audit() for c in items]})

    @guarded("env:read")
    async def get_metrics(request: Request) -> Response:
        """Prometheus text format; scrape with a bearer token (env:read)."""
        if ctx.metrics is None:
            raise OdooOpsError(
                "metrics are not collected by this process",
                code="not_found",
                remediation="scrape the daemon's API",
            )
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/openapi.json", get_openapi, methods=["GET"]),
        Route("/v1/ready", ready, methods=["GET"]),
        Route("/v1/daemon", daemon_status, methods=["GET"]),
        Route("/v1/plan", get_plan, methods=["GET"]),
        Route("/v1/reconcile", reconcile, methods=["POST"]),
        Route("/v1/policies", get_policies, methods=["GET"]),
        Route("/v1/projects", list_projects, methods=["GET"]),
        Route("/v1/policies", update_policies, methods=["PUT"]),
        Route("/v1/projects/{name}", show_project, methods=["GET"]),
        Route("/v1/projects/{name}", update_project, methods=["PUT"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
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


def _pr(request: Request) -> bool:
    return request.query_params.get("pr") == "true"
