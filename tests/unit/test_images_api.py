"""``GET /v1/images`` and ``POST /v1/images/prune`` over an in-memory collector."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from starlette.testclient import TestClient

from reconciler.api.app import OPENAPI_PATH, create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.ratelimit import RateLimiter
from reconciler.core.imagegc import Deployment
from reconciler.core.model import EnvKey
from reconciler.drivers.memory import MemoryContainer, MemoryRuntime
from reconciler.engine.images import ImageCollector
from reconciler.engine.ledger import Ledger
from tests.factories import UncalledPlane

AUTHORITY = TokenAuthority(AuthConfig(secret=b"k" * 32))
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
USED, KEPT, OLD = "odooops/acme:used", "odooops/shop:kept", "odooops/acme:old"


class Plane(UncalledPlane):
    def __init__(self, collector: ImageCollector) -> None:
        self.collector = collector

    def images(self) -> ImageCollector:
        return self.collector


@pytest.fixture
def runtime(tmp_path: Path) -> MemoryRuntime:
    return MemoryRuntime(images={USED, KEPT, OLD})


@pytest.fixture
def client(tmp_path: Path, runtime: MemoryRuntime) -> TestClient:
    """acme/main runs USED; shop/main ran KEPT before; OLD is ours, unused, a month old."""
    ledger = Ledger(tmp_path / "ledger.db")
    runtime.containers["c"] = MemoryContainer("c", EnvKey("acme", "main"), "odoo", image=USED)
    for tag in (USED, KEPT, OLD):
        ledger.put_built(runtime.image_id(tag), tag, tag.split("/")[1].split(":")[0])
    for tag in (KEPT, "odooops/shop:now"):
        ledger.put_deployment(Deployment("shop/main", tag, runtime.image_id(tag), "r", NOW))
    collector = ImageCollector(runtime, ledger, lambda: None, lambda: NOW + timedelta(days=30))
    app = create_app(Plane(collector), AUTHORITY, limiter=RateLimiter(rate=1e9, burst=10**9))
    return TestClient(app)


def conforms(doc: object, schema: str) -> None:
    """``doc`` is valid against the OpenAPI document's schema of that name."""
    components = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))["components"]
    root = {"$ref": f"#/components/schemas/{schema}", "components": components}
    jsonschema.Draft202012Validator(root).validate(doc)


def bearer(*scopes: str, env: tuple[str, ...] = ()) -> dict[str, str]:
    return {"Authorization": f"Bearer {AUTHORITY.mint('ann', list(scopes), environments=env)}"}


def test_the_listing_says_who_uses_and_keeps_each_image(client: TestClient) -> None:
    doc = client.get("/v1/images", headers=bearer("env:read")).json()
    conforms(doc, "ImageList")
    items = {i["tags"][0]: i for i in doc["items"]}
    assert items[USED]["used_by"] == ["acme/main"]
    assert items[KEPT]["kept_for_rollback_by"] == ["shop/main"]
    assert items[OLD]["kept"] == [] and items[OLD]["collect_at"] is not None


def test_a_token_limited_to_some_environments_sees_their_images_only(client: TestClient) -> None:
    doc = client.get("/v1/images", headers=bearer("env:read", env=("acme/*",))).json()
    assert [i["tags"] for i in doc["items"]] == [[USED]]


def test_a_prune_needs_the_admin_scope_and_a_confirmation_unless_dry(
    client: TestClient, runtime: MemoryRuntime
) -> None:
    assert client.post("/v1/images/prune", headers=bearer("deploy"), json={}).status_code == 403
    refused = client.post("/v1/images/prune", headers=bearer("admin"), json={})
    assert refused.status_code == 409 and refused.json()["error"] == "confirm_required"
    dry = client.post("/v1/images/prune", headers=bearer("admin"), json={"dry_run": True})
    assert [i["tags"] for i in dry.json()["removed"]] == [[OLD]] and OLD in runtime.images
    conforms(dry.json(), "ImagePrune")
    done = client.post("/v1/images/prune", headers=bearer("admin"), json={"confirm": True})
    assert done.status_code == 200 and not done.json()["dry_run"]
    assert runtime.images == {USED, KEPT}
