"""The OpenAPI document (reconciler/openapi.json) against the routes of ``create_app``.

Pure: the app is built over a control plane that fails the test if it is ever called, since
nothing here gets past authentication or reaches a handler that reads the daemon's view.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import schemathesis
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from reconciler.api.app import OPENAPI_PATH, create_app
from reconciler.api.auth import SCOPES, AuthConfig, TokenAuthority
from reconciler.api.ratelimit import RateLimiter
from tests.factories import UncalledPlane

DOC: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
# No bearer token: health and the document itself; webhooks authenticate by their signature.
PUBLIC = {("/v1/health", "get"), ("/v1/openapi.json", "get"), ("/v1/webhooks/{forge}", "post")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
AUTHORITY = TokenAuthority(AuthConfig(secret=b"k" * 32))
# Scopes that imply another: a token lacking a scope must lack these too.
IMPLYING = {"env:read": {"env:write", "deploy"}}
# No rate limit: one token asks every route in a row here, more than a burst allows.
APP = create_app(UncalledPlane(), AUTHORITY, limiter=RateLimiter(rate=1e9, burst=10**9))


def routes() -> dict[tuple[str, str], str]:
    """(path, method) -> handler name, for every route; HEAD is Starlette's, not ours."""
    found: dict[tuple[str, str], str] = {}
    for route in APP.routes:
        if isinstance(route, WebSocketRoute):
            continue  # documented under x-websockets (OpenAPI has no websockets)
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                found[(route.path, method.lower())] = route.name
    return found


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): op
        for path, item in DOC["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_every_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    assert sorted(operations()) == sorted(routes())


def test_operation_ids_are_the_handler_names() -> None:
    documented = {key: op["operationId"] for key, op in operations().items()}
    assert documented == routes()


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOC))
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises on the first violation
    loaded = [result.ok() for result in schema.get_all_operations()]  # resolves every $ref
    assert len(loaded) == len(routes())


def test_public_operations_opt_out_of_the_global_bearer_scheme() -> None:
    assert DOC["security"] == [{"bearerAuth": []}]
    scheme = DOC["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for key, op in operations().items():
        if key in PUBLIC:
            assert op["security"] == [], key
            assert "x-required-scope" not in op, key
        else:
            assert "security" not in op, key  # the global requirement applies
            assert op["x-required-scope"] in SCOPES, key


@pytest.mark.parametrize(("path", "method"), sorted(set(operations()) - PUBLIC))
def test_a_token_without_the_documented_scope_is_refused(path: str, method: str) -> None:
    """The scope stated is one the route requires: every other scope but admin gets 403."""
    scope = operations()[(path, method)]["x-required-scope"]
    others = set(SCOPES) - {scope, "admin"} - IMPLYING.get(scope, set())
    token = AUTHORITY.mint("ann", sorted(others))
    url = path.replace("{project}", "acme").replace("{env}", "qa").replace("{name}", "acme")
    resp = TestClient(APP).request(method, url, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403, resp.text
    assert scope in resp.json()["message"]


@pytest.mark.parametrize("path", ["/v1/health", "/v1/openapi.json"])
def test_public_routes_answer_without_a_token(path: str) -> None:
    assert TestClient(APP).get(path).status_code == 200


def test_the_served_document_is_the_file() -> None:
    resp = TestClient(APP).get("/v1/openapi.json")
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == DOC


@pytest.mark.parametrize(
    "name", ["a", "qa", "crm-reports", "a1", "a" * 32, "a" * 33, "", "1a", "a-", "A", "a_b", "a b"]
)
def test_the_documented_name_rule_is_the_state_schemas(name: str) -> None:
    common = json.loads((OPENAPI_PATH.parents[1] / "schemas" / "common.schema.json").read_text())
    state_rule = common["$defs"]["name"]["pattern"]
    documented = DOC["components"]["schemas"]["Name"]["pattern"]
    assert bool(re.search(documented, name)) == bool(re.search(state_rule, name))


def test_every_websocket_route_is_documented_under_x_websockets() -> None:
    sockets = {r.path for r in APP.routes if isinstance(r, WebSocketRoute)}
    documented = json.loads(OPENAPI_PATH.read_text())["x-websockets"]
    assert sockets == set(documented)
    assert all(doc["x-required-scope"] in SCOPES for doc in documented.values())
