"""The HTTP service: what the platform probes, with Odoo's request log.

- `GET /web/health` (auth none) answers 200 {"status": "pass"}; with a non-empty
  `db_server_status` it opens a connection to database `postgres` and answers 500
  {"status": "fail", "db_server_status": false} when that fails (contract, Health).
- `/web/login` and `/web/database/selector` answer a small page; `/` redirects to the login;
  anything else is a 404.
- It listens on --http-interface (all by default) and -p (8069); with --workers > 0 the
  gevent port (8072) serves too, as Odoo's prefork server does.
- The service starts before the databases named by -d are loaded, as Odoo's threaded
  server does, so /web/health passes while an install is still running.
- Memory: Odoo's prefork server sets RLIMIT_AS (the address space, not the resident size) of
  each worker and of the gevent process to --limit-memory-hard when it starts; past it any
  allocation fails. The stand-in has no worker processes: with --workers > 0 its one process
  takes the limit itself once it serves and its databases are loaded (as Odoo's workers are
  forked after the preload). That process already holds the interpreter, psycopg2, the
  thread stacks and malloc arenas, so a limit below its current address space plus
  LIMIT_HEADROOM is raised to that floor; a worker of real Odoo with so low a limit would
  die on its first request instead. With --workers 0 (threaded) Odoo sets no limit, nor
  does the stand-in; --limit-memory-hard 0 means no limit.
- Each request is logged like Odoo's werkzeug logger:
  `werkzeug: 1.2.3.4 - - [18/Jan/2026 10:00:00] "GET /web/health HTTP/1.1" 200 - 1 0.001 0.002`.
"""

from __future__ import annotations

import json
import logging
import resource
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg2

from odoo import logs, sql_db

_logger = logging.getLogger("odoo.service.server")
_werkzeug = logging.getLogger("werkzeug")

PAGE = "<!DOCTYPE html><html><head><title>Odoo</title></head><body>{}</body></html>"
LOGIN = (
    '<form method="post" action="/web/login"><input name="login"/><input name="password"/></form>'
)
ROUTES = {  # path: (status, body, extra headers)
    "/": (303, "Redirecting...", {"Location": "/web/login"}),
    "/web/login": (200, LOGIN, {}),
    "/web/database/selector": (200, "<h1>Select a database</h1>", {}),
}
DISABLED = "The database manager has been disabled by the administrator"
LIMIT_HEADROOM = 256 * 1024 * 1024  # room for request threads above what the process holds


class Handler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/3.0.1"
    sys_version = "Python/3.12"
    config: Any = None  # set per server by start()
    _started, _queries = 0.0, 0

    def do_GET(self) -> None:
        self._started, self._queries = time.time(), 0
        logs.use_database(None)
        url = urlsplit(self.path)
        if url.path == "/web/health":
            self._health(bool(parse_qs(url.query).get("db_server_status", [""])[0]))
            return
        if url.path == "/web/database/selector" and not self.config["list_db"]:
            status, body, headers = 403, DISABLED, {}
        else:
            status, body, headers = ROUTES.get(url.path, (404, "<h1>Not Found</h1>", {}))
        self._send(status, "text/html; charset=utf-8", PAGE.format(body), headers)

    do_POST = do_GET
    do_HEAD = do_GET

    def _health(self, db_server_status: bool) -> None:
        info: dict[str, Any] = {"status": "pass"}
        if db_server_status:
            self._queries = 1
            try:
                sql_db.connect(self.config, "postgres").close()
            except psycopg2.Error:
                info.update(status="fail", db_server_status=False)
            else:
                info["db_server_status"] = True
        status = 200 if info["status"] == "pass" else 500
        self._send(status, "application/json", json.dumps(info), {"Cache-Control": "no-store"})

    def _send(self, status: int, content_type: str, body: str, headers: dict[str, str]) -> None:
        payload = body.encode()
        self.send_response(status)
        for key, value in {"Content-Type": content_type, "Content-Length": str(len(payload)),
                           **headers}.items():  # fmt: skip
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def address_string(self) -> str:
        forwarded = self.headers.get("X-Forwarded-For") if self.config["proxy_mode"] else None
        return forwarded.split(",")[0].strip() if forwarded else self.client_address[0]

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        elapsed = time.time() - (self._started or time.time())
        line = f'"{self.requestline}" {int(code)} {size}'
        self.log_message("%s %d %.3f %.3f", line, self._queries, 0.0, elapsed)

    def log_message(self, format: str, *args: Any) -> None:
        stamp = self.log_date_time_string()
        _werkzeug.info("%s - - [%s] %s", self.address_string(), stamp, format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def start(config: Any) -> list[ThreadingHTTPServer]:
    """Listen and serve in background threads; the caller waits for a signal."""
    handler = type("OdooHandler", (Handler,), {"config": config})
    ports = [config["http_port"]] + ([config["gevent_port"]] if config["workers"] else [])
    servers = [_Server((config["http_interface"] or "0.0.0.0", port), handler) for port in ports]
    for httpd in servers:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    shown = config["http_interface"] or socket.gethostname()
    _logger.info("HTTP service (werkzeug) running on %s:%s", shown, config["http_port"])
    if config["workers"]:
        _logger.info("Evented Service (longpolling) running on %s:%s", shown, config["gevent_port"])
    return servers


def stop(servers: list[ThreadingHTTPServer]) -> None:
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _address_space() -> int:
    """The process's current virtual size (VmSize), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmSize missing from /proc/self/status")


def limit_memory_hard(config: Any) -> None:
    """Odoo's set_limit_memory_hard for a worker: RLIMIT_AS soft limit, hard limit kept."""
    limit = config["limit_memory_hard"]
    if not config["workers"] or not limit:
        return
    soft = max(limit, _address_space() + LIMIT_HEADROOM)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
