"""Pull/merge requests through each forge's REST API, against a local fake forge.

The fake answers like the real APIs' documented success responses and records what it was
sent; only loopback is used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.gitops import changes
from reconciler.gitops.forges import Forge
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.world import acme_state_remote

pytestmark = pytest.mark.integration


class FakeForge:
    def __init__(self, status: int = 201) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                forge.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                answer = {"html_url": "http://forge.test/pr/1", "web_url": "http://forge.test/mr/1"}
                data = json.dumps(answer).encode()
                self.send_response(forge.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeForge]:
    forge = FakeForge()
    yield forge
    forge.close()


@pytest.mark.parametrize(
    ("kind", "path", "auth_header", "auth_value", "fields", "url"),
    [
        (
            "github",
            "/repos/acme/state/pulls",
            "Authorization",
            "Bearer tok",
            {"head": "odooops/change-1", "base": "main"},
            "http://forge.test/pr/1",
        ),
        (
            "gitea",
            "/repos/acme/state/pulls",
            "Authorization",
            "token tok",
            {"head": "odooops/change-1", "base": "main"},
            "http://forge.test/pr/1",
        ),
        (
            "gitlab",
            "/projects/acme%2Fstate/merge_requests",
            "PRIVATE-TOKEN",
            "tok",
            {"source_branch": "odooops/change-1", "target_branch": "main"},
            "http://forge.test/mr/1",
        ),
    ],
)
def test_each_forge_gets_its_documented_request(
    fake: FakeForge,
    kind: str,
    path: str,
    auth_header: str,
    auth_value: str,
    fields: dict[str, str],
    url: str,
) -> None:
    forge = Forge(kind, fake.url, "acme/state", "tok")
    assert forge.open_change_request("odooops/change-1", "main", "t", "b") == url
    [sent] = fake.requests
    assert sent["path"] == path
    assert sent["headers"][auth_header] == auth_value
    assert fields.items() <= sent["body"].items()


def test_a_refusal_is_a_structured_error_without_the_token(fake: FakeForge) -> None:
    fake.status = 403
    with pytest.raises(OdooOpsError) as info:
        Forge("github", fake.url, "acme/state", "s3cret-token").open_change_request(
            "b", "main", "t", "b"
        )
    assert info.value.code == "forge_failed"
    assert "s3cret-token" not in info.value.render()


def test_a_protected_write_opens_a_pull_request(fake: FakeForge, tmp_path: Path) -> None:
    bare = acme_state_remote(tmp_path, {"production": "branch: main\n"})
    writer = StateWriter(
        GitSource(f"file://{bare}", tmp_path / "c"),
        "main",
        Forge("github", fake.url, "acme/state", "tok"),
    )
    result = writer.submit(
        changes.Operation("suspend", EnvKey("acme", "production")),
        Author("Ann", "ann@acme.example"),
        request_id="r9",
    )
    assert result.url == "http://forge.test/pr/1"
    [sent] = fake.requests
    assert sent["body"]["head"] == f"odooops/change-{result.change_request_id}"
    assert sent["body"]["title"] == "chore(env): suspend acme/production"
