"""The CLI as a user reads it: the commands that need no daemon (validate, local status), and
``routes`` against the API run in process over a control plane that answers a fixed table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.cli import client as cli_client
from reconciler.cli.main import main
from reconciler.engine.status import (
    Condition,
    DaemonStatus,
    EnvironmentStatus,
    Health,
    StatusStore,
    Sync,
)
from tests.factories import UncalledPlane


def cells(shown: str) -> list[list[str]]:
    """The rows of a rich table as lists of cell texts (header first)."""
    return [
        [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        for line in shown.splitlines()
        if line.startswith(("│", "┃"))
    ]


@pytest.mark.parametrize("url", ["file:///srv/state.git", "git@github.com:acme/state.git"])
def test_validate_given_a_url_says_to_clone_it(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", url]) == 2
    said = capsys.readouterr().err
    assert "is a repository URL" in said
    assert f"git clone {url} state && odooops validate state" in said


def test_validate_given_no_directory_says_what_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "nothing")]) == 2
    assert "state repository checkout" in capsys.readouterr().err


def test_status_shows_serving_and_wanted_the_last_pass_and_branches_without_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed update: the old commit serves, the new one is wanted; the pass figures are the
    daemon's own; an expired branch is named with why."""
    store = StatusStore(tmp_path / "status.json")
    store.put(
        "acme/staging",
        EnvironmentStatus(
            "acme",
            "staging",
            branch="release/v1",
            tier="staging",
            revision="b" * 40,
            serving="a" * 40,
            sync=Sync.OUT_OF_SYNC,
            health=Health.HEALTHY,
            conditions=(Condition("Ready", False, "deploy_failed", "odoo -u exited 1"),),
        ),
    )
    store.set_daemon(
        DaemonStatus(
            state_commit="c" * 40,
            last_poll="2026-11-25T12:00:00+00:00",
            last_pass_seconds=2.5,
            passes=4,
            expired={"acme/feature-old": "branch feature/old has had no commit for 7 days"},
        )
    )
    assert main(["status", "--data-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    header, row = cells(shown)
    assert header[3:5] == ["SERVING", "WANTED"]
    assert row[:5] == ["acme/staging", "release/v1", "staging", "a" * 12, "b" * 12]
    assert "last pass took 2.5 s; 4 passes" in shown
    assert "acme/feature-old: no environment: branch feature/old has had no commit" in shown
    assert "acme/staging: deploy_failed: odoo -u exited 1" in shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("staging", "acme/staging"),
        ("acme/staging", "acme/staging"),
        ("feature/crm", "acme/feature-crm"),
    ],
)
def test_status_of_one_environment_takes_any_form_of_its_name(
    tmp_path: Path, name: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = StatusStore(tmp_path / "status.json")
    store.put("acme/staging", EnvironmentStatus("acme", "staging", branch="release/v1"))
    store.put("acme/feature-crm", EnvironmentStatus("acme", "feature-crm", branch="feature/crm"))
    store.put("acme/production", EnvironmentStatus("acme", "production", branch="main"))
    assert main(["status", "--data-dir", str(tmp_path), name]) == 0
    assert [row[0] for row in cells(capsys.readouterr().out)[1:]] == [shown]


# ------------------------------------------------------------------------------ routes (API)
SECRET = b"k" * 32
IN_30_DAYS = (datetime.now(UTC) + timedelta(days=30, hours=1)).isoformat()


def certificate(host: str, not_after: str | None) -> dict[str, Any]:
    issuer = "acme-v02.api.letsencrypt.org-directory" if not_after else None
    return {
        "host": host,
        "managed": not_after is not None,
        "not_after": not_after,
        "issuer": issuer,
    }


ROUTES: dict[str, Any] = {
    "enabled": True,
    "domain": "apps.example.com",
    "proxy": "odooops-default-proxy",
    "routes": [
        {
            "project": "acme",
            "env": "prod",
            "tier": "production",
            "hosts": ["prod.acme.apps.example.com"],
            "upstreams": ["odooops-acme-prod-odoo", "odooops-acme-prod-odoo-next"],
            "allowlist": ["203.0.113.0/24"],
            "max_body_bytes": 134217728,
            "maintenance": False,
            "certificates": [certificate("prod.acme.apps.example.com", IN_30_DAYS)],
        },
        {
            "project": "acme",
            "env": "qa",
            "tier": "staging",
            "hosts": ["qa.acme.apps.example.com"],
            "upstreams": ["odooops-acme-qa-odoo-next", "odooops-acme-qa-odoo"],
            "allowlist": [],
            "max_body_bytes": 134217728,
            "maintenance": True,
            "certificates": [certificate("qa.acme.apps.example.com", None)],
        },
    ],
}


class RoutesPlane(UncalledPlane):
    """A daemon's control plane that answers ``GET /v1/routes`` with ``doc``."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def routes(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.doc))  # the route filters the copy it is given


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> RoutesPlane:
    """``odooops`` logged in (token scope env:read) to the API served in process."""
    plane = RoutesPlane(ROUTES)
    authority = TokenAuthority(AuthConfig(secret=SECRET))
    app = create_app(plane, authority)

    def in_process(base_url: str, timeout: float, headers: dict[str, str]) -> httpx.Client:
        return TestClient(app, base_url=base_url, headers=headers)

    monkeypatch.setattr(cli_client.httpx, "Client", in_process)
    monkeypatch.setenv("ODOOOPS_API", "http://testserver")
    monkeypatch.setenv("ODOOOPS_TOKEN", authority.mint("ann", ["env:read"]))
    return plane


@pytest.mark.usefixtures("api")
def test_routes_shows_each_environment_s_hosts_upstreams_and_certificate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["routes"]) == 0
    shown = capsys.readouterr().out
    assert "Routes of odooops-default-proxy under apps.example.com" in shown
    # Two upstreams each: an environment's row takes two lines.
    header, prod, prod_next, qa, qa_next = cells(shown)
    assert header == [
        "ENVIRONMENT",
        "TIER",
        "HOSTS",
        "UPSTREAMS",
        "ALLOWLIST",
        "CERTIFICATE",
        "MAINTENANCE",
    ]
    assert prod[:2] + prod[4:] == ["acme/prod", "production", "203.0.113.0/24", "30 days", "-"]
    assert qa[:2] + qa[4:] == ["acme/qa", "staging", "everyone", "pending", "yes"]
    assert qa[2:4] == ["qa.acme.apps.example.com", "odooops-acme-qa-odoo-next"]
    assert (prod_next[3], qa_next[3]) == ("odooops-acme-prod-odoo-next", "odooops-acme-qa-odoo")


@pytest.mark.usefixtures("api")
@pytest.mark.parametrize("output", ["json", "yaml"])
def test_routes_as_json_or_yaml_is_the_api_s_document(
    output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["routes", "-o", output]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == ROUTES


def test_routes_without_ingress_says_how_to_turn_it_on(
    api: RoutesPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    api.doc = {"enabled": False, "domain": None, "proxy": None, "routes": []}
    assert main(["routes"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert said.startswith("ingress is off")
    assert "add an ingress: block to odooops.yaml" in said


def test_routes_with_an_expired_or_missing_certificate_says_so(
    api: RoutesPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    (route,) = api.doc["routes"][:1]
    api.doc = {**ROUTES, "routes": [{**route, "certificates": [certificate("x", expired)]}]}
    assert main(["routes"]) == 0
    assert cells(capsys.readouterr().out)[1][5] == "expired"
