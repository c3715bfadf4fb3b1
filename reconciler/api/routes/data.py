"""API routes of the database lifecycle: backups, restores, copies, Odoo dumps, caught mail.

Unlike writes to the desired state, these act on live data, so they are not commits: a backup,
a restore or a copy runs as a background job (202 with ``/v1/jobs/<id>``; ``?wait=true`` waits
for it), and what it did is recorded as events of the environment. The protection rules are
the data plane's own (``reconciler.data.operations``); this module parses, authorises and streams.

An environment the daemon does not know is refused before anything starts (404
``unknown_environment``): a job for it would only fail at its first step, and a listing of its
backups or mail would be an empty list that reads like an answer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from reconciler.api.auth import Principal, authorize, check_production_write
from reconciler.api.context import (
    NAME,
    WAIT,
    ApiContext,
    declared,
    env_key,
    query_of,
    unknown,
    wait_params,
)
from reconciler.api.httpbody import InvalidRequest, json_object
from reconciler.api.writes import commit_write
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.engine.jobs import Job, JobStore, Progress, wait
from reconciler.gitops import changes

_BACKUP_ID = re.compile(
    r"latest|[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}(-[0-9]{2}(-[0-9]+)?)?"
)
_JOB_ID = re.compile(r"[0-9a-f]{1,16}-[0-9]{1,9}")
MAX_IMPORT_BYTES = 64 * 1024**3
STALLED_SECONDS = 300


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    """The routes, mounted by ``reconciler.api.app.create_app`` under ``env`` (the env path)."""
    guarded, data, state = ctx.guarded, ctx.plane.data, ctx.plane.state
    job_store, upload_dir = ctx.plane.jobs, ctx.upload_dir

    class _Jobs:
        """The store, asked for only when a route runs (the plane may be a test stand-in)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(job_store(), name)

    jobs = cast(JobStore, _Jobs())

    def sibling(request: Request, name: object, field: str) -> EnvKey:
        """The other environment of a copy or restore: ``staging`` or ``acme/staging``, of the
        same project (data moves within one project)."""
        project = env_key(request).project
        if isinstance(name, str) and name.startswith(f"{project}/"):
            name = name[len(project) + 1 :]
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InvalidRequest(
                f"{field} must be an environment of project {project}: ENV or {project}/ENV",
                remediation=f'send {{"{field}": "staging"}} or {{"{field}": "{project}/staging"}}',
            )
        return EnvKey(project, name)

    def known(key: EnvKey) -> EnvKey:
        """An environment declared in the last valid state, or one the daemon reports on."""
        if str(key) not in ctx.plane.statuses() and declared(ctx.plane, key) is None:
            raise unknown(key)
        return key

    async def resolved(key: EnvKey) -> EnvKey:
        """An environment the last pass resolved, so a job on it can start: 404
        ``unknown_environment`` when the daemon does not know it, 409 ``environment_held``
        when it is declared but held (the reason is in the message)."""
        try:
            await run_in_threadpool(data().environment, key)
        except OdooOpsError as exc:
            if exc.code == "environment_not_found":
                raise unknown(key) from None
            raise
        return key

    def protected(key: EnvKey) -> bool:
        config = state()
        return any(s.key == key and s.protected for s in config.environments) if config else False

    def guard_target(request: Request, key: EnvKey) -> Principal:
        principal: Principal = request.state.principal
        authorize(principal, "db:restore", str(key))
        if protected(key):
            client = request.client.host if request.client else ""
            check_production_write(principal, client, ctx.production_allowlist)
        return principal

    async def started(job: Job, waiting: bool, timeout: float) -> Response:
        """202 with the job at once, or with ``?wait=true`` 200 once it ended (the query was
        read before the job started: a malformed one must not leave a job behind)."""
        if waiting:
            done = await run_in_threadpool(wait, lambda: jobs.get(job.id), timeout)
            if done is not None and done.state != "running":
                return JSONResponse(done.to_dict(), status_code=200)
        latest = jobs.get(job.id) or job
        return JSONResponse(latest.to_dict(), status_code=202)

    @guarded("env:read", per_env=True)
    async def list_backups(request: Request) -> Response:
        """Backups of the environment, newest first, good and failed, with their manifests."""
        items = await run_in_threadpool(data().backups, known(env_key(request)))
        return JSONResponse({"items": items})

    @guarded("db:backup", per_env=True, query=WAIT)
    async def create_backup(request: Request) -> Response:
        """Back up now: a job that dumps, encrypts, uploads and verifies."""
        waiting, timeout = wait_params(request)
        body = await json_object(request, {"reason": str})
        reason = body.get("reason", "manual")
        if not 1 <= len(reason) <= 200:
            raise InvalidRequest(
                "reason must be a string of 1 to 200 characters",
                remediation='send {"reason": "before the migration"}',
            )
        key, principal = await resolved(env_key(request)), request.state.principal
        ops = data()
        job = jobs.submit(
            "backup",
            str(key),
            principal.subject,
            lambda progress: ops.backup(key, f"{reason} (by {principal.subject})", progress),
        )
        return await started(job, waiting, timeout)

    @guarded("db:restore", per_env=True, query=WAIT)
    async def restore_backup(request: Request) -> Response:
        """Restore a backup (of this or another environment) into this environment.

        The source (``from``) need not be known: the backups of an environment that was
        removed are still there to restore."""
        waiting, timeout = wait_params(request)
        body = await json_object(
            request, {"backup": str, "from": str, "confirm": bool}, required={"backup"}
        )
        backup_id = body["backup"]
        if not _BACKUP_ID.fullmatch(backup_id):
            raise InvalidRequest(
                "backup must be a backup id such as 2026-02-12-03-00, or latest",
                remediation="odooops db backups ENV  (lists the ids)",
            )
        target = env_key(request)
        source = sibling(request, body["from"], "from") if "from" in body else target
        confirm = body.get("confirm", False)
        principal = guard_target(request, target)
        if source != target:  # another environment's data is read: as a backup of it would
            authorize(principal, "db:backup", str(source))
        await resolved(target)
        ops = data()
        job = jobs.submit(
            "restore",
            str(target),
            principal.subject,
            lambda progress: ops.restore(
                target, backup_id, source, confirm=confirm, progress=progress
            ),
        )
        return await started(job, waiting, timeout)

    @guarded("db:restore", per_env=True, query=WAIT)
    async def rollback_data(request: Request) -> Response:
        """Put back the data an update on a copy replaced (kept for ``keep_previous``), with
        the code it was at: the kept data is marked, then the environment is pinned to its
        revision by a commit (through a change request when protected), and the daemon swaps
        the data back when it deploys that revision. 202 with the commit, as any write."""
        body = await json_object(
            request, {"confirm": bool, "pr": bool, "change_request": str}, required=set()
        )
        key = env_key(request)
        principal = guard_target(request, key)
        authorize(principal, "deploy", str(key))
        await resolved(key)
        ops = data()
        kept = await run_in_threadpool(ops.request_rollback, key, body.get("confirm", False))
        op = changes.Operation("deploy", key, {"revision": str(kept["revision"])})
        try:
            return await commit_write(ctx, request, op, body)
        except BaseException:
            await run_in_threadpool(ops.cancel_rollback, key)
            raise

    @guarded("db:restore", per_env=True, query=WAIT)
    async def clone_database(request: Request) -> Response:
        """Copy this environment's database and filestore onto another (never a protected one)."""
        waiting, timeout = wait_params(request)
        body = await json_object(request, {"to": str}, required={"to"})
        source = env_key(request)
        target = sibling(request, body["to"], "to")
        principal = guard_target(request, target)
        await resolved(source)
        await resolved(target)
        ops = data()
        job = jobs.submit(
            "clone",
            str(target),
            principal.subject,
            lambda progress: ops.clone(source, target, progress),
        )
        return await started(job, waiting, timeout)

    @guarded("db:backup", per_env=True)
    async def export_database(request: Request) -> Response:
        """The environment's data in Odoo's database-manager format (a zip), streamed.

        A protected environment's export is its live data, neither encrypted nor masked: it
        is allowed only from the production allowlist, like a write, and the data plane runs
        it under the environment's operation lock (never mid-restore).
        """
        key = await resolved(env_key(request))
        if protected(key):
            client = request.client.host if request.client else ""
            check_production_write(request.state.principal, client, ctx.production_allowlist)
        pipe = _Pipe()
        ops = data()

        def produce() -> None:
            try:
                ops.export(key, cast(BinaryIO, pipe))
            except BaseException as exc:  # handed to the response: before or mid stream
                pipe.fail(exc)
            else:
                pipe.close()

        threading.Thread(target=produce, name="export", daemon=True).start()
        first = await run_in_threadpool(pipe.first)
        filename = f"{key.project}-{key.env}.zip"
        return StreamingResponse(
            iterate_in_threadpool(pipe.rest(first)),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @guarded("db:restore", per_env=True, query={*WAIT, "confirm"})
    async def import_database(request: Request) -> Response:
        """Replace this environment's data with an Odoo dump (zip or pg_dump file).

        Everything is checked before the upload is read: it may be many gigabytes."""
        key = env_key(request)
        waiting, timeout = wait_params(request)
        confirm = query_of(request).flag("confirm")
        principal = guard_target(request, key)
        await resolved(key)
        if upload_dir is not None:  # beside the data, not in a small /tmp
            upload_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="odooops-import-", suffix=".upload", dir=upload_dir)
        path = Path(name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_IMPORT_BYTES:
                        raise InvalidRequest(
                            "the dump is larger than 64 GiB",
                            remediation="import the database alone (a pg_dump -Fc file, "
                            "without the filestore): odooops db import ENV FILE.dump",
                        )
                    out.write(chunk)
            if size == 0:
                raise InvalidRequest(
                    "the request body is empty: send the dump file",
                    remediation="odooops db import ENV FILE.zip",
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        ops = data()

        def work(progress: Progress) -> dict[str, Any]:
            try:
                return ops.import_dump(key, path, confirm=confirm, progress=progress)
            finally:
                path.unlink(missing_ok=True)

        job = jobs.submit("import", str(key), principal.subject, work)
        return await started(job, waiting, timeout)

    @guarded("env:read", per_env=True, query={"limit", "q"})
    async def list_mail(request: Request) -> Response:
        """Mail the environment tried to send, caught by the platform, newest first."""
        query = query_of(request)
        limit = query.whole("limit", 50, 1, 500, remediation="?limit=50")
        text = query.text("q")
        key = known(env_key(request))
        items = await run_in_threadpool(data().mail_list, key, limit, text)
        return JSONResponse({"items": items})

    @guarded("env:read", per_env=True)
    async def show_mail(request: Request) -> Response:
        """One caught message: headers, text and HTML bodies, attachment names."""
        mail_id = str(request.path_params["id"])
        doc = await run_in_threadpool(data().mail_get, known(env_key(request)), mail_id)
        return JSONResponse(doc)

    @guarded("env:read")
    async def list_jobs(request: Request) -> Response:
        """Data jobs (backups, restores, copies, imports) of this daemon, newest first."""
        principal: Principal = request.state.principal
        items = [j.to_dict() for j in jobs.list() if principal.may_touch(j.environment)]
        return JSONResponse({"items": items})

    @guarded("env:read")
    async def show_job(request: Request) -> Response:
        """One job: its phase, progress, result or structured error."""
        job_id = str(request.path_params["id"])
        job = jobs.get(job_id) if _JOB_ID.fullmatch(job_id) else None
        principal: Principal = request.state.principal
        if job is None or not principal.may_touch(job.environment):
            raise OdooOpsError(
                f"no job {job_id}", code="not_found", remediation="odooops jobs (lists them)"
            )
        return JSONResponse(job.to_dict())

    return [
        Route(f"{env}/backups", list_backups, methods=["GET"]),
        Route(f"{env}/backups", create_backup, methods=["POST"]),
        Route(f"{env}/restore", restore_backup, methods=["POST"]),
        Route(f"{env}/clone", clone_database, methods=["POST"]),
        Route(f"{env}/rollback", rollback_data, methods=["POST"]),
        Route(f"{env}/export", export_database, methods=["GET"]),
        Route(f"{env}/import", import_database, methods=["POST"]),
        Route(f"{env}/mail", list_mail, methods=["GET"]),
        Route(f"{env}/mail/{{id}}", show_mail, methods=["GET"]),
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{id}", show_job, methods=["GET"]),
    ]


class _Pipe:
    """A writable file for the export thread, read as chunks by the streaming response.

    The first chunk (or the first error) is awaited before the response starts, so a missing
    environment or an unreachable database is a proper error answer, not a broken download.
    """

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=16)

    def write(self, data: bytes) -> int:
        if data:
            try:  # a client that went away stops reading: end the export, and pg_dump with it
                self._queue.put(bytes(data), timeout=STALLED_SECONDS)
            except queue.Full:
                raise OdooOpsError(
                    f"the export's client read nothing for {STALLED_SECONDS} s",
                    code="export_failed",
                    remediation="odooops db export ENV -f FILE.zip",
                ) from None
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        with contextlib.suppress(queue.Full):  # nobody reads any more: nothing to tell
            self._queue.put(self._END, timeout=STALLED_SECONDS)

    def fail(self, exc: BaseException) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(exc, timeout=STALLED_SECONDS)

    def first(self) -> bytes | None:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return None if item is self._END else item  # type: ignore[return-value]

    def rest(self, first: bytes | None) -> Iterator[bytes]:
        if first is None:
            return
        yield first
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                # Mid-stream: the response has started; cutting it leaves a zip without its
                # central directory, which every unzip refuses.
                raise item
            yield item  # type: ignore[misc]
