"""``GET .../golden`` and ``POST .../golden/refresh`` over an in-memory data plane."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.ratelimit import RateLimiter
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import DesiredEnvironment, EnvKey, Tier
from reconciler.engine.jobs import JobStore, Progress
from tests.factories import UncalledPlane, desired
from tests.unit.test_images_api import AUTHORITY, bearer, conforms

PROD = "/v1/environments/acme/prod/golden"


class Data:
    """Production and staging of acme; a golden copy of production once refreshed."""

    def __init__(self) -> None:
        self.refreshed: list[str] = []

    def environment(self, key: EnvKey) -> DesiredEnvironment:
        tiers = {"prod": Tier.PRODUCTION, "staging": Tier.STAGING}
        if key.project != "acme" or key.env not in tiers:
            raise OdooOpsError(f"{key} is not declared", code="environment_not_found")
        return desired(key.env, tiers[key.env])

    def golden_status(self, key: EnvKey) -> dict[str, Any]:
        if self.environment(key).spec.tier is not Tier.PRODUCTION:
            raise OdooOpsError(f"{key} is a staging environment", code="golden_not_production")
        doc: dict[str, Any] = {
            "source": str(key),
            "kept": True,
            "why": ["copied by staging"],
            "refresh": "24h",
            "database": "odooops_golden_0123456789ab",
            "exists": bool(self.refreshed),
        }
        if self.refreshed:
            doc.update(refreshed_at="2026-12-05T21:00:00+00:00", age_seconds=60, size_bytes=1)
        return doc

    def refresh_golden(self, key: EnvKey, reason: str, progress: Progress) -> dict[str, Any]:
        self.refreshed.append(reason)
        return {"source": str(key), "masked_rows": 3}


class Plane(UncalledPlane):
    def __init__(self) -> None:
        self.store = JobStore(workers=1)
        self.ops = Data()

    def data(self) -> Any:
        return self.ops

    def jobs(self) -> Any:
        return self.store


@pytest.fixture
def plane() -> Plane:
    return Plane()


@pytest.fixture
def client(plane: Plane) -> TestClient:
    app = create_app(plane, AUTHORITY, limiter=RateLimiter(rate=1e9, burst=10**9))
    return TestClient(app)


def test_the_golden_copy_is_shown_then_refreshed_as_a_job(client: TestClient, plane: Plane) -> None:
    shown = client.get(PROD, headers=bearer("env:read"))
    assert shown.status_code == 200
    conforms(shown.json(), "GoldenCopy")
    assert shown.json()["exists"] is False
    done = client.post(f"{PROD}/refresh?wait=true", headers=bearer("db:backup"))
    assert done.status_code == 200, done.text
    conforms(done.json(), "Job")
    assert (done.json()["kind"], done.json()["state"]) == ("golden-refresh", "succeeded")
    assert plane.ops.refreshed == ["on demand (by ann)"]
    again = client.get(PROD, headers=bearer("env:read")).json()
    conforms(again, "GoldenCopy")
    assert again["exists"] is True and again["age_seconds"] == 60


def test_only_production_has_one_and_reading_it_is_not_refreshing_it(
    client: TestClient, plane: Plane
) -> None:
    staging = client.get("/v1/environments/acme/staging/golden", headers=bearer("env:read"))
    assert (staging.status_code, staging.json()["error"]) == (409, "golden_not_production")
    refused = client.post(f"{PROD}/refresh", headers=bearer("env:read"))
    assert refused.status_code == 403 and plane.ops.refreshed == []
    unknown = client.post("/v1/environments/acme/nope/golden/refresh", headers=bearer("db:backup"))
    assert unknown.status_code == 404 and plane.ops.refreshed == []
