"""Schemathesis against the live API, in process, over a real state repository.

Every operation of the served OpenAPI document is called with generated requests, valid and
invalid, under an admin token: none may answer a server error, and every answer must have a
documented status and match its documented schema. Writes make real commits to a throw-away
bare repository, a fresh one per operation. Bounded and derandomised (fixed seed, no example
database) so that CI runs the same cases every time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.applications import Starlette

from reconciler.api.app import RateLimiter, create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.revocations import RevocationList
from reconciler.gitops.gitsource import GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.factories import UncalledPlane
from tests.integration.test_api import Plane
from tests.integration.world import acme_state_remote

pytestmark = pytest.mark.integration
AUTHORITY = TokenAuthority(AuthConfig(secret=b"k" * 32))
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260101,
        "generation": {
            "mode": "all",
            "max-examples": 25,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
    }
)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.response_schema_conformance,
]
# Loaded as clients load it, from the route; that app only serves the document.
schema = schemathesis.openapi.from_asgi(
    "/v1/openapi.json", create_app(UncalledPlane(), AUTHORITY), config=CONFIG
)


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    """The API over a fresh state repository (project acme; environments production and qa),
    with the daemon's token audit log (the credential routes show nothing without one)."""
    bare = acme_state_remote(tmp_path)
    plane = Plane(StateWriter(GitSource(f"file://{bare}", tmp_path / "cache")))
    authority = TokenAuthority(AUTHORITY.config, revocations=RevocationList(tmp_path))
    # One subject sends hundreds of requests here; the limiter is tested in test_api.py.
    return create_app(plane, authority, limiter=RateLimiter(rate=1e6, burst=1_000_000))


@schema.parametrize()
# One repository per operation, shared by its examples on purpose: each write lands on the
# commits of the ones before, as it would on a live daemon.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_server_error_and_only_documented_answers(
    app: Starlette, case: schemathesis.Case
) -> None:
    token = AUTHORITY.mint("fuzz", ["admin"], name="Fuzz", email="fuzz@acme.example")
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
