"""The CLI's side of the API: where it is, who we are, and the structured errors back.

``odooops login`` stores the API URL and token in ``~/.config/odooops/credentials.json``
(0600, in a 0700 directory); ``$ODOOOPS_API`` and ``$ODOOOPS_TOKEN`` win over the file. An
error answer is turned back into the same ``OdooOpsError`` the server raised, so the CLI
prints the server's code, message and remediation unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from reconciler.core.errors import Location, OdooOpsError, Problem
from reconciler.core.model import EnvKey
from reconciler.gitops import changes

CONFIG_HOME = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "odooops"
CREDENTIALS = CONFIG_HOME / "credentials.json"


class ApiUnreachable(OdooOpsError):
    code = "api_unreachable"


@dataclass(frozen=True)
class Login:
    api: str
    token: str


def save_login(login: Login, path: Path = CREDENTIALS) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"api": login.api, "token": login.token}, fh)
    os.replace(tmp, path)


def load_login(path: Path = CREDENTIALS) -> Login:
    api, token = os.environ.get("ODOOOPS_API"), os.environ.get("ODOOOPS_TOKEN")
    if (api is None or token is None) and path.exists():
        saved = json.loads(path.read_text())
        api, token = api or saved.get("api"), token or saved.get("token")
    if not api or not token:
        raise OdooOpsError(
            "not logged in to an OdooOps API",
            code="not_logged_in",
            remediation="odooops login --api http://127.0.0.1:8089 --token TOKEN "
            "(or pass --state-repo URL to commit directly)",
        )
    return Login(api.rstrip("/"), token)


class ApiClient:
    def __init__(self, login: Login, timeout: float = 60.0) -> None:
        self.login = login
        self._http = httpx.Client(
            base_url=login.api,
            timeout=timeout,
            headers={"Authorization": f"Bearer {login.token}"},
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._http.request(method, f"/v1{path}", json=body)
        except httpx.HTTPError as exc:
            raise ApiUnreachable(
                f"cannot reach the OdooOps API at {self.login.api}: {type(exc).__name__}",
                remediation=f"curl {self.login.api}/v1/health (is the daemon running with "
                "--listen?)",
            ) from None
        if resp.status_code >= 400:
            raise _error_of(resp)
        return resp.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def resolve(self, name: str, *, project: str | None = None) -> EnvKey:
        """``name`` as every command reads it (``changes.resolve_name``), against the projects
        and environments the daemon knows; the environments are only asked for when a bare
        name has to be looked up among several projects."""

        def environments() -> Iterator[EnvKey]:
            for item in self.get("/environments")["items"]:
                yield EnvKey(str(item["project"]), str(item["env"]))

        projects = [str(p["name"]) for p in self.get("/projects")["items"]]
        return changes.resolve_name(name, projects, environments(), project=project)

    def download(self, path: str, dest: BinaryIO) -> int:
        """Stream a binary answer into ``dest``; returns the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", f"/v1{path}", timeout=None) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_of(resp)
                for chunk in resp.iter_bytes(1 << 20):
                    dest.write(chunk)
                    written += len(chunk)
        except httpx.HTTPError as exc:
            raise ApiUnreachable(
                f"lost the OdooOps API at {self.login.api} mid-download: {type(exc).__name__}",
                remediation=f"curl {self.login.api}/v1/health, then retry",
            ) from None
        return written

    def upload(self, path: str, source: Path, params: dict[str, str]) -> Any:
        """Send a file as the request body, streamed (dumps can be many GB)."""

        def chunks() -> Iterator[bytes]:
            with source.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk

        try:
            resp = self._http.post(
                f"/v1{path}",
                params=params,
                content=chunks(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=None,
            )
        except httpx.HTTPError as exc:
            raise ApiUnreachable(
                f"cannot reach the OdooOps API at {self.login.api}: {type(exc).__name__}",
                remediation=f"curl {self.login.api}/v1/health",
            ) from None
        if resp.status_code >= 400:
            raise _error_of(resp)
        return resp.json()

    def lines(self, path: str, params: dict[str, str]) -> Iterator[str]:
        """A streamed text answer, line by line (``logs --follow`` never ends by itself)."""
        try:
            with self._http.stream("GET", f"/v1{path}", params=params, timeout=None) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_of(resp)
                yield from resp.iter_lines()
        except httpx.HTTPError as exc:
            raise ApiUnreachable(
                f"lost the OdooOps API at {self.login.api}: {type(exc).__name__}",
                remediation=f"curl {self.login.api}/v1/health",
            ) from None


def _error_of(resp: httpx.Response) -> OdooOpsError:
    try:
        doc = resp.json()
        problems = tuple(
            Problem(
                p["code"],
                p["message"],
                Location(p["file"], p.get("line"), p.get("column"), p.get("key")),
                p.get("remediation", ""),
            )
            for p in doc.get("problems", [])
        )
        return OdooOpsError(
            str(doc["message"]),
            code=str(doc["error"]),
            problems=problems,
            remediation=str(doc.get("remediation", "")),
            retryable=resp.status_code >= 500,
        )
    except (ValueError, KeyError, TypeError):
        return OdooOpsError(
            f"the API answered {resp.status_code}", code="api_error", remediation="odooops status"
        )
