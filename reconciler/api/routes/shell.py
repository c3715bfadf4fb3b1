"""Interactive shells (bash, odoo shell, psql) over a websocket, and their recorded sessions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reconciler.api.auth import authorize
from reconciler.api.context import ApiContext, Query, check_path_names, principal_of, quoted
from reconciler.api.errors import status_of
from reconciler.api.httpbody import InvalidRequest
from reconciler.api.plane import Terminal
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey

SESSIONS = 200
# How many log entries a glob-limited token's listing reads to find its SESSIONS.
SESSIONS_SCAN = 5000


def routes(ctx: ApiContext, env: str) -> list[BaseRoute]:
    plane = ctx.plane

    @ctx.guarded("env:read")
    async def list_sessions(request: Request) -> Response:
        """Shell sessions, newest first: who, which environment, what, when (the latest 200
        of the environments within the token's globs)."""
        principal = principal_of(request)
        scan = SESSIONS if not principal.environments else SESSIONS_SCAN
        entries = await run_in_threadpool(plane.sessions, scan)
        items = [e for e in entries if principal.may_touch(str(e.get("environment", "")))]
        return JSONResponse({"items": items[:SESSIONS]})

    async def shell(websocket: WebSocket) -> None:
        """A shell (bash, odoo shell or psql) through ``docker exec``, like ``docker exec -it``
        (``?tty=true``, the default) or ``docker exec -i`` (``?tty=false``, for piped input).

        From the client: binary frames are input; text frames are controls,
        ``{"resize": [columns, rows]}`` and ``{"eof": true}`` (end of input: without a TTY the
        process reads end-of-file; with one, Ctrl-D is typed). To the client: with a TTY,
        binary frames are the terminal's bytes; without one, each binary frame starts with a
        byte naming its stream (1 stdout, 2 stderr). When the process ends, a text frame
        ``{"exit": status}`` precedes the close. Refusals close with 4401/4403/4404 after a
        text frame holding the structured error. Every session is recorded (who, where, what,
        start, end).
        """
        key = EnvKey(str(websocket.path_params["project"]), str(websocket.path_params["env"]))
        await websocket.accept()
        try:
            principal = ctx.authority.authenticate_header(websocket.headers.get("authorization"))
            ctx.limiter.take(principal.subject)
            check_path_names(websocket.path_params)
            query = Query(websocket.query_params, {"kind", "tty"})
            kind = query.text("kind", max_length=10) or "odoo"
            if kind not in ("odoo", "psql", "bash"):
                raise InvalidRequest(
                    f"unknown shell {quoted(kind)}",
                    remediation="odooops shell ENV --kind psql",
                )
            tty = query.flag("tty", default=True)
            authorize(principal, "shell", str(key))
            session = await run_in_threadpool(plane.shell, key, kind, tty)
        except OdooOpsError as exc:
            await websocket.send_text(json.dumps(exc.to_dict()))
            status = status_of(exc)
            await websocket.close(code=4000 + status if status < 500 else 1011)
            return
        started = datetime.now(UTC).isoformat(timespec="seconds")
        entry = {
            "subject": principal.subject,
            "email": principal.email,
            "environment": str(key),
            "kind": kind,
            "started": started,
        }
        await run_in_threadpool(plane.record_session, {**entry, "event": "start"})

        async def pump_out() -> None:
            try:
                while True:
                    stream, chunk = await run_in_threadpool(session.read)
                    if not chunk:
                        break
                    await websocket.send_bytes(chunk if session.tty else bytes([stream]) + chunk)
                code = await run_in_threadpool(session.exit_code)
                await websocket.send_text(json.dumps({"exit": code}))
                await websocket.close()
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # the client left first

        output = asyncio.create_task(pump_out())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes"):
                    await run_in_threadpool(session.write, message["bytes"])
                elif message.get("text"):
                    await run_in_threadpool(_control, session, message["text"])
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            # Synchronous on purpose: a cancelled task must still record the end.
            session.close()
            output.cancel()
            plane.record_session(
                {**entry, "event": "end", "ended": datetime.now(UTC).isoformat(timespec="seconds")}
            )

    return [
        Route("/v1/sessions", list_sessions, methods=["GET"]),
        WebSocketRoute(f"{env}/shell", shell),
    ]


def _control(session: Terminal, text: str) -> None:
    """A control frame from the client: ``{"resize": [columns, rows]}`` or ``{"eof": true}``;
    anything else is ignored."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            return
        if doc.get("eof") is True:
            session.close_input()
            return
        columns, rows = doc["resize"]
        session.resize(int(columns), int(rows))
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
