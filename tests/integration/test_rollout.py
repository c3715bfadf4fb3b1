"""Environments behind the daemon's own reverse proxy: HTTPS by ACME, blue/green deploys.

A world (real git remotes, Docker, PostgreSQL, the Odoo stand-in) whose ``odooops.yaml`` has an
``ingress`` block: the engine starts the proxy (the caddy fixture, Debian's Caddy) itself, gets
certificates from pebble (Let's Encrypt's test CA), and replaces Odoo containers blue/green.
Pebble runs on the proxy's own network (the test makes that network first, labelled as the
proxy's, so the daemon adopts it), where the proxy reaches the CA as ``pebble``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import yaml
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from reconciler.core.model import EnvKey
from reconciler.core.planner import Kind
from reconciler.engine.engine import Engine
from reconciler.engine.status import Health, Sync
from tests.integration.containers import (
    LABELS,
    publish_on_loopback,
    run_once,
    running,
    throwaway,
)
from tests.integration.world import World

pytestmark = pytest.mark.integration

DOMAIN = "rollout.odooops.test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Routed:
    """A world with ingress on, and how to reach its environments through the proxy."""

    world: World
    engine: Engine
    https_port: int
    http_port: int
    trust: ssl.SSLContext

    def host(self, env: str) -> str:
        return f"{env}.{self.world.project}.{DOMAIN}"

    def get(
        self, env: str, path: str = "/web/health", client: httpx.Client | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {"Host": self.host(env), **kw.pop("headers", {})}
        url = f"https://127.0.0.1:{self.https_port}{path}"
        extensions = {"sni_hostname": self.host(env)}
        if client is not None:
            return client.get(url, headers=headers, extensions=extensions, **kw)
        with httpx.Client(verify=self.trust, timeout=10) as own:
            return own.get(url, headers=headers, extensions=extensions, **kw)

    def converge(self, env: str) -> None:
        result = self.engine.reconcile()
        assert result.errors == {}, result.errors
        status = self.engine.status.get(f"{self.world.project}/{env}")
        assert status is not None
        assert (status.sync, status.health) == (Sync.SYNCED, Health.HEALTHY), status


@pytest.fixture
def routed(world: World, images: dict[str, str]) -> Iterator[Routed]:
    client = docker.from_env()
    proxy_net = f"odooops-{world.instance}-proxy"
    # The proxy's network, made as the daemon makes it (the daemon adopts it: same labels).
    network = client.networks.create(
        proxy_net,
        driver="bridge",
        labels={
            **LABELS,
            "odooops.instance": world.instance,
            "odooops.managed-by": "odooops",
            "odooops.role": "proxy",
        },
    )
    admin_dir = Path(tempfile.mkdtemp(prefix="odooops-proxy-"))  # a short socket path
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        stack.callback(lambda: _remove_network(client, proxy_net))
        pebble = throwaway(images["ODOOOPS_FIXTURE_PEBBLE_IMAGE"], "pebble")
        pebble.with_kwargs(labels=LABELS, network=proxy_net)
        publish_on_loopback(pebble, 15000)
        pebble.waiting_for(
            LogMessageWaitStrategy("ACME directory available").with_startup_timeout(30)
        )
        stack.enter_context(running(pebble))
        inner = pebble.get_wrapped_container()
        network.disconnect(inner)
        network.connect(inner, aliases=["pebble"])
        ca = inner.exec_run(["cat", "/run/pebble/ca.pem"]).output.decode()
        management = pebble.get_exposed_port(15000)
        root = httpx.get(
            f"https://127.0.0.1:{management}/roots/0",
            verify=ssl.create_default_context(cadata=ca),
            timeout=10,
        ).text
        roots_file = world.secrets_dir / "acme-roots.pem"
        roots_file.write_text(ca)
        https_port, http_port = _free_port(), _free_port()
        platform = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
        platform["ingress"] = {
            "domain": DOMAIN,
            "acme": {"ca": "https://pebble:14000/dir", "trusted_roots": {"file": str(roots_file)}},
            "proxy": {
                "image": images["ODOOOPS_FIXTURE_CADDY_IMAGE"],
                "listen": "127.0.0.1",
                "http_port": http_port,
                "https_port": https_port,
            },
        }
        world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "ingress on")
        engine = world.engine(proxy_dir=admin_dir)
        yield Routed(world, engine, https_port, http_port, ssl.create_default_context(cadata=root))
        # The world's cleanup (after this) removes the proxy with the rest of the instance;
        # pebble and the proxy's network are this fixture's, removed now.


def _remove_network(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        net = client.networks.get(name)
        net.reload()
        for attached in net.containers:
            net.disconnect(attached, force=True)
        net.remove()


def _wait_certificate(routed: Routed, env: str) -> None:
    proxy = routed.engine.routes.proxy
    assert proxy is not None
    proxy.wait_certificates([routed.host(env)], timeout=60)


def test_an_environment_answers_over_https_at_its_generated_host(routed: Routed) -> None:
    routed.world.declare("staging", branch="release/v1")
    routed.converge("staging")
    key = EnvKey(routed.world.project, "staging")
    status = routed.engine.status.get(str(key))
    assert status is not None
    assert status.url == f"https://{routed.host('staging')}:{routed.https_port}"
    # No host port: the proxy is the only way in.
    container = routed.world.containers()[key.odoo_container]
    assert not any(container.attrs["NetworkSettings"]["Ports"].get("8069/tcp") or [])
    _wait_certificate(routed, "staging")
    answer = routed.get("staging")
    assert answer.status_code == 200 and answer.json() == {"status": "pass"}
    redirect = httpx.get(
        f"http://127.0.0.1:{routed.http_port}/web/login",
        headers={"Host": routed.host("staging")},
        follow_redirects=False,
    )
    assert redirect.status_code == 308
    # The route table as the API shows it, with the certificate pebble issued.
    routed.engine.routes._checked = 0.0  # read the storage now, not in a minute
    routed.engine.reconcile()
    doc = routed.engine.routes.describe()
    (row,) = [r for r in doc["routes"] if r["env"] == "staging"]
    assert row["hosts"] == [routed.host("staging")]
    assert row["upstreams"] == [key.odoo_container, key.odoo_next_container]
    # The internal name: the Odoo server on the environment's network, as the proxy sees it.
    assert row["internal"] == f"staging.{routed.world.project}.internal"
    proxy = routed.world.docker.containers.get(f"odooops-{routed.world.instance}-proxy")
    code, out = proxy.exec_run(["getent", "hosts", row["internal"]])
    odoo_ip = container.attrs["NetworkSettings"]["Networks"][key.network]["IPAddress"]
    assert code == 0 and out.decode().split()[0] == odoo_ip, out
    assert row["certificates"][0]["managed"] is True
    status = routed.engine.status.get(str(key))
    assert status is not None and status.certificate_expires
    assert any(c.type == "Certificate" and c.status for c in status.conditions)


def test_a_code_only_deploy_switches_traffic_with_no_failed_request(routed: Routed) -> None:
    world = routed.world
    world.declare("staging", branch="release/v1")
    routed.converge("staging")
    _wait_certificate(routed, "staging")
    key = EnvKey(world.project, "staging")
    old_id = world.containers()[key.odoo_container].id

    outcomes: list[int | str] = []
    retried: list[str] = []
    stop = threading.Event()

    def load(keep_alive: bool) -> None:
        """Requests in a loop; a keep-alive connection the proxy closed as idle at the very
        moment a request went out is retried once (what browsers do; RFC 9110 9.2.2)."""
        headers = {} if keep_alive else {"Connection": "close"}
        with httpx.Client(verify=routed.trust, timeout=15) as client:
            while not stop.is_set():
                for attempt in (1, 2):
                    try:
                        answer = routed.get("staging", "/web/login", client, headers=headers)
                        outcomes.append(answer.status_code)
                        break
                    except httpx.RemoteProtocolError as exc:
                        if keep_alive and attempt == 1 and "without sending" in str(exc):
                            retried.append(str(exc))
                            continue
                        outcomes.append(f"{type(exc).__name__}: {exc}")
                    except httpx.HTTPError as exc:
                        outcomes.append(f"{type(exc).__name__}: {exc}")
                        break

    sha = world.app.write({"NOTES.md": "v2, no addon changed\n"}, "notes", branch="release/v1")
    workers = [threading.Thread(target=load, args=(n % 2 == 0,)) for n in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        result = routed.engine.reconcile()
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert result.errors == {}, result.errors
    kinds = [a.kind for a in result.plan.actions]
    assert Kind.REPLACE_ODOO in kinds
    failures = [o for o in outcomes if o != 200]
    if failures:
        proxy = routed.engine.routes.proxy
        assert proxy is not None
        Path("/tmp/rollout-proxy.log").write_text(proxy.logs(3000))
    assert len(outcomes) > 50, len(outcomes)
    assert failures == [], (
        f"{len(failures)} of {len(outcomes)} failed ({len(retried)} retried): {failures[:5]}"
    )
    containers = world.containers()
    assert key.odoo_next_container not in containers
    serving = containers[key.odoo_container]
    assert serving.id != old_id
    assert serving.labels["odooops.revision"] == sha
    status = routed.engine.status.get(str(key))
    assert status is not None
    reconciling = next(c for c in status.conditions if c.type == "Reconciling")
    assert "blue/green" in reconciling.message, reconciling
    # The update step ran no Odoo (no addon changed): it is not among the steps done.
    assert "update-modules" not in reconciling.message, reconciling


def test_a_rollout_that_never_gets_healthy_leaves_the_old_container_serving(
    routed: Routed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new container exits at start (an option its Odoo refuses): it is removed, the old
    one was never stopped, and the environment still answers through the proxy."""
    world, engine = routed.world, routed.engine
    world.declare("staging", branch="release/v1")
    routed.converge("staging")
    _wait_certificate(routed, "staging")
    key = EnvKey(world.project, "staging")
    old_id = world.containers()[key.odoo_container].id
    command, create = engine.docker.odoo_command, engine.docker.create_odoo

    def create_broken(want: Any, password: str, name: str | None = None) -> None:
        if name == key.odoo_next_container:
            monkeypatch.setattr(
                engine.docker,
                "odoo_command",
                lambda w, trial=None: [*command(w, trial), "--no-such-option"],
            )
        try:
            create(want, password, name)
        finally:
            monkeypatch.setattr(engine.docker, "odoo_command", command)

    monkeypatch.setattr(engine.docker, "create_odoo", create_broken)
    world.declare("staging", branch="release/v1", overrides={"workers": 2})
    result = engine.reconcile()
    error = result.errors.get(key)
    assert error is not None, result
    assert "keeps serving the previous revision" in error.message
    containers = world.containers()
    assert containers[key.odoo_container].id == old_id
    assert containers[key.odoo_container].status == "running"
    assert key.odoo_next_container not in containers
    assert routed.get("staging").status_code == 200


OLD, NEW = "19.0.1.0.0", "19.0.1.1.0"
CHAIN = ["x_m1", "x_m2", "x_m3"]


def _manifest(name: str, version: str, depends: str) -> str:
    return repr({"name": name, "version": version, "depends": [depends], "license": "LGPL-3"})


def _modules(version: str, failing: str | None = None) -> dict[str, str]:
    files = {".odooops.yaml": yaml.safe_dump({"version": 1, "modules": ["acme_sale", *CHAIN]})}
    for i, m in enumerate(CHAIN):
        files[f"{m}/__init__.py"] = ""
        files[f"{m}/__manifest__.py"] = _manifest(m, version, CHAIN[i - 1] if i else "base")
    if failing is not None:
        files[f"{failing}/migrations/{version}/post-migrate.py"] = (
            "def migrate(cr, version):\n    raise ValueError('cannot migrate this data')\n"
        )
    return files


def _fingerprint(world: World, database: str) -> tuple[Any, ...]:
    """The module table whole (states and versions: the migration state) and a checksum of
    its rows, as the admin reads them."""
    rows = world.query(
        database,
        "SELECT md5(string_agg(m::text, '|' ORDER BY m.id)), "
        "string_agg(m.name || '=' || m.state || '@' || coalesce(m.latest_version, ''), ',' "
        "ORDER BY m.name) FROM ir_module_module m",
    )
    return tuple(rows[0])


def _probe(routed: Routed, env: str, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    with httpx.Client(verify=routed.trust, timeout=15) as client:
        while not stop.is_set():
            try:
                answer = routed.get(env, "/web/login", client, headers={"Connection": "close"})
                seen.append((answer.status_code, answer.headers.get("Retry-After", "")))
            except httpx.HTTPError as exc:
                seen.append((0, type(exc).__name__))
            time.sleep(0.05)


def test_a_module_update_runs_on_a_copy_behind_the_maintenance_page(routed: Routed) -> None:
    world = routed.world
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    world.declare("staging", branch="release/v1")
    routed.converge("staging")
    _wait_certificate(routed, "staging")
    key = EnvKey(world.project, "staging")
    world.app.write(_modules(NEW), "bump", branch="release/v1")
    seen: list[tuple[int, str]] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(routed, "staging", stop, seen))
    probe.start()
    try:
        result = routed.engine.reconcile()
        time.sleep(0.5)
    finally:
        stop.set()
        probe.join()
    assert result.errors == {}, result.errors
    statuses = [s for s, _ in seen]
    assert 503 in statuses, seen  # the maintenance page, not errors
    assert all(s in (200, 503) for s in statuses), seen
    assert {r for s, r in seen if s == 503} == {"120"}
    assert statuses[-1] == 200
    _hash, modules = _fingerprint(world, key.database)
    assert all(f"{m}=installed@{NEW}" in modules for m in CHAIN), modules
    # Without keep_previous the replaced data is dropped by the schedules right after the
    # run (outside the maintenance window), not kept.
    kept = routed.engine.ledger.kept(key)
    assert kept is not None and world.scratch_databases() == {kept["database"]}
    want = routed.engine.current.environments[key] if routed.engine.current else None
    assert want is not None and routed.engine.data.kept_expired(key, datetime.now(UTC))
    routed.engine.data.expire_kept(want)
    assert world.scratch_databases() == set() and routed.engine.ledger.kept(key) is None


def test_db_migrate_lets_the_held_update_through_and_holds_the_next(routed: Routed) -> None:
    """maintenance: false holds a module update (the old revision serves); the commit
    ``odooops db migrate`` makes (``migrate: <revision>``) lets exactly that one through."""
    world = routed.world
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    held = {"branch": "release/v1", "overrides": {"maintenance": False}}
    world.declare("staging", **held)
    routed.converge("staging")
    key = EnvKey(world.project, "staging")
    first = routed.engine.status.get(str(key))
    assert first is not None
    bump = world.app.write(_modules(NEW), "bump", branch="release/v1")
    result = routed.engine.reconcile()
    assert result.errors[key].code == "migration_pending", result.errors
    status = routed.engine.status.get(str(key))
    assert status is not None and status.revision == bump
    assert status.serving == first.serving  # the previous revision keeps serving
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.reason == "migration_pending"

    world.declare("staging", "odooops db migrate", **held, migrate=bump)
    routed.converge("staging")
    _hash, modules = _fingerprint(world, key.database)
    assert all(f"{m}=installed@{NEW}" in modules for m in CHAIN), modules
    served = routed.engine.status.get(str(key))
    assert served is not None and served.serving == bump

    newer = world.app.write(_modules("19.0.1.2.0"), "bump again", branch="release/v1")
    result = routed.engine.reconcile()
    assert result.errors[key].code == "migration_pending", result.errors
    again = routed.engine.status.get(str(key))
    assert again is not None and (again.revision, again.serving) == (newer, bump)


def test_a_failed_update_leaves_the_live_database_as_it_was_and_the_old_code_serving(
    routed: Routed,
) -> None:
    world = routed.world
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    world.declare("staging", branch="release/v1")
    routed.converge("staging")
    _wait_certificate(routed, "staging")
    key = EnvKey(world.project, "staging")
    before = _fingerprint(world, key.database)
    old_id = world.containers()[key.odoo_container].id
    world.app.write(_modules(NEW, failing="x_m2"), "bump, x_m2 fails", branch="release/v1")
    result = routed.engine.reconcile()
    error = result.errors.get(key)
    assert error is not None, result
    assert "the live database was not touched" in error.message, error.message
    assert "cannot migrate this data" in error.message
    assert error.code == "deploy_failed"  # the copy was half-updated, not the live database
    assert _fingerprint(world, key.database) == before
    assert world.scratch_databases() == set()
    containers = world.containers()
    assert containers[key.odoo_container].id == old_id
    assert containers[key.odoo_container].status == "running"
    assert key.odoo_next_container not in containers
    assert routed.get("staging").status_code == 200  # the page is lifted, the old code serves


def _filestore_dirs(world: World, env: str) -> set[str]:
    """The directories under the environment's ``filestore/`` (one per database)."""
    listed = run_once(
        throwaway(
            world.images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
            "filestore",
            entrypoint=["/bin/sh", "-c", "ls -1 /v/filestore"],
            volumes={f"odooops-{world.project}-{env}-filestore": {"bind": "/v", "mode": "ro"}},
            user="0",
        )
    )
    return {line for line in listed.stdout.decode().split() if line}


def test_an_update_keeps_the_data_it_replaced_for_keep_previous_then_removes_it(
    routed: Routed,
) -> None:
    """The database and filestore an update on a copy replaced stay, renamed, for
    ``keep_previous`` (one set per environment: a newer update replaces them), and go when
    their time is up or the environment is removed."""
    world, engine = routed.world, routed.engine
    key = EnvKey(world.project, "staging")
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    world.declare("staging", branch="release/v1", overrides={"keep_previous": "1h"})
    routed.converge("staging")
    before = _fingerprint(world, key.database)
    record = engine.ledger.database(key)
    assert record is not None and engine.ledger.kept(key) is None
    world.app.write(_modules(NEW), "bump", branch="release/v1")
    routed.converge("staging")
    kept = engine.ledger.kept(key)
    assert kept is not None
    assert kept["revision"] == record.revision
    assert world.scratch_databases() == {kept["database"]}
    assert _fingerprint(world, kept["database"]) == before  # the data as it was, untouched
    assert kept["filestore"] in _filestore_dirs(world, "staging")
    status = engine.status.get(str(key))
    assert status is not None
    event = next(e for e in engine.status.events(str(key)) if e["type"] == "PreviousData")
    assert event["reason"] == "Kept" and kept["until"] in event["message"]

    # A newer update replaces the kept data: the older set is superseded, and removed by the
    # schedules' next check (after the run: never inside the maintenance window).
    world.app.write(_modules("19.0.1.2.0"), "bump again", branch="release/v1")
    routed.converge("staging")
    newer = engine.ledger.kept(key)
    assert newer is not None and newer["database"] != kept["database"]
    assert [s["database"] for s in newer["superseded"]] == [kept["database"]]
    want = engine.current.environments[key] if engine.current else None
    assert want is not None and engine.data.kept_expired(key, datetime.now(UTC))
    assert engine.data.expire_kept(want) == [kept["database"]]
    assert world.scratch_databases() == {newer["database"]}
    assert kept["filestore"] not in _filestore_dirs(world, "staging")
    assert not engine.data.kept_expired(key, datetime.now(UTC))

    # Its time up, the next check of the schedules removes it.
    later = datetime.now(UTC) + timedelta(hours=2)
    engine.data.clock = lambda: later
    assert engine.data.kept_expired(key, later)
    assert engine.data.expire_kept(want) == [newer["database"]]
    assert engine.ledger.kept(key) is None
    assert world.scratch_databases() == set()
    assert _filestore_dirs(world, "staging") == {key.database}


def test_kept_data_goes_with_its_environment(routed: Routed) -> None:
    world, engine = routed.world, routed.engine
    key = EnvKey(world.project, "staging")
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    world.declare("staging", branch="release/v1", overrides={"keep_previous": "1h"})
    routed.converge("staging")
    world.app.write(_modules(NEW), "bump", branch="release/v1")
    routed.converge("staging")
    assert len(world.scratch_databases()) == 1
    world.allow_empty()
    world.remove("staging")
    result = engine.reconcile()
    assert result.errors == {}, result.errors
    assert engine.ledger.kept(key) is None
    assert world.owned_databases() == set()


def test_a_data_rollback_puts_the_kept_data_back_with_the_code_it_was_at(
    routed: Routed,
) -> None:
    """``odooops db rollback``: the kept data is marked and the environment pinned to its
    revision; the next pass puts that data back (the module table exactly as it was) and
    runs that revision on it, and keeps the data it replaced in turn."""
    world, engine = routed.world, routed.engine
    key = EnvKey(world.project, "staging")
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    world.declare("staging", branch="release/v1", overrides={"keep_previous": "1h"})
    routed.converge("staging")
    before = _fingerprint(world, key.database)
    old_record = engine.ledger.database(key)
    assert old_record is not None
    world.app.write(_modules(NEW), "bump", branch="release/v1")
    routed.converge("staging")
    updated = _fingerprint(world, key.database)
    assert updated != before
    new_record = engine.ledger.database(key)
    assert new_record is not None and new_record.revision != old_record.revision

    kept = engine.data.request_rollback(key)
    assert kept["revision"] == old_record.revision
    world.declare(
        "staging",
        branch="release/v1",
        revision=old_record.revision,
        overrides={"keep_previous": "1h"},
    )
    routed.converge("staging")
    assert _fingerprint(world, key.database) == before  # the data as it was, exactly
    assert world.containers()[key.odoo_container].labels["odooops.revision"] == (
        old_record.revision
    )
    record = engine.ledger.database(key)
    assert record is not None and record.revision == old_record.revision
    # The data it replaced is kept in turn (the rollback can be rolled back); nothing else.
    again = engine.ledger.kept(key)
    assert again is not None and not again.get("rollback")
    assert again["revision"] == new_record.revision
    # The data put back was copied from the kept set, now superseded: removed after the run.
    assert [s["database"] for s in again["superseded"]] == [kept["database"]]
    want = engine.current.environments[key] if engine.current else None
    assert want is not None and engine.data.expire_kept(want) == [kept["database"]]
    assert world.scratch_databases() == {again["database"]}
    assert _fingerprint(world, again["database"]) == updated
    events = engine.status.events(str(key))
    assert any(e["type"] == "DataRollback" and e["reason"] == "Done" for e in events)
    assert routed.get("staging", "/web/login").status_code == 200
    # Converged: the next pass has nothing to do.
    assert engine.reconcile().plan.actions == ()


def test_a_rollback_with_data_puts_back_the_kept_data_of_that_version(routed: Routed) -> None:
    """``odooops rollback --with-data`` (``POST .../rollback-version``) where the update ran
    on a copy: the data it replaced is v1's and still kept, so that data is put back (as
    ``odooops db rollback`` does; no backup restored), with v1's own image."""
    from starlette.testclient import TestClient

    from reconciler.api.app import create_app
    from reconciler.api.auth import AuthConfig, TokenAuthority
    from reconciler.api.controlplane import DaemonControlPlane
    from reconciler.gitops.gitsource import GitSource
    from reconciler.gitops.statewriter import StateWriter

    world, engine = routed.world, routed.engine
    key = EnvKey(world.project, "staging")
    world.app.write(_modules(OLD), "three modules", branch="release/v1")
    world.declare("staging", branch="release/v1", overrides={"keep_previous": "1h"})
    routed.converge("staging")
    before = _fingerprint(world, key.database)
    v1_image = world.containers()[key.odoo_container].image.id
    world.app.write(_modules(NEW), "bump", branch="release/v1")
    routed.converge("staging")
    assert _fingerprint(world, key.database) != before

    authority = TokenAuthority(AuthConfig(secret=b"r" * 32))
    writer = StateWriter(
        GitSource(f"file://{world.state_remote}", world.root / "writes"),
        secrets=lambda: world.secret_policy,
    )
    app = create_app(DaemonControlPlane(engine, writer, lambda: None), authority)
    token = authority.mint("ann", ["deploy", "db:restore"], email="ann@acme.example")
    path = f"/v1/environments/{key.project}/{key.env}"
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        history = client.get(f"{path}/history", headers=headers).json()["items"]
        v1 = history[1]["revision"]
        assert history[1]["kept_data"] and not history[0]["kept_data"]
        answer = client.post(
            f"{path}/rollback-version", json={"with_data": True, "confirm": True}, headers=headers
        )
    assert answer.status_code == 202, answer.json()
    assert answer.json()["rollback"]["data"] == "kept" and answer.json()["rollback"]["to"] == v1
    kept = engine.ledger.kept(key)
    assert kept is not None and kept["rollback"] is True
    routed.converge("staging")
    assert _fingerprint(world, key.database) == before  # the data as v1 left it, exactly
    assert world.containers()[key.odoo_container].image.id == v1_image
    assert engine.ledger.restore_mark(key) is None
