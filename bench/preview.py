#!/usr/bin/env python3
"""From a signed pull-request delivery to the preview answering over HTTPS, and back from sleep.

One world (real git remotes, Docker, PostgreSQL, the Odoo stand-in) with the engine's own Caddy
and certificates from pebble, as in ``bench/rollout.py``; the daemon runs in this process (its
queues, its previews, its API through Starlette's test client), the forge is the fake one of
the tests (``tests/integration/fakeforge.py``), and the project's app repository has a branch
per request at main's commit, so no preview waits for an image build (the first build is the
production environment's, before anything is timed). Figures, each against a baseline measured
in the same run:

* **a fresh preview** (``seed: demo``): from the delivery's POST until the preview's login page
  answers 200 over HTTPS through the proxy (the certificate included), against a person's
  commit declaring the same environment by hand (``baseline``). Aim: under 3 minutes;
* **a masked copy of production through the golden copy** (``seed: {copy-of: prod}``, production
  holding ``--size-mb`` of data): the same measure, with the golden copy's own refresh timed
  apart before the delivery (it runs in the background in real life). Aim: under 30 s;
* **wake from sleep**: the fresh preview told to sleep after 2 s, then from the first request
  (answered by the waking page) until its login page answers 200; against the fresh preview's
  spin-up.

Nothing is asserted; run from the repository root::

    .venv/bin/python bench/preview.py [--quick] [--size-mb 1024]
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import yaml  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from testcontainers.core.config import testcontainers_config  # noqa: E402

from bench._cli import Options, run_main, title, uninterruptible, verdict  # noqa: E402
from bench.rollout import DAEMON_HEALTH_INTERVAL, LOGIN_MARK, Ingress, proxied  # noqa: E402
from reconciler.api.app import create_app  # noqa: E402
from reconciler.api.auth import AuthConfig, TokenAuthority  # noqa: E402
from reconciler.api.controlplane import DaemonControlPlane  # noqa: E402
from reconciler.core.model import EnvKey  # noqa: E402
from reconciler.engine.daemon import Daemon  # noqa: E402
from reconciler.engine.previews import Previews  # noqa: E402
from reconciler.engine.status import Health  # noqa: E402
from reconciler.gitops import changes  # noqa: E402
from reconciler.gitops.gitsource import Author, GitSource  # noqa: E402
from reconciler.gitops.statewriter import StateWriter  # noqa: E402
from tests.integration import pgadmin  # noqa: E402
from tests.integration.fakeforge import FakeForge  # noqa: E402
from tests.integration.world import World, fixture_images, git  # noqa: E402

SECRET = "bench-preview"
SPIN_UP_AIM = 180.0
COPY_AIM = 30.0
ROW_BYTES = 1000
ANN = Author("Ann Integrator", "ann@acme.example")


class Bench:
    def __init__(self, world: World, ingress: Ingress, forge: FakeForge, root: Path) -> None:
        self.world, self.ingress, self.forge = world, ingress, forge
        self.writer = StateWriter(
            GitSource(f"file://{world.state_remote}", root / "writes"),
            secrets=lambda: world.engine().secrets.policy,
        )
        self.deliveries = 0
        self.client: TestClient | None = None

    def key(self, env: str) -> EnvKey:
        return EnvKey(self.world.project, env)

    def deliver(self, number: int, branch: str) -> float:
        """A signed ``opened`` delivery of request ``number`` (head ``branch``); when it was
        posted."""
        assert self.client is not None
        self.forge.pull(number, head=branch, author="alice")
        self.deliveries += 1
        body = json.dumps(
            {
                "action": "opened",
                "number": number,
                "pull_request": self.forge.pulls[number],
                "repository": {"clone_url": f"file://{self.world.app_remote}"},
            }
        ).encode()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        started = time.monotonic()
        answer = self.client.post(
            "/v1/webhooks/github",
            content=body,
            headers={
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": f"bench-{self.deliveries}",
                "X-Hub-Signature-256": f"sha256={digest}",
                "Content-Type": "application/json",
            },
        )
        if answer.status_code != 202:
            raise RuntimeError(f"the delivery was refused: {answer.text}")
        return started

    def served(self, env: str, timeout: float) -> float | None:
        """When ``env``'s login page first answered 200 over HTTPS through the proxy."""
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=self.ingress.trust, timeout=5) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ssl.SSLError):
                    answer = self.ingress.get(client, env, "/web/login")
                    if answer.status_code == 200 and LOGIN_MARK in answer.text:
                        return time.monotonic()
                time.sleep(0.1)
        return None

    def health(self, env: str) -> str:
        status = self.world.engine().status.get(str(self.key(env)))
        return status.health.value if status else ""

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")


def fill(bench: Bench, env: str, size_mb: int) -> float:
    """A plain table of ``size_mb`` MB in ``env``'s database, owned by its role; the
    database's size afterwards, MB."""
    key = bench.key(env)
    rows = size_mb * 1024 * 1024 // ROW_BYTES
    halves = [(1, rows // 2), (rows // 2 + 1, rows)]

    def connect() -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", user="postgres", dbname=key.database, autocommit=True
        )

    def insert(low: int, high: int) -> None:
        with connect() as conn:
            conn.execute(f'SET ROLE "{key.role}"')
            conn.execute(
                "INSERT INTO bench_bulk SELECT g, repeat(md5(g::text), 30) "
                "FROM generate_series(%s::bigint, %s::bigint) g",
                [low, high],
            )

    with connect() as conn:
        conn.execute(f'SET ROLE "{key.role}"')
        conn.execute("CREATE TABLE bench_bulk (id bigint, payload text)")
    workers = [threading.Thread(target=insert, args=half) for half in halves]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with connect() as conn:
        conn.execute("VACUUM ANALYZE bench_bulk")
        conn.execute("CHECKPOINT")
        (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
    return int(size) / 2**20


def set_policies(bench: Bench, previews: dict[str, object], message: str) -> None:
    policies = yaml.safe_load(
        git("--git-dir", str(bench.world.state_remote), "show", "main:policies.yaml")
    )
    policies["previews"] = previews
    policies["golden"] = {"refresh": "never"}  # after production updates and on demand only
    bench.writer.submit(changes.FileOperation("policies.yaml", policies, message), ANN)


def main() -> int:
    options = Options(__doc__, "16 MB of production data, 1 s health checks")
    options.size("--size-mb", 1024, 16, "production's data, copied through the golden copy, MB")
    options.size(
        "--health-interval",
        DAEMON_HEALTH_INTERVAL,
        1,
        "the engine's Docker health-check interval, s (the daemon's is the full default)",
    )
    args = options.parse(None)
    print(title(__doc__))
    pgadmin.export()
    testcontainers_config.ryuk_disabled = True
    images = fixture_images()
    root = Path(tempfile.mkdtemp(prefix="odooops-bench-preview-"))
    world = World(root, images, 31000 + (int(time.time()) % 19) * 20)  # above the test bands
    forge = FakeForge("github", repo="acme/app")
    summary: list[str] = []
    daemon: Daemon | None = None
    try:
        with proxied(world, images) as (ingress, admin_dir):
            engine = world.engine(proxy_dir=admin_dir, health_interval=args.health_interval)
            engine.secrets.set_named("forge-token", "bench-token", ("127.0.0.1",))
            bench = Bench(world, ingress, forge, root)
            project = yaml.safe_load(
                (world.state.dir / f"projects/{world.project}.yaml").read_text()
            )
            project["repository"]["forge"] = {
                "kind": "github",
                "api": forge.api,
                "repo": "acme/app",
                "token": {"secret": "forge-token"},
            }
            world.state.write(
                {f"projects/{world.project}.yaml": yaml.safe_dump(project)}, "on the forge"
            )
            for branch in ("fix/pr-1", "fix/pr-2", "fix/by-hand"):
                git("push", "-q", "origin", f"main:refs/heads/{branch}", cwd=world.app.dir)
            world.declare("prod", branch="main", tier="production")
            previews = Previews(
                bench.writer, engine.ledger, engine.secrets.credential, engine.status.all
            )
            daemon = Daemon(engine, interval=300, jitter=0, previews=previews, previews_poll=3600)
            previews.on_commit = daemon.trigger
            plane = DaemonControlPlane(engine, bench.writer, daemon.trigger, previews)
            authority = TokenAuthority(AuthConfig(secret=b"b" * 32))
            bench.client = TestClient(create_app(plane, authority, webhook_secret=lambda: SECRET))
            daemon.start()
            print(f"world: instance {world.instance}, project {world.project}; proxy at "
                  f"https://127.0.0.1:{ingress.https_port}; health checks every "
                  f"{args.health_interval} s")  # fmt: skip
            started = time.monotonic()
            if bench.served("prod", 600) is None:
                raise RuntimeError("production never answered through the proxy")
            print(f"\nsetup: production (its image build, -i, proxy, certificate): "
                  f"{time.monotonic() - started:.1f} s")  # fmt: skip
            size = fill(bench, "prod", args.size_mb)
            print(f"production's database: {size:.0f} MB")

            # Baseline: the same environment, declared by a person's commit.
            started = time.monotonic()
            bench.writer.submit(
                changes.Operation(
                    "create",
                    bench.key("by-hand"),
                    {"branch": "fix/by-hand", "tier": "ephemeral", "overrides": {"demo": True}},
                ),
                ANN,
            )
            daemon.trigger("bench")
            done = bench.served("by-hand", 600)
            baseline = (done or float("inf")) - started
            print(f"\nbaseline: a person's commit declaring the environment -> HTTPS 200: "
                  f"{baseline:.1f} s")  # fmt: skip

            print("\n1. fresh preview (seed: demo)")
            set_policies(bench, {"bases": ["main"], "seed": "demo"}, "previews: demo")
            started = bench.deliver(1, "fix/pr-1")
            done = bench.served("pr-1", 600)
            fresh = (done or float("inf")) - started
            print(f"   delivery -> HTTPS 200: {fresh:.1f} s; against the baseline "
                  f"{fresh / baseline:.2f}x")  # fmt: skip
            summary.append(f"fresh preview: {fresh:.1f} s (aim under {SPIN_UP_AIM:.0f} s: "
                           f"{verdict(fresh < SPIN_UP_AIM)}); {fresh / baseline:.2f}x a "
                           "person's commit")  # fmt: skip

            print(f"\n2. masked copy of production ({size:.0f} MB) through the golden copy")
            set_policies(bench, {"bases": ["main"], "seed": {"copy-of": "prod"}}, "previews: copy")
            daemon.trigger("bench")
            refresh_started = time.monotonic()
            engine.data.refresh_golden(bench.key("prod"), "bench")
            refresh = time.monotonic() - refresh_started
            print(f"   the golden copy's refresh (apart, in the background in real life): "
                  f"{refresh:.1f} s")  # fmt: skip
            started = bench.deliver(2, "fix/pr-2")
            done = bench.served("pr-2", 900)
            copied = (done or float("inf")) - started
            print(f"   delivery -> HTTPS 200: {copied:.1f} s; against the fresh preview "
                  f"{copied / fresh:.2f}x")  # fmt: skip
            how = [
                f"{e.get('reason')}: {e.get('message')}"
                for e in engine.status.events(str(bench.key("pr-2")))
                if e.get("type") == "Copied"
            ]
            print(f"   how its database was made: {how[0] if how else 'no copy event recorded'}")
            summary.append(f"copy preview ({size:.0f} MB): {copied:.1f} s (aim under "
                           f"{COPY_AIM:.0f} s: {verdict(copied < COPY_AIM)}); golden refresh "
                           f"apart: {refresh:.1f} s")  # fmt: skip

            print("\n3. wake from sleep")
            bench.writer.submit(
                changes.Operation(
                    "update", bench.key("pr-1"), {"overrides": {"sleep_after": "2s"}}
                ),
                ANN,
            )
            daemon.trigger("bench")
            bench.wait(lambda: bench.health("pr-1") == Health.ASLEEP.value, 300, "pr-1 asleep")
            started = time.monotonic()
            done = bench.served("pr-1", 300)
            wake = (done or float("inf")) - started
            print(f"   first request -> HTTPS 200: {wake:.1f} s; against the fresh spin-up "
                  f"{wake / fresh:.2f}x")  # fmt: skip
            summary.append(f"wake from sleep: {wake:.1f} s ({wake / fresh:.2f}x a new preview)")
    finally:
        with uninterruptible():
            if daemon is not None:
                daemon.shutdown()
            forge.close()
            world.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    print("\nsummary")
    for line in summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    run_main(main, "interrupted: what was created is removed")
