"""Sleep and wake through the proxy, for real: Caddy (the caddy fixture), the Odoo stand-in, a
dev tier's own PostgreSQL container, the daemon's threads in this process.

A dev environment with ``sleep_after: 3s`` gets no request and falls asleep (its containers
stopped, not removed; its data kept); a request gets the waking page (503) and wakes it; a
following request gets Odoo. A daemon restarted while it sleeps keeps it asleep. The proxy
uses Caddy's internal CA: certificates are not what this tests.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest
import yaml

from reconciler.core.model import EnvKey
from reconciler.core.sleep import Rest
from reconciler.engine.daemon import Daemon
from reconciler.engine.engine import Engine
from reconciler.engine.status import Health
from tests.integration.world import World

pytestmark = pytest.mark.integration

DOMAIN = "sleep.odooops.test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Sleepy:
    """A world with ingress on, a dev environment that sleeps after 3 s, and its daemon."""

    world: World
    key: EnvKey
    admin_dir: Path
    https_port: int
    daemon: Daemon | None = None

    @property
    def engine(self) -> Engine:
        assert self.daemon is not None
        return self.daemon.engine

    @property
    def host(self) -> str:
        return f"{self.key.env}.{self.key.project}.{DOMAIN}"

    def get(self, path: str = "/web/health") -> httpx.Response:
        with httpx.Client(verify=False, timeout=10) as client:  # Caddy's internal CA
            return client.get(
                f"https://127.0.0.1:{self.https_port}{path}",
                headers={"Host": self.host},
                extensions={"sni_hostname": self.host},
            )

    def code(self, path: str = "/web/health") -> int:
        """The status of a request, or 0 while the proxy does not accept connections yet."""
        try:
            return self.get(path).status_code
        except httpx.TransportError:
            return 0

    def start(self, engine: Engine) -> None:
        self.daemon = Daemon(engine, interval=3600, jitter=0)
        self.daemon.start()

    def restart(self) -> None:
        """A new daemon on the same data directory, as after a crash or an upgrade."""
        assert self.daemon is not None
        self.daemon.shutdown()
        self.daemon.engine.close()
        self.start(self.world.new_engine(proxy_dir=self.admin_dir))

    def states(self) -> dict[str, str]:
        found = self.world.containers()
        return {
            name: found[name].status
            for name in (self.key.odoo_container, self.key.db_container)
            if name in found
        }

    def health(self) -> Health | None:
        status = self.engine.status.get(str(self.key))
        return None if status is None else status.health

    def rest(self) -> Rest | None:
        activity = self.engine.ledger.activity(self.key)
        return None if activity is None else activity.state


@pytest.fixture
def sleepy(world: World, images: dict[str, str]) -> Iterator[Sleepy]:
    admin_dir = Path(tempfile.mkdtemp(prefix="odooops-proxy-"))  # a short socket path
    https_port = _free_port()
    platform = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
    platform["ingress"] = {
        "domain": DOMAIN,
        "acme": {"ca": "internal"},
        "proxy": {
            "image": images["ODOOOPS_FIXTURE_CADDY_IMAGE"],
            "listen": "127.0.0.1",
            "http_port": _free_port(),
            "https_port": https_port,
        },
    }
    world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "ingress on")
    world.declare("dev", branch="release/v1", tier="dev", overrides={"sleep_after": "3s"})
    stage = Sleepy(world, EnvKey(world.project, "dev"), admin_dir, https_port)
    stage.start(world.engine(proxy_dir=admin_dir))
    try:
        yield stage
    finally:
        if stage.daemon is not None:
            stage.daemon.shutdown()
        client = docker.from_env()
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(f"odooops-{world.instance}-proxy").remove(force=True)
        client.close()
        shutil.rmtree(admin_dir, ignore_errors=True)


def test_an_idle_environment_sleeps_and_a_request_through_the_proxy_wakes_it(
    sleepy: Sleepy,
) -> None:
    key, world = sleepy.key, sleepy.world
    wait_for("the environment to be served", lambda: sleepy.code() == 200, 120)
    # Something of its data, to find again after the sleep.
    db = world.docker.containers.get(key.db_container)
    marker = "CREATE TABLE sleep_marker AS SELECT 42 AS answer"
    code, out = db.exec_run(["psql", "-U", key.role, "-d", key.database, "-c", marker])
    assert code == 0, out

    # No request for sleep_after: asleep, both containers stopped, none removed.
    wait_for("it to fall asleep", lambda: sleepy.rest() is Rest.ASLEEP, 30)
    wait_for(
        "its containers to stop",
        lambda: sleepy.states() == {key.odoo_container: "exited", key.db_container: "exited"},
        30,
    )
    volumes = {v.name for v in world.docker.volumes.list()}
    assert {key.filestore_volume, key.pgdata_volume} <= volumes
    wait_for("its status to say so", lambda: sleepy.health() is Health.ASLEEP, 10)
    status = sleepy.engine.status.get(str(key))
    assert status is not None and status.asleep_since
    asleep = next(c for c in status.conditions if c.type == "Asleep")
    assert asleep.status is True and asleep.reason == "Idle"

    # A restarted daemon keeps it asleep: a pass and Docker's events start nothing.
    sleepy.restart()
    wait_for("the new daemon's first pass", lambda: sleepy.engine.routes.table() is not None, 30)
    time.sleep(3)
    assert sleepy.states() == {key.odoo_container: "exited", key.db_container: "exited"}
    assert sleepy.rest() is Rest.ASLEEP

    # A request: the waking page at once, and the containers start.
    started = time.monotonic()
    page = sleepy.get("/web/login")
    assert page.status_code == 503
    assert page.headers["retry-after"] == "5"
    assert "Waking up" in page.text and 'http-equiv="refresh"' in page.text
    assert key.env not in page.text and world.project not in page.text
    # A burst of requests while it wakes: each gets the page or Odoo, and it wakes once.
    answers = [sleepy.get().status_code for _ in range(5)]
    assert set(answers) <= {200, 503}
    wait_for("Odoo to answer through the proxy", lambda: sleepy.code() == 200, 60)
    # Its data is as it was (read at once: 3 s without a request and it sleeps again).
    db = world.docker.containers.get(key.db_container)
    query = "SELECT answer FROM sleep_marker"
    code, out = db.exec_run(["psql", "-U", key.role, "-d", key.database, "-tAc", query])
    assert (code, out.decode().strip()) == (0, "42")
    assert sleepy.rest() is Rest.AWAKE
    assert time.monotonic() - started < 60
    wait_for("its status to say it is awake", lambda: sleepy.health() is Health.HEALTHY, 10)


def test_a_deploy_to_a_sleeping_environment_wakes_it_and_rolls_out_blue_green(
    sleepy: Sleepy,
) -> None:
    """A new revision of a sleeping environment is deployed at once: its database starts,
    the new Odoo starts beside the stopped old one, and once healthy it serves; the waking
    page shows until then, and no ``-next`` container is left."""
    key, world = sleepy.key, sleepy.world
    wait_for("the environment to be served", lambda: sleepy.code() == 200, 120)
    wait_for("it to fall asleep", lambda: sleepy.rest() is Rest.ASLEEP, 30)
    wait_for(
        "its containers to stop", lambda: sleepy.states().get(key.odoo_container) == "exited", 30
    )
    old = sleepy.engine.status.get(str(key))
    assert old is not None

    revision = world.app.write({"NOTES.md": "v2, no addon changed\n"}, "notes", "release/v1")
    sleepy.engine.on_change("webhook")  # the daemon's refresh trigger
    seen: set[int] = set()

    def serves_the_new_revision() -> bool:
        seen.add(sleepy.code())
        status = sleepy.engine.status.get(str(key))
        return status is not None and status.serving == revision

    wait_for("the new revision to serve", serves_the_new_revision, 120)
    assert sleepy.code() == 200
    assert seen <= {200, 503}, seen  # the waking page or Odoo: never a 502
    assert key.odoo_next_container not in world.containers()
    assert world.containers()[key.odoo_container].labels["odooops.revision"] == revision
