"""``Routes``: when the proxy is told what, and what the environments' status says of it.

The proxy is an in-memory stand-in with the driver's methods ``Routes`` calls (no Docker, no
Caddy); the status store is the real one, on a temporary directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.core.caddyconfig import ProxyConfig
from reconciler.core.errors import DriverError, OdooOpsError
from reconciler.core.ingress import Maintenance
from reconciler.core.model import (
    Desired,
    DesiredEnvironment,
    EnvKey,
    IngressSettings,
    SecretRef,
    Tier,
)
from reconciler.drivers.caddy import Certificate, ProxySettings
from reconciler.engine.routing import Routes
from reconciler.engine.status import Condition, StatusStore
from tests.factories import desired

OPENAPI = Path(__file__).parents[2] / "reconciler" / "api" / "openapi.json"
INGRESS = IngressSettings(domain="apps.example.com", production_allowlist=("203.0.113.0/24",))
PROD = desired("prod", Tier.PRODUCTION)
QA = desired("qa", Tier.STAGING)
NOW = datetime.now(UTC)


class FakeProxy:
    """The proxy container as ``Routes`` drives it: what it was told, and failures on demand."""

    def __init__(self, maker: Proxies, instance: str, settings: ProxySettings) -> None:
        self._maker = maker
        self.name = f"odooops-{instance}-proxy"
        self.settings = settings
        self.networks: set[str] = set()
        self.loads: list[ProxyConfig] = []
        self.removed = self.closed = False

    def _fail(self) -> None:
        if self._maker.failure is not None:
            raise self._maker.failure

    def ensure(self) -> None:
        self._fail()

    def join(self, networks: Iterable[str]) -> None:
        self._fail()
        self.networks = set(networks)

    def load(self, config: ProxyConfig) -> None:
        self._fail()
        self.loads.append(config)

    def certificates(self, hosts: Iterable[str] | None = None) -> dict[str, Certificate]:
        held = self._maker.held
        return {h: held.get(h, Certificate(h)) for h in hosts or held}

    def remove(self, *, volumes: bool = False) -> None:
        self._fail()
        self.removed = True

    def close(self) -> None:
        self.closed = True


class Proxies:
    """The factory ``Routes`` makes its proxy with: every proxy made, and what they share."""

    def __init__(self) -> None:
        self.made: list[FakeProxy] = []
        self.failure: OdooOpsError | None = None
        self.held: dict[str, Certificate] = {}

    def __call__(self, instance: str, settings: ProxySettings) -> FakeProxy:
        proxy = FakeProxy(self, instance, settings)
        self.made.append(proxy)
        return proxy

    @property
    def last(self) -> FakeProxy:
        return self.made[-1]


@pytest.fixture
def proxies() -> Proxies:
    return Proxies()


@pytest.fixture
def status(tmp_path: Path) -> StatusStore:
    return StatusStore(tmp_path / "status.json")


@pytest.fixture
def routes(tmp_path: Path, status: StatusStore, proxies: Proxies) -> Routes:
    def resolve(ref: SecretRef) -> str:
        raise AssertionError(f"no secret is named: {ref}")

    return Routes("test", tmp_path / "proxy", status, resolve, factory=proxies)  # type: ignore[arg-type]


def world(*wants: DesiredEnvironment) -> Desired:
    return Desired("c" * 40, {w.key: w for w in wants})


def everywhere(*wants: DesiredEnvironment) -> list[str]:
    return [w.key.network for w in wants]


def condition(status: StatusStore, key: EnvKey, kind: str) -> Condition | None:
    found = status.get(str(key))
    return next((c for c in found.conditions if c.type == kind), None) if found else None


def route_of(routes: Routes, key: EnvKey) -> dict[str, Any]:
    return next(r for r in routes.describe()["routes"] if (r["project"], r["env"]) == astuple(key))


def astuple(key: EnvKey) -> tuple[str, str]:
    return key.project, key.env


# ------------------------------------------------------------------------------ the pass
def test_a_sync_loads_the_table_once_and_not_again_when_nothing_changed(
    routes: Routes, proxies: Proxies
) -> None:
    for _ in range(3):
        routes.sync(INGRESS, world(PROD, QA), everywhere(PROD, QA))
    assert len(proxies.made) == 1
    assert len(proxies.last.loads) == 1
    assert proxies.last.networks == {PROD.key.network, QA.key.network}


def test_a_changed_table_is_loaded_again(routes: Routes, proxies: Proxies) -> None:
    routes.sync(INGRESS, world(PROD), everywhere(PROD))
    routes.sync(INGRESS, world(PROD, QA), everywhere(PROD, QA))
    assert len(proxies.last.loads) == 2
    assert [r["env"] for r in routes.describe()["routes"]] == ["prod", "qa"]


def test_an_environment_whose_network_is_absent_is_neither_routed_nor_joined(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    routes.sync(INGRESS, world(PROD, QA), everywhere(PROD))
    assert proxies.last.networks == {PROD.key.network}
    assert [r["env"] for r in routes.describe()["routes"]] == ["prod"]
    assert condition(status, QA.key, "Routed") is None


def test_attach_routes_a_new_environment_before_the_next_pass(
    routes: Routes, proxies: Proxies
) -> None:
    routes.sync(INGRESS, world(PROD, QA), everywhere(PROD))
    routes.attach(QA.key, QA.key.network)
    assert QA.key.network in proxies.last.networks
    assert route_of(routes, QA.key)["hosts"] == ["qa.acme.apps.example.com"]


def test_each_environment_s_routed_condition_names_its_own_hosts_only(
    routes: Routes, status: StatusStore
) -> None:
    """A token limited to one environment reads its status: no other environment's host."""
    qa = desired("qa", Tier.STAGING, domains=("erp-test.example.org",))
    routes.sync(INGRESS, world(PROD, qa), everywhere(PROD, qa))
    shown = {key: condition(status, key, "Routed") for key in (PROD.key, qa.key)}
    assert {key: (c.status, c.reason, c.message) for key, c in shown.items() if c} == {
        PROD.key: (True, "Loaded", "prod.acme.apps.example.com"),
        qa.key: (True, "Loaded", "qa.acme.apps.example.com, erp-test.example.org"),
    }


def test_an_environment_without_any_host_says_how_to_give_it_one(
    routes: Routes, status: StatusStore
) -> None:
    routes.sync(replace(INGRESS, domain=None), world(QA), everywhere(QA))
    routed = condition(status, QA.key, "Routed")
    assert routed is not None and (routed.status, routed.reason) == (False, "NoHost")
    assert "environments/acme/qa.yaml" in routed.message


@pytest.mark.parametrize(
    ("tier", "in_file", "allowed"),
    [
        (Tier.PRODUCTION, None, ["203.0.113.0/24"]),
        (Tier.PRODUCTION, ("198.51.100.7",), ["198.51.100.7"]),
        (Tier.PRODUCTION, (), []),  # an empty list in the file lets everyone in
        (Tier.STAGING, None, []),
        (Tier.STAGING, ("198.51.100.7",), ["198.51.100.7"]),
    ],
)
def test_production_gets_the_platform_allowlist_unless_its_file_sets_one(
    routes: Routes, tier: Tier, in_file: tuple[str, ...] | None, allowed: list[str]
) -> None:
    want = desired("prod", tier, allowlist=in_file)
    routes.sync(INGRESS, world(want), everywhere(want))
    assert route_of(routes, want.key)["allowlist"] == allowed


# ------------------------------------------------------------------------------ rollouts
def test_serve_puts_the_upstreams_first_and_release_restores_the_default(
    routes: Routes, proxies: Proxies
) -> None:
    name, nxt = QA.key.odoo_container, QA.key.odoo_next_container
    routes.sync(INGRESS, world(QA), everywhere(QA))
    assert route_of(routes, QA.key)["upstreams"] == [name, nxt]
    routes.serve(QA.key, (nxt, name))
    assert route_of(routes, QA.key)["upstreams"] == [nxt, name]
    routes.sync(INGRESS, world(QA), everywhere(QA))  # a pass keeps the rollout's order
    assert route_of(routes, QA.key)["upstreams"] == [nxt, name]
    routes.release(QA.key)
    assert route_of(routes, QA.key)["upstreams"] == [name, nxt]
    assert len(proxies.last.loads) == 3


def test_maintenance_is_served_until_release(routes: Routes) -> None:
    routes.sync(INGRESS, world(QA), everywhere(QA))
    routes.serve(QA.key, maintenance=Maintenance(INGRESS.maintenance_text))
    assert route_of(routes, QA.key)["maintenance"] is True
    table = routes.table()
    assert table is not None and table.environments[0].maintenance is not None
    routes.release(QA.key)
    assert route_of(routes, QA.key)["maintenance"] is False


def test_a_switch_the_proxy_refused_is_not_made_by_the_next_pass(
    routes: Routes, proxies: Proxies
) -> None:
    """The rollout was told the switch failed: the old container keeps the traffic."""
    name, nxt = QA.key.odoo_container, QA.key.odoo_next_container
    routes.sync(INGRESS, world(QA), everywhere(QA))
    proxies.failure = DriverError("refused", code="proxy_config_rejected")
    with pytest.raises(DriverError):
        routes.serve(QA.key, (nxt, name))
    proxies.failure = None
    routes.sync(INGRESS, world(QA), everywhere(QA))
    assert route_of(routes, QA.key)["upstreams"] == [name, nxt]


# ------------------------------------------------------------------------------ failures
def test_a_proxy_error_is_each_environment_s_routed_condition_and_sync_does_not_raise(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    proxies.failure = DriverError("the proxy is gone", code="proxy_unavailable")
    routes.sync(INGRESS, world(PROD, QA), everywhere(PROD, QA))
    for key in (PROD.key, QA.key):
        routed = condition(status, key, "Routed")
        assert routed is not None
        assert (routed.status, routed.reason, routed.message) == (
            False,
            "proxy_unavailable",
            "the proxy is gone",
        )


def test_the_pass_after_a_failure_loads_again_and_says_routed(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    """The table did not change, yet the condition must not stay False."""
    routes.sync(INGRESS, world(QA), everywhere(QA))
    proxies.failure = DriverError("the proxy is gone", code="proxy_unavailable")
    routes.sync(INGRESS, world(QA), everywhere(QA))
    proxies.failure = None
    routes.sync(INGRESS, world(QA), everywhere(QA))
    routed = condition(status, QA.key, "Routed")
    assert routed is not None and (routed.status, routed.reason) == (True, "Loaded")
    assert len(proxies.last.loads) == 2


def test_routes_that_cannot_be_built_change_nothing_and_say_why(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    routes.sync(INGRESS, world(QA), everywhere(QA))
    clash = desired("other", Tier.STAGING, domains=("qa.acme.apps.example.com",))
    routes.sync(INGRESS, world(QA, clash), everywhere(QA, clash))
    assert len(proxies.last.loads) == 1
    assert [r["env"] for r in routes.describe()["routes"]] == ["qa"]
    routed = condition(status, clash.key, "Routed")
    assert routed is not None and (routed.status, routed.reason) == (False, "invalid_state")


# ------------------------------------------------------------------------------ no ingress
def test_without_settings_the_proxy_is_removed_and_nothing_is_routed(
    routes: Routes, proxies: Proxies
) -> None:
    routes.sync(INGRESS, world(QA), everywhere(QA))
    proxy = proxies.last
    routes.sync(None, world(QA), everywhere(QA))
    assert proxy.removed and proxy.closed
    assert routes.describe() == {"enabled": False, "domain": None, "proxy": None, "routes": []}
    routes.sync(None, world(QA), everywhere(QA))
    assert len(proxies.made) == 1  # removed once, not on every pass


def test_a_restarted_daemon_without_settings_removes_the_proxy_an_earlier_one_made(
    routes: Routes, proxies: Proxies
) -> None:
    """Docker restarts the proxy with the host and it resumes its last routes: it must go."""
    routes.sync(None, world(QA), everywhere(QA))
    assert [p.removed for p in proxies.made] == [True]
    # Every later pass without ingress is free: no proxy made, not a status read.
    routes.status.all = lambda: pytest.fail("a pass without ingress read every status")  # type: ignore[method-assign]
    routes.sync(None, world(QA), everywhere(QA))
    assert len(proxies.made) == 1


def test_a_removal_that_failed_is_tried_again_on_the_next_pass(
    routes: Routes, proxies: Proxies
) -> None:
    proxies.failure = DriverError("docker is down", code="docker_unreachable")
    routes.sync(None, world(QA), everywhere(QA))
    proxies.failure = None
    routes.sync(None, world(QA), everywhere(QA))
    assert [p.removed for p in proxies.made] == [False, True]


def test_changed_proxy_settings_make_a_new_proxy_which_is_loaded(
    routes: Routes, proxies: Proxies
) -> None:
    routes.sync(INGRESS, world(QA), everywhere(QA))
    routes.sync(replace(INGRESS, https_port=8443), world(QA), everywhere(QA))
    first, second = proxies.made
    assert first.closed and second.settings.https_port == 8443
    assert len(second.loads) == 1


# ------------------------------------------------------------------------------ certificates
@pytest.mark.parametrize(
    ("held", "expected", "expires"),
    [
        (NOW + timedelta(days=60), (True, "Valid"), NOW + timedelta(days=60)),
        (None, (False, "Pending"), None),
        (NOW + timedelta(days=5), (False, "ExpiringSoon"), NOW + timedelta(days=5)),
        (NOW - timedelta(days=1), (False, "Expired"), NOW - timedelta(days=1)),
    ],
)
def test_certificates_set_the_certificate_condition_and_the_earliest_expiry(
    routes: Routes,
    proxies: Proxies,
    status: StatusStore,
    held: datetime | None,
    expected: tuple[bool, str],
    expires: datetime | None,
) -> None:
    host = "qa.acme.apps.example.com"
    if held is not None:
        proxies.held[host] = Certificate(host, held, "acme-v02.api.letsencrypt.org-directory")
    routes.sync(INGRESS, world(QA), everywhere(QA))
    cert = condition(status, QA.key, "Certificate")
    assert cert is not None and (cert.status, cert.reason) == expected
    found = status.get(str(QA.key))
    assert found is not None
    assert found.certificate_expires == (
        expires.isoformat(timespec="seconds") if expires is not None else ""
    )
    assert route_of(routes, QA.key)["certificates"] == [
        Certificate(host, held, proxies.held[host].issuer if held else None).to_dict()
    ]


def test_the_earliest_of_an_environment_s_certificates_counts(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    qa = desired("qa", Tier.STAGING, domains=("erp-test.example.org",))
    soon, later = NOW + timedelta(days=30), NOW + timedelta(days=80)
    proxies.held = {
        "qa.acme.apps.example.com": Certificate("qa.acme.apps.example.com", later),
        "erp-test.example.org": Certificate("erp-test.example.org", soon),
    }
    routes.sync(INGRESS, world(qa), everywhere(qa))
    found = status.get(str(qa.key))
    assert found is not None and found.certificate_expires == soon.isoformat(timespec="seconds")


def test_turning_ingress_off_forgets_the_certificates_expiry(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    host = "qa.acme.apps.example.com"
    proxies.held[host] = Certificate(host, NOW + timedelta(days=60))
    routes.sync(INGRESS, world(QA), everywhere(QA))
    routes.sync(None, world(QA), everywhere(QA))
    found = status.get(str(QA.key))
    assert found is not None and found.certificate_expires == ""


# ------------------------------------------------------------------------------ GET /v1/routes
def route_table_schema() -> dict[str, Any]:
    """The RouteTable component, its references resolved within the OpenAPI document."""
    components = json.loads(OPENAPI.read_text())["components"]
    return {"$ref": "#/components/schemas/RouteTable", "components": components}


def test_describe_matches_the_route_table_of_the_api(routes: Routes, proxies: Proxies) -> None:
    host = "prod.acme.apps.example.com"
    proxies.held[host] = Certificate(host, NOW + timedelta(days=60), "local")
    qa = desired("qa", Tier.STAGING, domains=("erp-test.example.org",))
    routes.sync(INGRESS, world(PROD, qa), everywhere(PROD, qa))
    routes.serve(qa.key, maintenance=Maintenance("back soon"))
    doc = routes.describe()
    jsonschema.Draft202012Validator(route_table_schema()).validate(doc)
    assert (doc["enabled"], doc["domain"], doc["proxy"]) == (
        True,
        "apps.example.com",
        "odooops-test-proxy",
    )
    assert len(doc["routes"]) == 2


def test_describe_without_ingress_matches_the_route_table_of_the_api(routes: Routes) -> None:
    jsonschema.Draft202012Validator(route_table_schema()).validate(routes.describe())


def test_attach_that_fails_is_the_environment_s_condition_not_its_run_s_failure(
    routes: Routes, proxies: Proxies, status: StatusStore
) -> None:
    routes.sync(INGRESS, world(PROD, QA), everywhere(PROD))
    proxies.failure = DriverError("the proxy is gone", code="proxy_unavailable")
    routes.attach(QA.key, QA.key.network)
    routed = condition(status, QA.key, "Routed")
    assert routed is not None and (routed.status, routed.reason) == (False, "proxy_unavailable")
    proxies.failure = None
    routes.sync(INGRESS, world(PROD, QA), everywhere(PROD, QA))
    routed = condition(status, QA.key, "Routed")
    assert routed is not None and (routed.status, routed.reason) == (True, "Loaded")
