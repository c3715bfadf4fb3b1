"""Moving revisions between environments: promotion, approved migrations, hotfix branches.

Each starts from what the daemon sees an environment *run* (its status), never from what the
state declares, and each ends as an ordinary write (a commit, through a change request when
the environment is protected):

- ``promote`` pins the target to the commit the source serves, once the source earned it
  (``reconciler.core.promotion.decide``); without ``confirm`` it only says what it would do;
- ``migrate`` approves the module update held by ``migration_pending``, for that revision
  only (``migrate: <revision>`` in the environment's file);
- ``branch`` creates a branch of the application repository at the commit an environment
  serves (pushed with the project's credentials, which only the daemon holds), then the
  branch's environment. A branch that exists is refused before anything is pushed.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import authorize
from reconciler.api.context import WAIT, ApiContext, env_key, principal_of, quoted, unknown
from reconciler.api.httpbody import InvalidRequest, json_object
from reconciler.api.routes.environments import check_branch
from reconciler.api.writes import commit_write
from reconciler.core import durations, expiry
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvironmentSpec, EnvKey
from reconciler.core.policies import env_name_for_branch
from reconciler.core.promotion import decide
from reconciler.gitops import changes

ROUTING = {"pr": bool, "change_request": str}


class NothingHeld(OdooOpsError):
    """``db migrate`` on an environment whose update is not held."""

    code = "no_migration_pending"


class EnvironmentNotCreated(OdooOpsError):
    """``branch``: the branch was pushed, the environment's commit failed."""

    code = "branch_environment_not_created"


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    plane = ctx.plane

    def spec_of(key: EnvKey) -> EnvironmentSpec:
        found = next((s for s in ctx.state().environments if s.key == key), None)
        if found is None:
            raise unknown(key)
        return found

    def source_name(request: Request, name: object) -> EnvKey:
        """``from``: ``staging`` or ``acme/staging``; another project is refused by
        ``decide`` with its own code, so it is read as given."""
        project = env_key(request).project
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "from must name the environment to promote: ENV or PROJECT/ENV",
                remediation=f'send {{"from": "staging"}} or {{"from": "{project}/staging"}}',
            )
        head, sep, _ = name.partition("/")
        return changes.resolve_name(name, [head if sep else project], project=project)

    @ctx.guarded("deploy", per_env=True, query=WAIT)
    async def promote(request: Request) -> Response:
        """Pin this environment to the commit ``from`` serves, once ``from`` passed its
        gates; without ``confirm`` only what would be committed (nothing is)."""
        body = await json_object(request, {"from": str, "confirm": bool, **ROUTING}, {"from"})
        target = spec_of(env_key(request))
        source = source_name(request, body["from"])
        authorize(principal_of(request), "env:read", str(source))
        release = await run_in_threadpool(plane.release, source)
        serving = await run_in_threadpool(plane.release, target.key)
        promotion = decide(release, source, target, serving)
        doc: dict[str, Any] = {"promotion": promotion.to_dict(), "protected": target.protected}
        if not body.get("confirm", False) or not promotion.changes:
            return JSONResponse({**doc, "committed": False})
        op = changes.Operation(
            "promote",
            target.key,
            promotion.fields(),
            title=promotion.title,
            trailers=promotion.trailers(),
        )
        return await commit_write(ctx, request, op, body)

    @ctx.guarded("deploy", per_env=True, query=WAIT)
    async def migrate(request: Request) -> Response:
        """Approve the held module update of the revision this environment waits on: a
        commit of ``migrate: <revision>``; a later revision is held again."""
        body = await json_object(request, dict(ROUTING))
        key = env_key(request)
        spec_of(key)
        status = plane.statuses().get(str(key))
        ready = next((c for c in status.conditions if c.type == "Ready"), None) if status else None
        if status is None or ready is None or ready.reason != "migration_pending":
            raise NothingHeld(
                f"no module update of {key} is held: there is nothing to approve",
                remediation=f"odooops status {key}",
            )
        op = changes.Operation("migrate", key, {"migrate": status.revision})
        return await commit_write(ctx, request, op, body)

    @ctx.guarded("deploy", per_env=True, query=WAIT)
    async def branch(request: Request) -> Response:
        """Create branch ``name`` of the application repository at the commit this
        environment serves, then the branch's environment (same project, tier from the
        branch rules)."""
        body = await json_object(request, {"name": str, **ROUTING}, {"name"})
        name = body["name"]
        check_branch({"branch": name})
        source = env_key(request)
        spec_of(source)
        target = EnvKey(source.project, env_name_for_branch(name))
        principal = principal_of(request)
        authorize(principal, "env:write", str(target))
        if any(s.key == target for s in ctx.state().environments):
            raise changes.EnvironmentExists(
                f"environment {target} (of branch {quoted(name)}) already exists: no branch "
                "was created",
                remediation=f"choose another branch name, or: odooops status {target}",
            )
        status = plane.statuses().get(str(source))
        if status is None or not status.serving:
            raise OdooOpsError(
                f"{source} serves nothing yet: there is no revision to branch from",
                code="nothing_served",
                remediation=f"odooops status {source}",
            )
        # Like any create through the API: owned by the token's subject, within its quota,
        # with the expiry of its tier.
        fields: dict[str, Any] = {"branch": name, "owner": principal.subject}
        expires = expiry.for_new_file(target, fields, ctx.state(), ctx.clock())
        if expires is not None:
            fields["expires"] = durations.format_instant(expires)
        op = changes.Operation("create", target, fields, quota=True)
        await run_in_threadpool(plane.check_write, op)  # refused now, nothing is pushed
        repo = await run_in_threadpool(plane.app_repository, source.project)
        await run_in_threadpool(repo.create_branch, name, status.serving)
        try:
            response = await commit_write(ctx, request, op, body)
        except OdooOpsError as exc:
            if exc.code == "wait_timeout":  # committed: only ?wait=true ran out of time
                raise
            raise EnvironmentNotCreated(
                f"branch {name} was created at {status.serving[:12]} (what {source} serves) and "
                f"exists now, but its environment {target} was not created: {exc.message}",
                remediation=f"odooops env create {target} --branch {name}",
            ) from exc
        doc = json.loads(bytes(response.body))
        doc.update(app_branch=name, revision=status.serving, source=str(source))
        return JSONResponse(doc, status_code=response.status_code)

    return [
        Route(f"{env}/promote", promote, methods=["POST"]),
        Route(f"{env}/migrate", migrate, methods=["POST"]),
        Route(f"{env}/branch", branch, methods=["POST"]),
    ]
