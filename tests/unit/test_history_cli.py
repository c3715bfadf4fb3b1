"""``odooops history`` and ``odooops rollback`` as a user reads them, over a stand-in API client
that answers what the daemon's API answers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reconciler.cli import history
from reconciler.cli.main import main
from reconciler.core.model import EnvKey
from tests.unit.test_cli import cells

V1, V2, V3 = "1" * 40, "2" * 40, "3" * 40


def item(revision: str, health: str, **extra: Any) -> dict[str, Any]:
    return {
        "revision": revision,
        "image": f"odooops/acme:{revision[:16]}",
        "image_id": f"sha256:{revision}",
        "deployed_at": "2026-12-01T12:00:00+00:00",
        "health": health,
        "judged_at": "2026-12-01T12:01:00+00:00",
        "reason": "",
        "attempt": False,
        "current": False,
        "state_commit": "f" * 40,
        "commit": {
            "sha": "f" * 40,
            "author": "Ann Integrator <ann@acme.example>",
            "date": "2026-12-01T11:59:00+00:00",
            "message": "feat(deploy): deploy the branch head to acme/prod",
        },
        "retained": True,
        "kept_data": False,
        "backup": None,
        **extra,
    }


HISTORY = {
    "environment": "acme/prod",
    "current": V3,
    "items": [
        item(V3, "failed", attempt=True, current=True, reason="deploy_failed: not healthy"),
        item(V2, "healthy", kept_data=True),
        item(V1, "healthy", retained=False, backup="2026-12-01-10-00"),
    ],
}


class Client:
    """What the commands ask of ``ApiClient``: the answers, and the requests made."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.answer = answer or {}
        self.requests: list[tuple[str, str, Any]] = []

    def resolve(self, name: str, *, project: str | None = None) -> EnvKey:
        return EnvKey("acme", name.rpartition("/")[2])

    def get(self, path: str) -> dict[str, Any]:
        assert path == "/environments/acme/prod/history"
        return HISTORY

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        self.requests.append((method, path, body))
        return self.answer


def test_history_shows_each_version_its_health_and_what_is_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(history, "_client", lambda: Client())
    assert main(["history", "prod"]) == 0
    shown = capsys.readouterr().out
    table = cells(shown)
    assert table[0] == ["REVISION", "DEPLOYED", "HEALTH", "IMAGE", "DATA", "STATE COMMIT"]
    v3, *_ = [r for r in table if r[0].startswith(V3[:12])]
    assert v3[0] == f"{V3[:12]} *" and v3[2] == "failed (never served)" and v3[3] == "-"
    v2 = next(r for r in table if r[0] == V2[:12])
    assert (v2[2], v2[3], v2[4]) == ("healthy", V2[:12], "kept")
    v1 = next(r for r in table if r[0] == V1[:12])
    assert v1[3] == f"{V1[:12]} (collected)" and v1[4] == "backup 2026-12-01-10-00"
    assert "odooops rollback acme/prod --to REV" in " ".join(shown.split())


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_history_as_json_or_yaml_is_the_api_s_document(
    output: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(history, "_client", lambda: Client())
    assert main(["history", "acme/prod", "-o", output]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == HISTORY


def test_a_protected_rollback_says_which_change_request_to_approve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(
        {
            "commit": "c" * 40,
            "branch": "odooops/change-1a2b",
            "change_request": True,
            "change_request_id": "1a2b",
            "request_id": "r1",
            "environment": "acme/prod",
            "status": "/v1/environments/acme/prod/status",
            "rollback": {
                "from": V3,
                "to": V2,
                "image": f"odooops/acme:{V2[:16]}",
                "image_id": f"sha256:{V2}",
                "data": "backup",
                "backup": "2026-12-01-10-00",
            },
        }
    )
    monkeypatch.setattr(history, "_client", lambda: client)
    assert main(["rollback", "prod", "--to", V2[:8], "--with-data", "--confirm"]) == 0
    assert client.requests == [
        (
            "POST",
            "/environments/acme/prod/rollback-version",
            {"with_data": True, "confirm": True, "to": V2[:8]},
        )
    ]
    said = " ".join(capsys.readouterr().out.split())
    assert "change request 1a2b" in said
    assert "odooops requests approve 1a2b --state-repo URL" in said
    assert "backup 2026-12-01-10-00 is restored" in said
