"""How long a sleeping environment takes to wake: from the first request to Odoo's first 200.

One world (real git remotes, Docker, PostgreSQL, the Odoo stand-in) whose ``odooops.yaml`` has
an ``ingress`` block (the engine's own Caddy, with Caddy's internal CA: certificates are not
measured), and a dev environment (its own PostgreSQL container) with ``sleep_after: 3s``. The
daemon runs in this process, with its threads (work queues, Docker events, the access-log
reader), as ``odooops daemon`` runs them. Each round waits for the environment to fall asleep,
then measures, side by side:

* **baseline**: the same two stopped containers started by hand, as a person would with
  ``docker start``: the database container, then Odoo, each until its own health check passes
  (run in the container, as Docker runs it); then stopped again;
* **wake**: ``GET /web/health`` through the proxy every 100 ms, from the first request (which
  gets the waking page, 503) to the first 200 from Odoo: the daemon reading the access log,
  its run starting both containers and waiting for health and the smoke paths, and the route
  going back to Odoo.

The ratio wake / baseline is what the platform adds to a bare start. Figures are printed,
nothing asserted. Run from the repository root::

    .venv/bin/python bench/wake.py [--quick]
"""

from __future__ import annotations

import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402
from testcontainers.core.config import testcontainers_config  # noqa: E402

from bench._cli import Options, run_main, title, uninterruptible  # noqa: E402
from reconciler.core.model import EnvKey  # noqa: E402
from reconciler.core.sleep import Rest  # noqa: E402
from reconciler.engine.daemon import Daemon  # noqa: E402
from tests.integration import pgadmin  # noqa: E402
from tests.integration.world import World, fixture_images  # noqa: E402

DOMAIN = "wake.odooops.test"
SLEEP_AFTER = "3s"
POLL = 0.1  # seconds between a waiting client's requests
TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stage:
    """The world, its sleeping environment, and how to reach it through the proxy."""

    def __init__(self, world: World, https_port: int) -> None:
        self.world = world
        self.key = EnvKey(world.project, "dev")
        self.https_port = https_port
        self.host = f"dev.{world.project}.{DOMAIN}"
        self.client = httpx.Client(verify=False, timeout=10)  # Caddy's internal CA
        self.docker = docker.from_env()

    def close(self) -> None:
        self.client.close()
        self.docker.close()

    def status(self) -> int:
        """The status of ``GET /web/health`` through the proxy (0: no connection)."""
        try:
            return self.client.get(
                f"https://127.0.0.1:{self.https_port}/web/health",
                headers={"Host": self.host},
                extensions={"sni_hostname": self.host},
            ).status_code
        except httpx.TransportError:
            return 0

    def until(self, what: str, predicate: Any, timeout: float = TIMEOUT) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if predicate():
                return time.perf_counter() - started
            time.sleep(POLL)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")

    def stopped(self) -> bool:
        names = (self.key.odoo_container, self.key.db_container)
        return all(self.docker.containers.get(n).status == "exited" for n in names)


def healthy(container: Any) -> bool:
    """The container's own health check, run in it now (as Docker would at its interval)."""
    container.reload()
    test = container.attrs["Config"]["Healthcheck"]["Test"]
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    return bool(container.status == "running" and container.exec_run(argv).exit_code == 0)


def baseline(stage: Stage) -> float:
    """``docker start`` of the database, then Odoo, each until healthy; stopped again."""
    db = stage.docker.containers.get(stage.key.db_container)
    odoo = stage.docker.containers.get(stage.key.odoo_container)
    started = time.perf_counter()
    db.start()
    stage.until("the database container by hand", lambda: healthy(db))
    odoo.start()
    stage.until("Odoo by hand", lambda: healthy(odoo))
    took = time.perf_counter() - started
    odoo.stop(timeout=20)
    db.stop(timeout=20)
    return took


def wake(stage: Stage) -> tuple[float, int]:
    """From the first request to the first 200 through the proxy; and how many 503s."""
    started = time.perf_counter()
    pages = 0
    while time.perf_counter() - started < TIMEOUT:
        code = stage.status()
        if code == 200:
            return time.perf_counter() - started, pages
        if code == 503:
            pages += 1
        time.sleep(POLL)
    raise RuntimeError(f"not awake after {TIMEOUT:.0f} s")


def main() -> int:
    options = Options(__doc__, "one round instead of five")
    options.size("--rounds", 5, 1, "sleep-and-wake rounds, each against a start by hand")
    args = options.parse(None)
    print(title(__doc__))
    pgadmin.export()
    testcontainers_config.ryuk_disabled = True
    images = fixture_images()
    root = Path(tempfile.mkdtemp(prefix="odooops-bench-wake-"))
    admin_dir = Path(tempfile.mkdtemp(prefix="odooops-proxy-"))  # a short socket path
    world = World(root, images, 30000 + (int(time.time()) % 19) * 20 + 10)
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
    world.declare("dev", branch="release/v1", tier="dev", overrides={"sleep_after": SLEEP_AFTER})
    stage = Stage(world, https_port)
    daemon = Daemon(world.engine(proxy_dir=admin_dir), interval=3600, jitter=0)
    woken: list[float] = []
    by_hand: list[float] = []
    try:
        daemon.start()
        ready = stage.until("the environment to serve", lambda: stage.status() == 200, 300)
        print(f"world: instance {world.instance}; environment {stage.key} served after "
              f"{ready:.1f} s (image, database, proxy); sleep_after {SLEEP_AFTER}")  # fmt: skip
        ledger = daemon.engine.ledger

        def asleep() -> bool:
            activity = ledger.activity(stage.key)
            return activity is not None and activity.state is Rest.ASLEEP and stage.stopped()

        for round_ in range(1, args.rounds + 1):
            stage.until("the environment to sleep", asleep)
            time.sleep(1)  # the Docker events of the stop are handled
            hand = baseline(stage)
            stage.until("the containers stopped by hand", stage.stopped)
            time.sleep(1)
            took, pages = wake(stage)
            woken.append(took)
            by_hand.append(hand)
            print(f"round {round_}: wake {took:.2f} s ({pages} waking page(s)); start by hand "
                  f"{hand:.2f} s; ratio {took / hand:.2f}")  # fmt: skip
    finally:
        with uninterruptible():
            daemon.shutdown()
            stage.close()
            world.cleanup()
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(admin_dir, ignore_errors=True)
    wake_median, hand_median = statistics.median(woken), statistics.median(by_hand)
    print("\nsummary")
    print(f"  wake from sleep, first request to first 200 through the proxy: median "
          f"{wake_median:.2f} s, worst {max(woken):.2f} s over {len(woken)} round(s)")  # fmt: skip
    print(f"  baseline, docker start of the same containers until healthy: median "
          f"{hand_median:.2f} s")  # fmt: skip
    print(f"  ratio wake / baseline: {wake_median / hand_median:.2f}")
    return 0


if __name__ == "__main__":
    run_main(main, "the world's containers and databases were removed")
