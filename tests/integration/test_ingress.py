"""The reverse proxy for real: Caddy (Debian's, the caddy fixture) driven by ``CaddyDriver``,
certificates from pebble (Let's Encrypt's test CA, the pebble fixture), upstreams on
environment-like networks.

Two environments: ``acme/production`` is the Odoo stand-in (``/web/health`` on 8069) and
``acme/qa`` is a small echo server (tests/integration/echo_upstream.py) that reports the port,
the headers and the body it got, and answers WebSocket upgrades on 8072. The proxy publishes
80 and 443 on loopback at ports Docker picks, and its admin socket is in this test's temporary
folder. Requests go to 127.0.0.1 with the environment's host as SNI and Host, and every HTTPS
answer is verified against pebble's root of this run (``/roots/0`` of its management API).

Everything made here is labelled with this run (the proxy's objects through its settings'
labels) and removed at the end of the module; the session-end check fails a run that leaks.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy
from websockets.sync.client import connect as websocket_connect

from reconciler.core.caddyconfig import AcmeSettings, caddy_config
from reconciler.core.errors import DriverError, InvalidState
from reconciler.core.ingress import EnvironmentRoute, Maintenance, RouteTable, route_table
from reconciler.core.model import EnvKey, Tier
from reconciler.drivers.caddy import CaddyDriver, ProxySettings
from tests.integration.containers import (
    LABELS,
    LEDGER,
    name,
    odoo_serving,
    publish_on_loopback,
    running,
    throwaway,
)

pytestmark = pytest.mark.integration

DOMAIN = "ingress.odooops.test"
PROD = EnvKey("acme", "production")
QA = EnvKey("acme", "qa")
ECHO = Path(__file__).with_name("echo_upstream.py")
TEST_NET = "203.0.113.7"  # documentation range (RFC 5737): never the tests' own address


@dataclass
class Stage:
    """The module's world: the proxy, its two upstreams, and how to reach them."""

    proxy: CaddyDriver
    acme: AcmeSettings
    prod: EnvironmentRoute
    qa: EnvironmentRoute
    acme_network: str
    https_port: int
    http_port: int
    trust: ssl.SSLContext
    pebble: str  # the ACME CA's container

    def serve(self, *routes: EnvironmentRoute, acme: AcmeSettings | None = None) -> RouteTable:
        """Load the routes, wait for their certificates, return the table in force."""
        table = route_table(routes, DOMAIN)
        self.proxy.load(caddy_config(table, acme or self.acme))
        self.proxy.wait_certificates([h.host for h in table.hosts], timeout=60)
        return table

    def get(self, host: str, path: str = "/", method: str = "GET", **kw: Any) -> httpx.Response:
        with httpx.Client(verify=self.trust, timeout=10) as client:
            return client.request(
                method,
                f"https://127.0.0.1:{self.https_port}{path}",
                headers={"Host": host, **kw.pop("headers", {})},
                extensions={"sni_hostname": host},
                **kw,
            )


def _host(key: EnvKey) -> str:
    return f"{key.env}.{key.project}.{DOMAIN}"


@contextlib.contextmanager
def _network(client: docker.DockerClient, instance: str, kind: str) -> Iterator[str]:
    """A bridge network as the daemon makes an environment's: labelled with its instance (the
    proxy joins only its own instance's networks) and with this test run."""
    LEDGER.built += 1
    net_name = name(kind)
    net = client.networks.create(
        net_name, driver="bridge", labels={**LABELS, "odooops.instance": instance}
    )
    try:
        yield net_name
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            net.reload()
            for attached in net.containers:
                net.disconnect(attached, force=True)
            net.remove()


def _fetch_root(pebble: DockerContainer) -> str:
    """Pebble's root of this run, from its management API, trusted through pebble's own CA."""
    ca = pebble.get_wrapped_container().exec_run(["cat", "/run/pebble/ca.pem"]).output.decode()
    context = ssl.create_default_context(cadata=ca)
    port = pebble.get_exposed_port(15000)
    answer = httpx.get(f"https://127.0.0.1:{port}/roots/0", verify=context, timeout=10)
    answer.raise_for_status()
    return answer.text


@pytest.fixture(scope="module")
def stage(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    client = docker.from_env()
    instance = f"ingress-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        acme_net = stack.enter_context(_network(client, instance, "acme"))
        prod_net = stack.enter_context(_network(client, instance, "prod"))
        qa_net = stack.enter_context(_network(client, instance, "qa"))

        pebble = throwaway(images["ODOOOPS_FIXTURE_PEBBLE_IMAGE"], "pebble")
        pebble.with_kwargs(labels=LABELS, network=acme_net)
        publish_on_loopback(pebble, 15000)
        pebble.waiting_for(
            LogMessageWaitStrategy("ACME directory available").with_startup_timeout(30)
        )
        stack.enter_context(running(pebble))
        # The ACME directory's name as the proxy reaches it: the container's name on the
        # shared network (pebble's own certificate is for "pebble", so an alias is added).
        client.networks.get(acme_net).disconnect(pebble.get_wrapped_container())
        client.networks.get(acme_net).connect(pebble.get_wrapped_container(), aliases=["pebble"])
        ca = pebble.get_wrapped_container().exec_run(["cat", "/run/pebble/ca.pem"]).output.decode()
        root = _fetch_root(pebble)

        odoo = throwaway(
            images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
            "odoo",
            command=["--proxy-mode", "--workers", "0"],
        )
        odoo.with_kwargs(labels=LABELS, network=prod_net, entrypoint="/usr/bin/odoo")
        odoo.waiting_for(odoo_serving())
        stack.enter_context(running(odoo))

        echo = throwaway(
            images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
            "echo",
            command=["python3", "/echo.py"],
            volumes={str(ECHO): {"bind": "/echo.py", "mode": "ro"}},
        )
        echo.with_kwargs(labels=LABELS, network=qa_net)
        echo.waiting_for(LogMessageWaitStrategy("echo upstream serving").with_startup_timeout(30))
        stack.enter_context(running(echo))

        settings = ProxySettings(
            image=images["ODOOOPS_FIXTURE_CADDY_IMAGE"],
            admin_dir=tmp_path_factory.mktemp("proxy-admin"),
            publish_host="127.0.0.1",
            http_port=None,
            https_port=None,
            labels=LABELS,
        )
        proxy = CaddyDriver(instance, settings)
        LEDGER.built += 1
        stack.callback(proxy.close)
        stack.callback(proxy.remove, volumes=True)
        proxy.ensure()
        proxy.join([acme_net, prod_net, qa_net])
        ports = proxy.ports()
        trust = ssl.create_default_context(cadata=root)
        prod_route = EnvironmentRoute(
            PROD,
            Tier.PRODUCTION,
            (odoo.get_wrapped_container().name,),
            prod_net,
            domains=(f"erp.{DOMAIN}",),
        )
        qa_route = EnvironmentRoute(
            QA, Tier.STAGING, (echo.get_wrapped_container().name,), qa_net, max_body_bytes=4096
        )
        world = Stage(
            proxy,
            AcmeSettings(ca="https://pebble:14000/dir", trusted_roots_pem=ca),
            prod_route,
            qa_route,
            acme_net,
            ports[443][1],
            ports[80][1],
            trust,
            pebble.get_wrapped_container().name,
        )
        world.serve(prod_route, qa_route)
        yield world


def test_https_answers_with_a_certificate_from_the_acme_ca(stage: Stage) -> None:
    """Verified against pebble's root of this run: the proxy got it from pebble over ACME."""
    for host in (_host(PROD), f"erp.{DOMAIN}"):
        answer = stage.get(host, "/web/health")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "pass"}
    held = stage.proxy.certificates([_host(PROD), f"erp.{DOMAIN}", "nowhere.example.com"])
    assert held[_host(PROD)].managed and held[_host(PROD)].issuer == "pebble-14000-dir"
    assert (held[_host(PROD)].days_left(datetime.now(UTC)) or 0) > 1
    assert not held["nowhere.example.com"].managed


def test_http_is_redirected_to_https(stage: Stage) -> None:
    answer = httpx.get(
        f"http://127.0.0.1:{stage.http_port}/web/login?redirect=%2Fodoo",
        headers={"Host": _host(PROD)},
        follow_redirects=False,
    )
    assert answer.status_code == 308
    assert answer.headers["Location"] == f"https://{_host(PROD)}/web/login?redirect=%2Fodoo"


def test_the_upstream_gets_the_forwarded_headers_of_the_proxy_not_of_the_client(
    stage: Stage,
) -> None:
    answer = stage.get(
        _host(QA),
        "/web/login",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example"},
    )
    seen = answer.json()
    assert seen["port"] == 8069
    forwarded_for = seen["headers"]["X-Forwarded-For"]
    assert "6.6.6.6" not in forwarded_for
    assert re.fullmatch(r"[0-9.]+", forwarded_for), forwarded_for
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    assert seen["headers"]["X-Forwarded-Host"].split(":")[0] == _host(QA)
    assert seen["headers"]["Host"].split(":")[0] == _host(QA)


def test_websocket_upgrades_reach_the_gevent_port(stage: Stage) -> None:
    raw = socket.create_connection(("127.0.0.1", stage.https_port), timeout=10)
    with websocket_connect(
        f"wss://{_host(QA)}/websocket",
        sock=raw,
        ssl=stage.trust,
        server_hostname=_host(QA),
        compression=None,
        proxy=None,
    ) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "8072:hello"
    # Other paths of /websocket* go there too (Odoo's bus routes), the rest to 8069.
    assert stage.get(_host(QA), "/websocket/peek_notifications").json()["port"] == 8072
    assert stage.get(_host(QA), "/web/websocket").json()["port"] == 8069


def test_a_body_over_the_tiers_limit_is_refused_with_413(stage: Stage) -> None:
    small = stage.get(_host(QA), "/web/binary/upload", method="POST", content=b"x" * 4000)
    assert small.json()["body_bytes"] == 4000
    large = stage.get(_host(QA), "/web/binary/upload", method="POST", content=b"x" * 50_000)
    assert large.status_code == 413


def test_the_production_allowlist_refuses_every_other_address(stage: Stage) -> None:
    source = stage.get(_host(QA), "/").json()["headers"]["X-Forwarded-For"]
    try:
        stage.serve(
            replace(stage.prod, allowlist=(TEST_NET,)),
            replace(stage.qa, tier=Tier.PRODUCTION, allowlist=(TEST_NET, f"{source}/32")),
        )
        refused = stage.get(_host(PROD), "/web/health")
        assert refused.status_code == 403
        assert "/web/health" not in refused.text
        # The same list with the caller's address in it lets the caller through.
        assert stage.get(_host(QA), "/web/login").status_code == 200
        # A forged header does not make a refused caller someone else.
        spoofed = stage.get(_host(PROD), "/web/health", headers={"X-Forwarded-For": TEST_NET})
        assert spoofed.status_code == 403
    finally:
        stage.serve(stage.prod, stage.qa)


def test_maintenance_answers_503_with_retry_after_and_the_text(stage: Stage) -> None:
    page = Maintenance("Updating modules {env.HOME}; back in two minutes.", retry_after=120)
    try:
        stage.serve(stage.prod, replace(stage.qa, maintenance=page))
        answer = stage.get(_host(QA), "/web/login")
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "120"
        assert answer.text == "Updating modules {env.HOME}; back in two minutes.\n"
        assert stage.get(_host(PROD), "/web/health").status_code == 200  # others serve
    finally:
        stage.serve(stage.prod, stage.qa)


@dataclass
class Traffic:
    """What loops of requests saw: per answered request, when it started and who answered
    (an echo upstream's ``name``, else ""); per failed one (an error, or a status other than
    200), what went wrong."""

    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)

    def report(self) -> str:
        return (
            f"{len(self.failures)} of {len(self.answers) + len(self.failures)} failed "
            f"({len(self.retried)} retried): {self.failures[:5]}"
        )


@contextlib.contextmanager
def _traffic(stage: Stage, host: str, path: str) -> Iterator[Traffic]:
    """Four loops of requests to ``host`` for the length of the block.

    Half the loops open a connection per request: none may fail (no connection is refused,
    no request in flight is cut). The other half keep connections alive, as browsers do; Caddy
    closes a replaced server's idle keep-alive connections, and a request sent on one at that
    very moment meets a closed connection before any response. HTTP clients retry exactly that
    case for idempotent requests (RFC 9110 9.2.2; browsers do, httpx does not), so these loops
    retry it once; a second failure, or any other, counts.
    """
    seen = Traffic()
    stop = threading.Event()

    def loop(keep_alive: bool) -> None:
        headers = {"Host": host} | ({} if keep_alive else {"Connection": "close"})
        with httpx.Client(verify=stage.trust, timeout=10) as client:
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                for attempt in (1, 2):
                    try:
                        answer = client.get(
                            f"https://127.0.0.1:{stage.https_port}{path}",
                            headers=headers,
                            extensions={"sni_hostname": host},
                        )
                        if answer.status_code != 200:
                            seen.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                        else:
                            named = answer.headers.get("content-type") == "application/json"
                            seen.answers.append(
                                (started, answer.json().get("name", "") if named else "")
                            )
                        break
                    except httpx.RemoteProtocolError as exc:
                        if keep_alive and attempt == 1 and "without sending" in str(exc):
                            seen.retried.append(str(exc))
                            continue
                        seen.failures.append(f"{type(exc).__name__}: {exc}")
                    except httpx.HTTPError as exc:
                        seen.failures.append(f"{type(exc).__name__}: {exc}")
                        break

    workers = [threading.Thread(target=loop, args=(n % 2 == 0,)) for n in range(4)]
    for worker in workers:
        worker.start()
    try:
        yield seen
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def test_loading_new_routes_while_requests_run_fails_none(stage: Stage) -> None:
    """Each load replaces the whole configuration while loops of requests count failures
    (see ``_traffic``): also the handshakes that meet Caddy 2.6 refilling its certificate
    cache, and the connections queued on the listener a load closes."""
    # Two tables to alternate: the second adds a domain (its certificate is obtained now, so
    # the loop measures the loads, not the CA) and changes the other environment's limit.
    tables = [
        (stage.prod, stage.qa),
        (
            replace(stage.prod, domains=(*stage.prod.domains, f"alt.{DOMAIN}")),
            replace(stage.qa, max_body_bytes=8192),
        ),
    ]
    stage.serve(*tables[1])
    stage.serve(*tables[0])
    with _traffic(stage, _host(PROD), "/web/health") as seen:
        for round_ in range(6):
            time.sleep(0.3)
            stage.serve(*tables[(round_ + 1) % 2])
        time.sleep(0.3)
    assert len(seen.answers) > 50, seen.report()
    assert seen.failures == [], seen.report()


def _echo(images: dict[str, str], network: str, label: str) -> DockerContainer:
    echo = throwaway(
        images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
        "echo",
        command=["python3", "/echo.py"],
        env={"ECHO_NAME": label},
        volumes={str(ECHO): {"bind": "/echo.py", "mode": "ro"}},
    )
    echo.with_kwargs(labels=LABELS, network=network)
    return echo.waiting_for(
        LogMessageWaitStrategy("echo upstream serving").with_startup_timeout(30)
    )


def _resolves(stage: Stage, name: str) -> bool:
    """``name`` resolves on the proxy's networks (Docker's embedded DNS, as Caddy dials)."""
    proxy = stage.proxy.client.containers.get(stage.proxy.name)
    return bool(proxy.exec_run(["getent", "hosts", name]).exit_code == 0)


def test_a_blue_green_switch_and_rename_fails_no_request(
    stage: Stage, images: dict[str, str]
) -> None:
    """The engine's rollout: load [new, old], stop and remove the old container, rename the
    new one to the old name, load [name, name-next]. A dial to a name that no longer resolves
    is retried on the next upstream; every answer after the first load is the new one's."""
    key = EnvKey("acme", "bluegreen")
    host = _host(key)
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(_network(stage.proxy.client, stage.proxy.instance, "bg"))
        networks = stage.proxy.networks()
        stage.proxy.join(networks | {net})
        stack.callback(stage.proxy.join, networks)
        old = stack.enter_context(running(_echo(images, net, "old"))).get_wrapped_container()
        new = stack.enter_context(running(_echo(images, net, "new"))).get_wrapped_container()
        name = old.name

        def route(*upstreams: str) -> EnvironmentRoute:
            return EnvironmentRoute(key, Tier.STAGING, upstreams, net)

        stage.serve(stage.prod, stage.qa, route(name))
        with _traffic(stage, host, "/web/login") as seen:
            time.sleep(0.5)
            loading = time.monotonic()
            stage.serve(stage.prod, stage.qa, route(new.name, name))
            switched = time.monotonic()
            time.sleep(0.5)
            old.stop(timeout=5)
            old.remove(force=True, v=True)
            time.sleep(0.5)
            new.rename(name)
            time.sleep(0.5)
            assert _resolves(stage, name) and not _resolves(stage, new.name)
            stage.serve(stage.prod, stage.qa, route(name, f"{name}-next"))
            time.sleep(1)
        stage.serve(stage.prod, stage.qa)
    assert len(seen.answers) > 50, seen.report()
    assert seen.failures == [], seen.report()
    before = {o for t, o in seen.answers if t < loading}
    after = {o for t, o in seen.answers if t > switched}
    assert before == {"old"}, before
    assert after == {"new"}, after


@pytest.mark.parametrize(
    ("domains", "code"),
    [
        (("erp_shop.example.com",), "invalid_domain"),
        (("*.example.com",), "invalid_domain"),
        ((f"erp.{DOMAIN}",), "domain_conflict"),  # production's
    ],
)
def test_a_bad_domain_is_refused_and_the_routes_in_force_keep_serving(
    stage: Stage, domains: tuple[str, ...], code: str
) -> None:
    with pytest.raises(InvalidState) as exc:
        stage.serve(stage.prod, replace(stage.qa, domains=domains))
    assert [p.code for p in exc.value.problems] == [code]
    if code == "domain_conflict":
        assert "acme/production" in exc.value.problems[0].message
        assert "acme/qa" in exc.value.problems[0].message
    assert stage.get(_host(PROD), "/web/health").status_code == 200
    assert stage.get(f"erp.{DOMAIN}", "/web/health").status_code == 200
    assert stage.get(_host(QA), "/").json()["port"] == 8069


def test_a_configuration_caddy_refuses_leaves_the_previous_one_serving(stage: Stage) -> None:
    table = route_table([stage.prod, stage.qa], DOMAIN)
    config = caddy_config(table, stage.acme)
    broken = json.loads(config.body())
    broken["apps"]["http"]["servers"]["https"]["listen"] = ["not-an-address:x"]
    with pytest.raises(DriverError) as exc:
        stage.proxy.load(replace(config, document=broken))
    assert exc.value.code == "proxy_config_rejected"
    assert stage.get(_host(PROD), "/web/health").status_code == 200


def test_a_failing_acme_ca_is_acme_failed_and_the_other_hosts_keep_serving(stage: Stage) -> None:
    """The proxy leaves the CA's network, so a new host gets no certificate."""
    host = f"new.{DOMAIN}"
    networks = stage.proxy.networks()
    stage.proxy.join(networks - {stage.acme_network})
    try:
        table = route_table([stage.prod, replace(stage.qa, domains=(host,))], DOMAIN)
        stage.proxy.load(caddy_config(table, stage.acme))
        with pytest.raises(DriverError) as exc:
            stage.proxy.wait_certificates([host, _host(PROD)], timeout=8)
        assert exc.value.code == "acme_failed"
        assert host in exc.value.message and _host(PROD) not in exc.value.message
        assert stage.get(_host(PROD), "/web/health").status_code == 200
        assert stage.get(_host(QA), "/").status_code == 200
    finally:
        stage.proxy.join(networks)
    assert stage.proxy.networks() == networks


def test_a_fresh_storage_gets_every_certificate_when_several_hosts_come_at_once(
    stage: Stage, tmp_path: Path
) -> None:
    """No ACME account yet and four hosts in one load: the driver makes the account with one
    host first, so Caddy 2.6 cannot save a key that matches no account."""
    instance = f"ingress-{uuid.uuid4().hex[:8]}"
    client = stage.proxy.client
    with contextlib.ExitStack() as stack:
        acme_net = stack.enter_context(_network(client, instance, "acme"))
        client.networks.get(acme_net).connect(
            client.containers.get(stage.pebble), aliases=["pebble"]
        )
        proxy = CaddyDriver(instance, replace(stage.proxy.settings, admin_dir=tmp_path))
        LEDGER.built += 1
        stack.callback(proxy.close)
        stack.callback(proxy.remove, volumes=True)
        proxy.ensure()
        proxy.join([acme_net])
        hosts = tuple(f"h{n}.fresh.{DOMAIN}" for n in range(4))
        route = EnvironmentRoute(
            EnvKey("fresh", "main"), Tier.STAGING, ("nowhere",), acme_net, hosts
        )
        proxy.load(caddy_config(route_table([route], None), stage.acme))
        held = proxy.wait_certificates(hosts, timeout=60)
        assert sorted(held) == sorted(hosts)


def test_ensure_again_keeps_the_proxy_and_its_routes(stage: Stage) -> None:
    """Idempotent: the running proxy is kept, and it serves what it served."""
    before = stage.proxy.ports()
    stage.proxy.ensure()
    assert stage.proxy.ports() == before
    assert stage.get(_host(PROD), "/web/health").status_code == 200


def test_a_restarted_proxy_serves_its_last_routes_before_any_load(stage: Stage) -> None:
    stage.proxy.client.containers.get(stage.proxy.name).restart(timeout=5)
    stage.proxy.ensure()  # waits for the admin socket
    ports = stage.proxy.ports()
    stage.https_port, stage.http_port = ports[443][1], ports[80][1]
    assert stage.get(_host(PROD), "/web/health").status_code == 200
