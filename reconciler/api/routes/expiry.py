"""Expiry of environments: ``POST .../extend`` pushes an environment's ``expires`` back.

An extension is a commit like every write, authorised like a deployment of the environment
(whoever may roll it out may keep it). It never goes through a change request: only a
non-protected environment expires, and a protected one is refused before anything is
written (``not_expiring``). The new expiry is computed from the file at the head the commit
lands on (``changes.Operation`` ``extend``), so two extensions that race add up.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from reconciler.api.context import ApiContext, body, env_key, unknown
from reconciler.api.httpbody import InvalidRequest
from reconciler.api.writes import commit_write
from reconciler.core import durations, expiry
from reconciler.gitops import changes


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    @ctx.guarded("deploy", per_env=True)
    async def extend_environment(request: Request) -> Response:
        """Push an environment's expiry back by ``ttl`` (from now when it is already past)."""
        fields = await body(request, {"ttl"}, required={"ttl"})
        key = env_key(request)
        try:
            expiry.parse_extension(fields["ttl"])
        except ValueError as exc:
            raise InvalidRequest(f"ttl: {exc}", remediation='{"ttl": "3d"}') from None
        state = ctx.state()
        spec = next((s for s in state.environments if s.key == key), None)
        if spec is None:  # not declared by a file: made by a branch rule, or unknown
            raise expiry.branch_made(key) if str(key) in ctx.plane.statuses() else unknown(key)
        expiry.check_extensible(spec, state)
        now = durations.format_instant(ctx.clock())
        op = changes.Operation("extend", key, {"by": fields["ttl"], "now": now})
        return await commit_write(ctx, request, op, {})

    return [Route(f"{env}/extend", extend_environment, methods=["POST"])]
