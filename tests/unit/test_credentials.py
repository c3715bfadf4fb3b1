"""``odooops env credentials`` and its routes: who may see or rotate an environment's Odoo
administrator password, and the audit record every access leaves.

The API runs in process over an in-memory data plane; the audit log is the daemon's real
token audit log (``RevocationList``) in a temporary data directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.revocations import AUDIT_FILE, RevocationList
from reconciler.cli import client as cli_client
from reconciler.cli.main import main
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey, Tier
from tests.factories import PROJECT, MemoryData, UncalledPlane, spec

SECRET = b"k" * 32
QA, PROD = "/v1/environments/acme/qa/credentials", "/v1/environments/acme/prod/credentials"
STATE = SimpleNamespace(
    projects={"acme": PROJECT},
    environments=(spec("prod"), spec("qa", Tier.STAGING)),
)


class Data(MemoryData):
    """The in-memory data plane, whose database may refuse a new password."""

    def __init__(self) -> None:
        super().__init__(lambda: STATE)  # type: ignore[arg-type,return-value]
        self.refuse = False

    def rotate_admin_password(self, key: EnvKey) -> dict[str, Any]:
        if self.refuse:
            raise OdooOpsError(
                "setting the administrator's password failed",
                code="admin_password_failed",
                remediation="pg_isready",
            )
        return super().rotate_admin_password(key)


class Plane(UncalledPlane):
    def __init__(self) -> None:
        self._data = Data()

    def state(self) -> Any:
        return STATE

    def data(self) -> Data:
        return self._data


@pytest.fixture
def plane() -> Plane:
    return Plane()


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path


def app_of(plane: Plane, audit_dir: Path | None, allowlist: tuple[str, ...] = ()) -> Starlette:
    revocations = RevocationList(audit_dir) if audit_dir is not None else None
    authority = TokenAuthority(AuthConfig(secret=SECRET), revocations=revocations)
    return create_app(plane, authority, production_allowlist=allowlist)


@pytest.fixture
def client(plane: Plane, audit_dir: Path) -> TestClient:
    return TestClient(app_of(plane, audit_dir))


def bearer(*scopes: str, subject: str = "ann") -> dict[str, str]:
    authority = TokenAuthority(AuthConfig(secret=SECRET))
    return {"Authorization": f"Bearer {authority.mint(subject, list(scopes))}"}


def audit(audit_dir: Path) -> list[dict[str, str]]:
    path = audit_dir / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_shell_token_sees_the_login_and_the_view_is_audited_without_the_password(
    client: TestClient, audit_dir: Path
) -> None:
    headers = bearer("shell")
    resp = client.get(QA, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "environment": "acme/qa",
        "login": "admin",
        "password": "pw-qa-0",
        "verified": True,
    }
    assert resp.headers["cache-control"] == "no-store"
    [entry] = audit(audit_dir)
    jti = TokenAuthority(AuthConfig(secret=SECRET)).verify(headers["Authorization"][7:]).token_id
    assert entry["event"] == "credentials_viewed"
    assert (entry["environment"], entry["subject"], entry["jti"]) == ("acme/qa", "ann", jti)
    assert entry["client"] == "testclient" and entry["time"]
    assert "pw-qa" not in (audit_dir / AUDIT_FILE).read_text()


@pytest.mark.parametrize("scopes", [["env:read"], ["env:write"], ["deploy"], ["db:backup"]])
def test_read_only_and_other_scopes_see_no_credential_and_leave_no_access(
    client: TestClient, audit_dir: Path, scopes: list[str]
) -> None:
    for method, path in (("GET", QA), ("POST", f"{QA}/rotate")):
        resp = client.request(method, path, headers=bearer(*scopes))
        assert resp.status_code == 403, resp.text
        assert "shell" in resp.json()["message"]
    assert audit(audit_dir) == []


def test_a_token_for_other_environments_is_refused(client: TestClient) -> None:
    token = TokenAuthority(AuthConfig(secret=SECRET)).mint(
        "ann", ["shell"], environments=["acme/prod"]
    )
    resp = client.get(QA, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403


def test_production_s_credential_is_shown_only_inside_the_production_allowlist(
    plane: Plane, audit_dir: Path
) -> None:
    client = TestClient(app_of(plane, audit_dir, allowlist=("10.0.0.0/8",)))
    for method, path in (("GET", PROD), ("POST", f"{PROD}/rotate")):
        resp = client.request(method, path, headers=bearer("shell"))
        assert resp.status_code == 403, resp.text
    assert client.get(QA, headers=bearer("shell")).status_code == 200
    assert [e["environment"] for e in audit(audit_dir)] == ["acme/qa"]


def test_without_an_audit_log_no_credential_is_shown_or_changed(plane: Plane) -> None:
    client = TestClient(app_of(plane, None))
    for method, path in (("GET", QA), ("POST", f"{QA}/rotate")):
        resp = client.request(method, path, headers=bearer("shell"))
        assert resp.status_code == 503
        assert resp.json()["error"] == "audit_unavailable"
        assert "pw-" not in resp.text
    assert plane.data().admin_passwords == {}


def test_an_audit_log_that_cannot_be_written_shows_nothing(
    plane: Plane, audit_dir: Path, client: TestClient
) -> None:
    (audit_dir / AUDIT_FILE).mkdir()  # not a file: every append fails
    resp = client.get(QA, headers=bearer("shell"))
    assert resp.status_code == 503 and resp.json()["error"] == "audit_unavailable"
    assert "pw-" not in resp.text


def test_an_unknown_environment_is_404_and_nothing_is_recorded(
    client: TestClient, audit_dir: Path
) -> None:
    resp = client.get("/v1/environments/acme/nope/credentials", headers=bearer("shell"))
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_environment"
    assert audit(audit_dir) == []


def test_a_rotation_answers_the_new_password_and_is_audited(
    client: TestClient, audit_dir: Path
) -> None:
    before = client.get(QA, headers=bearer("shell")).json()["password"]
    resp = client.post(f"{QA}/rotate", headers=bearer("shell", subject="bob"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["password"] != before
    assert resp.headers["cache-control"] == "no-store"
    assert client.get(QA, headers=bearer("shell")).json()["password"] == resp.json()["password"]
    events = [(e["event"], e["subject"]) for e in audit(audit_dir)]
    assert events == [
        ("credentials_viewed", "ann"),
        ("credentials_rotated", "bob"),
        ("credentials_viewed", "ann"),
    ]


def test_a_failed_rotation_is_its_structured_error_and_recorded_as_failed(
    plane: Plane, client: TestClient, audit_dir: Path
) -> None:
    plane.data().refuse = True
    resp = client.post(f"{QA}/rotate", headers=bearer("shell"))
    assert resp.status_code == 503
    assert resp.json()["error"] == "admin_password_failed"
    failed = audit(audit_dir)[-1]
    assert (failed["event"], failed["error"]) == (
        "credentials_rotate_failed",
        "admin_password_failed",
    )


def test_a_rotation_takes_no_body_fields(client: TestClient) -> None:
    resp = client.post(f"{QA}/rotate", headers=bearer("shell"), json={"password": "mine"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


# ------------------------------------------------------------------------------ the CLI
@pytest.fixture
def cli(plane: Plane, audit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``odooops`` logged in to the in-process API with a token of scopes env:read, shell."""
    app = app_of(plane, audit_dir)

    def in_process(base_url: str, timeout: float, headers: dict[str, str]) -> httpx.Client:
        return TestClient(app, base_url=base_url, headers=headers)

    monkeypatch.setattr(cli_client.httpx, "Client", in_process)
    monkeypatch.setenv("ODOOOPS_API", "http://testserver")
    monkeypatch.setenv("ODOOOPS_TOKEN", bearer("env:read", "shell")["Authorization"][7:])


@pytest.mark.usefixtures("cli")
def test_the_cli_prints_the_login_and_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "credentials", "acme/qa"]) == 0
    assert capsys.readouterr().out.splitlines() == ["login:    admin", "password: pw-qa-0"]


@pytest.mark.usefixtures("cli")
def test_the_cli_rotates_then_prints_the_new_password(
    capsys: pytest.CaptureFixture[str], audit_dir: Path
) -> None:
    assert main(["env", "credentials", "acme/qa", "--rotate", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["login"], doc["password"], doc["verified"]) == ("admin", "pw-qa-1", True)
    assert [e["event"] for e in audit(audit_dir)] == ["credentials_rotated"]


@pytest.mark.usefixtures("cli")
def test_the_cli_says_how_to_set_a_password_the_database_does_not_hold(
    plane: Plane, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = plane.data().admin_credentials(EnvKey("acme", "qa"))
    monkeypatch.setattr(plane.data(), "admin_credentials", lambda key: {**shown, "verified": False})
    assert main(["env", "credentials", "qa"]) == 0
    said = capsys.readouterr()
    assert "password: pw-qa-0" in said.out
    assert "odooops env credentials acme/qa --rotate" in " ".join(said.err.split())


@pytest.mark.usefixtures("cli")
def test_the_cli_prints_a_refusal_as_a_structured_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODOOOPS_TOKEN", bearer("env:read")["Authorization"][7:])
    assert main(["env", "credentials", "acme/qa"]) == 2
    said = capsys.readouterr()
    assert "forbidden" in said.err and "password" not in said.out
