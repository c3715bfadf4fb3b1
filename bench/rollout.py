"""What a deploy costs the people using an environment, and a new one the person making it.

One world (real git remotes, Docker, PostgreSQL, the Odoo stand-in) whose ``odooops.yaml`` has
an ``ingress`` block, so the engine runs its own Caddy with certificates from pebble, as in
``tests/integration/test_rollout.py``. Environments are staging ones; the engine has the
daemon's own Docker health-check interval (5 s; 1 s with ``--quick``, which keeps it short
and makes its ratios kinder than the full run's, since several figures wait on that interval).
Client threads send ``GET /web/login`` over HTTPS through the proxy; a request fails on a
transport error or an answer that is not the stand-in's 200 login page (a maintenance page
fails). Four parts, each against a baseline measured in the same run:

* **code-only deploy**: an app commit that changes no addon folder, then a reconcile (the
  image build and the blue/green switch) under load: failed requests (aim: none) and p99
  against the same load with no deploy;
* **new environment**: from the state commit to Healthy through the engine (declare, one
  reconcile) against the sequence a person would type in the same run: ``psql`` CREATE ROLE
  and DATABASE, ``odoo -i`` of the same modules in a one-off ``docker run --rm``, ``docker run
  -d``, then polling ``/web/health``. Aim: 1.5x the bare sequence plus the commit's own cost.
  Where the engine's time goes is printed from its steps (``engine.steps.run`` and the driver
  calls inside, timed);
* **module update window**: a commit that bumps ``acme_base`` with a migration that reads the
  whole bulk table (1 GB of rows in the environment's database; 16 MB with ``--quick``), then
  a reconcile under load: the time the environment does not serve, against ``odoo -u`` with the
  same arguments run by hand in a one-off container on a twin of the database taken before.
  Aim: under 1.2x the bare update plus 2 s;
* **rollback after a failed update**: a commit whose migration raises: from the moment the
  failed ``odoo -u`` exits until the previous version serves again. Aim: under 10 s.

Whatever the engine does for an update (on the live database, or on a copy behind a
maintenance page) is what is measured; the step list printed with each part says which.
Figures are printed, nothing asserted. Run from the repository root::

    .venv/bin/python bench/rollout.py [--quick]
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402
import httpx  # noqa: E402
import psycopg  # noqa: E402
import yaml  # noqa: E402
from testcontainers.core.config import testcontainers_config  # noqa: E402
from testcontainers.core.wait_strategies import LogMessageWaitStrategy  # noqa: E402

from bench._cli import Options, run_main, title, uninterruptible, verdict  # noqa: E402
from reconciler.core.model import DesiredEnvironment, EnvKey  # noqa: E402
from reconciler.drivers.docker import DockerDriver  # noqa: E402
from reconciler.engine.engine import Engine, EngineConfig  # noqa: E402
from reconciler.engine.status import Health  # noqa: E402
from tests.integration import pgadmin  # noqa: E402
from tests.integration.containers import (  # noqa: E402
    LABELS,
    publish_on_loopback,
    running,
    throwaway,
)
from tests.integration.world import World, fixture_images, git  # noqa: E402

DOMAIN = "rollout.odooops.test"
DAEMON_HEALTH_INTERVAL = EngineConfig(state_url="", data_dir=Path()).health_interval
CLIENTS = 4
PAUSE = 0.01  # between a client's requests: the load leaves the 2 cores to the deploy
LOGIN_MARK = 'name="login"'  # the stand-in's login page, not a maintenance page
ROW_BYTES = 1000  # a bulk row: a bigint and 960 characters, stored uncompressed
MANIFEST = (REPO_ROOT / "examples" / "acme-addons" / "acme_base" / "__manifest__.py").read_text()
OLD_VERSION = "19.0.1.0.0"


# ----------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Span:
    """One timed call: a step of the engine or a driver call inside one."""

    label: str
    depth: int  # 0 the refresh, 1 a step, 2 a call inside a step
    started: float
    ended: float
    error: str = ""
    detail: tuple[str, ...] = ()


class Trace:
    """When the engine's steps, and the slow calls inside them, start and end.

    The methods are wrapped on the instances the steps hold (the engine's Docker driver,
    data operations and routes are the very objects ``Steps`` calls), so nothing of the
    product changes but the clock around it.
    """

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def wrap(
        self,
        owner: object,
        attr: str,
        label: Callable[..., str],
        detail: Callable[..., tuple[str, ...]] = lambda result, *a, **k: (),
        depth: int = 2,
    ) -> None:
        """Time ``owner.attr``; ``label`` and ``detail`` (given the result first) are called
        with the call's arguments."""
        real = getattr(owner, attr, None)
        if real is None:  # a method another version of the engine does not have
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            error, extra = "", cast(tuple[str, ...], ())
            try:
                result = real(*args, **kwargs)
                extra = detail(result, *args, **kwargs)
                return result
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                span = Span(label(*args, **kwargs), depth, started, time.monotonic(), error, extra)
                with self._lock:
                    self.spans.append(span)

        setattr(owner, attr, timed)

    def between(self, start: float, end: float) -> list[Span]:
        with self._lock:
            return sorted(
                (s for s in self.spans if s.started >= start and s.ended <= end),
                key=lambda s: s.started,
            )

    def one_offs(self, start: float, end: float) -> list[Span]:
        return [s for s in self.between(start, end) if s.label.startswith("odoo ")]


def traced(engine: Engine) -> Trace:
    trace = Trace()
    trace.wrap(
        engine, "refresh", lambda *a, **k: "refresh (fetch, resolve, observe, plan)", depth=0
    )
    trace.wrap(
        engine.steps,
        "run",
        lambda want, action: f"step {action.kind.value} {action.target}",
        depth=1,
    )
    docker_driver, data, routes = engine.docker, engine.data, engine.routes
    trace.wrap(docker_driver, "build_image", lambda *a, **k: "docker build")
    trace.wrap(
        docker_driver,
        "run_once",
        lambda want, password, args, *a, **k: (
            "odoo " + " ".join([*([k["command"]] if k.get("command") else []), *_short(args)])
        ),
        lambda run, want, password, args, *a, **k: (str(run.code), *args),
    )
    trace.wrap(docker_driver, "create_odoo", lambda *a, **k: "docker create (odoo)")
    trace.wrap(docker_driver, "start", lambda name, *a, **k: f"docker start {name}")
    trace.wrap(docker_driver, "stop", lambda name, *a, **k: f"docker stop {name}")
    trace.wrap(docker_driver, "wait_healthy", lambda name, *a, **k: f"health wait {name}")
    trace.wrap(data, "ensure_neutralized", lambda *a, **k: "neutralisation check")
    trace.wrap(data, "module_snapshot", lambda *a, **k: "module table read")
    trace.wrap(data, "update_on_copy", lambda *a, **k: "update on a copy (copy, -u, swap)")
    trace.wrap(routes, "attach", lambda *a, **k: "proxy attach")
    trace.wrap(routes, "serve", lambda key, *a, **k: "proxy serve" + _page(k))
    trace.wrap(routes, "release", lambda *a, **k: "proxy release")
    return trace


def _short(args: Sequence[str]) -> list[str]:
    """A one-off's arguments without the paths every run shares."""
    return [a for a in args if not a.startswith(("--addons-path", "--data-dir"))]


def _page(kwargs: dict[str, Any]) -> str:
    return " (maintenance page)" if kwargs.get("maintenance") is not None else ""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank; nan without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


# ----------------------------------------------------------------------- the proxy side
@dataclass
class Ingress:
    """The daemon's proxy as the clients reach it."""

    world: World
    https_port: int
    trust: ssl.SSLContext

    def host(self, env: str) -> str:
        return f"{env}.{self.world.project}.{DOMAIN}"

    def get(self, client: httpx.Client, env: str, path: str, **headers: str) -> httpx.Response:
        return client.get(
            f"https://127.0.0.1:{self.https_port}{path}",
            headers={"Host": self.host(env), **headers},
            extensions={"sni_hostname": self.host(env)},
        )


@dataclass(frozen=True)
class Sample:
    """One request: when it went out and came back, and whether the environment served it."""

    started: float
    ended: float
    ok: bool
    outcome: str


@dataclass
class Load:
    """Client threads sending ``GET /web/login`` through the proxy, each after the last is
    answered. Half keep their connection alive, half open one per request. A keep-alive
    connection the proxy closed as idle just as a request went out is retried once (what
    browsers do; RFC 9110 9.2.2), and counted apart."""

    ingress: Ingress
    env: str
    samples: list[Sample] = field(default_factory=list)
    retried: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._client, args=(n % 2 == 0,), daemon=True)
            for n in range(CLIENTS)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self, keep_alive: bool) -> None:
        headers = {} if keep_alive else {"Connection": "close"}
        with httpx.Client(verify=self.ingress.trust, timeout=15) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                ok, outcome = self._one(client, keep_alive, headers)
                sample = Sample(started, time.monotonic(), ok, outcome)
                with self._lock:
                    self.samples.append(sample)
                time.sleep(PAUSE)

    def _one(
        self, client: httpx.Client, keep_alive: bool, headers: dict[str, str]
    ) -> tuple[bool, str]:
        for attempt in (1, 2):
            try:
                answer = self.ingress.get(client, self.env, "/web/login", **headers)
                served = answer.status_code == 200 and LOGIN_MARK in answer.text
                return served, str(answer.status_code)
            except httpx.RemoteProtocolError as exc:
                if keep_alive and attempt == 1 and "without sending" in str(exc):
                    with self._lock:
                        self.retried += 1
                    continue
                return False, f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:
                return False, f"{type(exc).__name__}: {exc}"
        return False, "unreachable"

    def between(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.started <= end]

    def wait_served_after(self, since: float, timeout: float) -> float | None:
        """When the first served request that went out after ``since`` came back."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [s.ended for s in self.samples if s.ok and s.started >= since]
            if done:
                return min(done)
            time.sleep(0.05)
        return None


@dataclass(frozen=True)
class Outage:
    """The requests of a window that were not served, and how long the environment was out."""

    requests: int
    failed: int
    first_failed: float | None  # when the first failed request went out
    served_again: float | None  # when the first served request after the last failed came back
    outcomes: tuple[str, ...]

    @property
    def seconds(self) -> float:
        if self.first_failed is None:
            return 0.0
        if self.served_again is None:
            return float("inf")
        return self.served_again - self.first_failed

    def when(self, origin: float) -> str:
        """The outage as offsets from ``origin``, the reconcile's start."""
        if self.first_failed is None:
            return "served throughout"
        end = "never" if self.served_again is None else f"+{self.served_again - origin:.2f}s"
        return f"out from +{self.first_failed - origin:.2f}s to {end}"


def outage(samples: Sequence[Sample]) -> Outage:
    bad = [s for s in samples if not s.ok]
    if not bad:
        return Outage(len(samples), 0, None, None, ())
    last_bad = max(s.started for s in bad)
    after = [s.ended for s in samples if s.ok and s.started > last_bad]
    outcomes: dict[str, int] = {}
    for s in bad:
        outcomes[s.outcome[:90]] = outcomes.get(s.outcome[:90], 0) + 1
    return Outage(
        len(samples),
        len(bad),
        min(s.started for s in bad),
        min(after) if after else None,
        tuple(f"{n} x {what}" for what, n in sorted(outcomes.items(), key=lambda i: -i[1])),
    )


@contextlib.contextmanager
def proxied(world: World, images: dict[str, str]) -> Iterator[tuple[Ingress, Path]]:
    """Pebble on the proxy's network and an ``ingress`` block in the state, as the
    ``routed`` fixture of test_rollout.py does; pebble and the network go at the end (the
    world's cleanup removes the proxy itself, by its instance label)."""
    client = docker.from_env()
    proxy_net = f"odooops-{world.instance}-proxy"
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
        stack.callback(shutil.rmtree, admin_dir, True)
        stack.callback(client.close)
        stack.callback(_remove_network, client, proxy_net)
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
        ca = cast(bytes, inner.exec_run(["cat", "/run/pebble/ca.pem"]).output).decode()
        management = pebble.get_exposed_port(15000)
        root = httpx.get(
            f"https://127.0.0.1:{management}/roots/0",
            verify=ssl.create_default_context(cadata=ca),
            timeout=10,
        ).text
        roots_file = world.secrets_dir / "acme-roots.pem"
        roots_file.write_text(ca)
        https_port, http_port = free_port(), free_port()
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
        yield Ingress(world, https_port, ssl.create_default_context(cadata=root)), admin_dir


def _remove_network(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        net = client.networks.get(name)
        net.reload()
        for attached in net.containers:
            net.disconnect(attached, force=True)
        net.remove()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------------------ by hand
class ByHand:
    """What a person types, timed as typed: ``psql`` and the ``docker`` CLI.

    Everything it makes is named ``obench_<token>_*`` (databases, roles) or
    ``obench-<token>-*`` (containers, volumes) and labelled ``odooops.bench=<token>``.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.label = f"odooops.bench={token}"
        self.databases: list[str] = []
        self.roles: list[str] = []
        self.volumes: list[str] = []

    def name(self, what: str) -> str:
        return f"obench_{self.token}_{what}"

    def psql(self, *commands: str) -> None:
        argv = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAt"]
        for command in commands:
            argv += ["-v", "ON_ERROR_STOP=1", "-c", command]
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)

    def odoo_env(self, user: str, password: str) -> list[str]:
        """The stand-in's contract: the PG* variables (odoo 19 reads them natively), the
        shared server at ``db``, mapped to the host as the engine maps it."""
        return [
            "--add-host", "db:host-gateway",
            "-e", "PGHOST=db", "-e", "PGPORT=5432",
            "-e", f"PGUSER={user}", "-e", f"PGPASSWORD={password}",
        ]  # fmt: skip

    def docker(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def new_environment(self, n: int, image: str, want: DesiredEnvironment) -> float:
        """CREATE ROLE and DATABASE, ``odoo -i`` in a one-off container, ``docker run -d``,
        poll ``/web/health``: seconds from the first command to the first 200."""
        role, database = self.name(f"role{n}"), self.name(f"db{n}")
        volume, container = f"obench-{self.token}-data{n}", f"obench-{self.token}-odoo{n}"
        password = secrets.token_urlsafe(16)
        port = free_port()
        common = DockerDriver.common_args(want)  # --addons-path, --data-dir
        self.roles.append(role)
        self.databases.append(database)
        self.volumes.append(volume)
        started = time.monotonic()
        self.psql(
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
            f"CREATE DATABASE {database} OWNER {role}",
        )
        self.docker(
            "run", "--rm", "--label", self.label, "--name", f"{container}-init",
            "-v", f"{volume}:/var/lib/odoo", *self.odoo_env(role, password), image,
            "odoo", *common, "-d", database, "-i", ",".join(want.modules), "--stop-after-init",
        )  # fmt: skip
        self.docker(
            "run", "-d", "--label", self.label, "--name", container,
            "-p", f"127.0.0.1:{port}:8069", "-v", f"{volume}:/var/lib/odoo",
            *self.odoo_env(role, password), image,
            "odoo", *common, f"--database={database}", f"--db-filter=^{database}$",
        )  # fmt: skip
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://127.0.0.1:{port}/web/health").status_code == 200:
                        return time.monotonic() - started
                time.sleep(0.05)
        raise RuntimeError(f"{container} did not answer /web/health within 120 s")

    def update(self, image: str, role: str, password: str, args: Sequence[str]) -> float:
        """``odoo <args>`` in a one-off container: the seconds it took."""
        started = time.monotonic()
        done = self.docker(
            "run", "--rm", "--label", self.label, "--name", f"obench-{self.token}-update",
            *self.odoo_env(role, password), image, "odoo", *args,
        )  # fmt: skip
        seconds = time.monotonic() - started
        if "Running upgrade" not in done.stdout + done.stderr:  # the same work as the engine's
            raise RuntimeError(f"the bare update ran no migration:\n{done.stderr[-2000:]}")
        return seconds

    def cleanup(self) -> None:
        client = docker.from_env()
        try:
            for c in client.containers.list(all=True, filters={"label": self.label}):
                c.remove(force=True, v=True)
            for volume in self.volumes:
                with contextlib.suppress(docker.errors.NotFound):
                    client.volumes.get(volume).remove(force=True)
        finally:
            client.close()
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            pattern = f"obench\\_{self.token}\\_%"
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern]
            ).fetchall()
            for (name,) in rows:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [pattern]
            ).fetchall()
            for (name,) in rows:
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')


# -------------------------------------------------------------------------------- run
@dataclass
class Bench:
    """One run's world, its engine and proxy, the clock on its steps, and the summary."""

    world: World
    engine: Engine
    ingress: Ingress
    trace: Trace
    hand: ByHand
    lines: list[str] = field(default_factory=list)  # the summary, printed at the end

    def key(self, env: str) -> EnvKey:
        return EnvKey(self.world.project, env)

    def want(self, env: str) -> DesiredEnvironment:
        snapshot = self.engine.snapshot
        assert snapshot is not None
        return snapshot.desired.environments[self.key(env)]

    def converge(self, env: str) -> None:
        result = self.engine.reconcile()
        status = self.engine.status.get(str(self.key(env)))
        if result.errors or status is None or status.health is not Health.HEALTHY:
            problem = result.errors or result.state_error or status
            raise RuntimeError(f"{env} did not converge: {problem}")

    def steps(self, start: float, end: float) -> None:
        """The engine's steps and the calls inside them, as offsets from ``start``."""
        for span in self.trace.between(start, end):
            extra = f" -> exit {span.detail[0]}" if span.detail else ""
            failed = f" !{span.error}" if span.error else ""
            print(
                f"    {span.started - start:7.2f}s {span.ended - span.started:7.2f}s  "
                f"{'  ' * span.depth}{span.label[:88]}{extra}{failed}"
            )

    def condition(self, env: str) -> str:
        status = self.engine.status.get(str(self.key(env)))
        found = [c for c in (status.conditions if status else ()) if c.type == "Reconciling"]
        return found[0].message if found else ""


def main() -> int:
    options = Options(
        __doc__, "16 MB of bulk data, 2 s of baseline load, one new environment, 1 s health checks"
    )
    options.size("--size-mb", 1024, 16, "bulk data in the updated environment's database, MB")
    options.size("--baseline-seconds", 10, 2, "load with no deploy, the latency baseline")
    options.size("--rounds", 3, 1, "new environments, each against the bare sequence, interleaved")
    options.size(
        "--health-interval",
        DAEMON_HEALTH_INTERVAL,
        1,
        "the engine's Docker health-check interval, s (the daemon's is the full default)",
    )
    args = options.parse(None)
    print(title(__doc__))
    pgadmin.export()
    # The bench removes its own containers; testcontainers' reaper image is not pulled.
    testcontainers_config.ryuk_disabled = True
    images = fixture_images()
    root = Path(tempfile.mkdtemp(prefix="odooops-bench-rollout-"))
    world = World(root, images, 30000 + (int(time.time()) % 19) * 20)  # above the test bands
    hand = ByHand(secrets.token_hex(3))
    summary: list[str] = []
    try:
        with proxied(world, images) as (ingress, admin_dir):
            engine = world.engine(proxy_dir=admin_dir, health_interval=args.health_interval)
            bench = Bench(world, engine, ingress, traced(engine), hand, summary)
            print(f"world: daemon instance {world.instance}, project {world.project}; bench "
                  f"token {hand.token}")  # fmt: skip
            print(
                f"engine: Docker health-check interval {args.health_interval} s (the daemon's: "
                f"{DAEMON_HEALTH_INTERVAL} s); "
                f"{CLIENTS} clients through the proxy at https://127.0.0.1:{ingress.https_port}"
            )
            setup(bench)
            code_only_deploy(bench, args.baseline_seconds)
            new_environment(bench, args.rounds)
            update_and_rollback(bench, args.size_mb)
    finally:
        with uninterruptible():
            hand.cleanup()
            world.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    print("\nsummary")
    for line in summary:
        print(f"  {line}")
    return 0


def setup(bench: Bench) -> None:
    started = time.monotonic()
    bench.world.declare("web", branch="release/v1", tier="staging")
    bench.converge("web")
    proxy = bench.engine.routes.proxy
    assert proxy is not None
    proxy.wait_certificates([bench.ingress.host("web")], timeout=60)
    print(f"\nsetup: environment web (image build, -i, proxy, certificate): "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip


def code_only_deploy(bench: Bench, baseline_seconds: int) -> None:
    print("\n1. code-only deploy behind the proxy (an app commit changing no addon folder)")
    with Load(bench.ingress, "web") as load:
        time.sleep(0.5)  # connections open
        base_start = time.monotonic()
        time.sleep(baseline_seconds)
        base_end = time.monotonic()
        bench.world.app.write({"NOTES.md": "v2, no addon changed\n"}, "notes", "release/v1")
        started = time.monotonic()
        result = bench.engine.reconcile()
        ended = time.monotonic()
        time.sleep(1)
        stop = time.monotonic()
    if result.errors:
        raise RuntimeError(f"the code-only deploy failed: {result.errors}")
    baseline = [s.ended - s.started for s in load.between(base_start, base_end)]
    during = load.between(started, stop)
    out = outage(during)
    latencies = [s.ended - s.started for s in during if s.ok]
    b50, b99 = percentile(baseline, 50), percentile(baseline, 99)
    d50, d99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"  {'window':<34} {'requests':>8} {'failed':>7} {'p50':>9} {'p99':>9} {'max':>9}")
    print(f"  {'no deploy (baseline)':<34} {len(baseline):>8} {0:>7} {b50 * 1000:>7.1f}ms "
          f"{b99 * 1000:>7.1f}ms {max(baseline, default=0) * 1000:>7.1f}ms")  # fmt: skip
    print(f"  {f'deploy ({ended - started:.1f} s reconcile + 1 s)':<34} {out.requests:>8} "
          f"{out.failed:>7} {d50 * 1000:>7.1f}ms {d99 * 1000:>7.1f}ms "
          f"{max(latencies, default=0) * 1000:>7.1f}ms")  # fmt: skip
    print(f"  p99 during the deploy: {ratio(d99, b99):.1f}x the baseline's; keep-alive "
          f"requests retried once after an idle close: {load.retried}")  # fmt: skip
    for what in out.outcomes[:5]:
        print(f"    failed: {what}")
    print("  the reconcile's steps:")
    bench.steps(started, ended)
    bench.lines.append(
        f"code-only deploy: {out.failed} of {out.requests} requests failed (aim 0): "
        f"{verdict(out.failed == 0)}; p99 {d99 * 1000:.0f} ms, {ratio(d99, b99):.1f}x "
        "the baseline's"
    )


def new_environment(bench: Bench, rounds: int) -> None:
    print("\n2. new environment: state commit to Healthy, against the sequence typed by hand")
    engine_s: list[float] = []
    commit_s: list[float] = []
    hand_s: list[float] = []
    proxied_s: list[float] = []
    app = bench.world.app
    for n in range(1, rounds + 1):  # a branch each (one per environment), main's tree: no build
        git("push", "-q", "origin", f"refs/remotes/origin/main:refs/heads/new{n}", cwd=app.dir)
    for n in range(1, rounds + 1):
        env = f"new{n}"
        started = time.monotonic()
        bench.world.declare(env, branch=env, tier="staging")
        committed = time.monotonic()
        bench.converge(env)
        ended = time.monotonic()
        engine_s.append(ended - started)
        commit_s.append(committed - started)
        status = bench.engine.status.get(str(bench.key(env)))
        assert status is not None
        print(f"  {env}: commit {committed - started:.2f} s, then reconcile "
              f"{ended - committed:.2f} s ({status.url}); its steps:")  # fmt: skip
        bench.steps(started, ended)
        served = first_served(bench, env, 60)
        proxied_s.append(served - started if served is not None else float("inf"))
        want = bench.want(env)
        hand_s.append(bench.hand.new_environment(n, want.image, want))
        print(
            f"  by hand {n}: psql CREATE ROLE/DATABASE, docker run --rm odoo -i "
            f"{','.join(want.modules)}, docker run -d, poll /web/health: {hand_s[-1]:.2f} s"
        )
    eng, bare, commit = (statistics.median(v) for v in (engine_s, hand_s, commit_s))
    proxy = statistics.median(proxied_s)
    aim = 1.5 * bare + commit
    print(f"  {'path':<44} {'median':>8} {'x bare':>7}")
    print(f"  {'by hand (the bare sequence)':<44} {bare:>7.2f}s {1:>7.1f}")
    print(f"  {'engine: commit to Healthy':<44} {eng:>7.2f}s {ratio(eng, bare):>7.1f}")
    print(f"  {'  of which the state commit (git push)':<44} {commit:>7.2f}s")
    print(f"  {'engine: commit to first 200 via the proxy':<44} {proxy:>7.2f}s "
          f"{ratio(proxy, bare):>7.1f}")  # fmt: skip
    bench.lines.append(
        f"new environment: {eng:.1f} s commit to Healthy against {bare:.1f} s by hand "
        f"({ratio(eng, bare):.1f}x); aim 1.5x + the commit ({aim:.1f} s): {verdict(eng <= aim)}"
    )


def first_served(bench: Bench, env: str, timeout: float) -> float | None:
    """When ``env`` first answered its login page through the proxy (a new host waits for
    its certificate)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=bench.ingress.trust, timeout=5) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ssl.SSLError):
                answer = bench.ingress.get(client, env, "/web/login")
                if answer.status_code == 200 and LOGIN_MARK in answer.text:
                    return time.monotonic()
            time.sleep(0.1)
    return None


def fill(bench: Bench, env: str, size_mb: int) -> float:
    """A plain table of ``size_mb`` MB in ``env``'s database, owned by its role (as an
    addon's table is), filled on two connections; the database's size afterwards, MB."""
    key = bench.key(env)
    rows = size_mb * 1024 * 1024 // ROW_BYTES
    halves = [(1, rows // 2), (rows // 2 + 1, rows)]

    def insert(low: int, high: int) -> None:
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname=key.database, autocommit=True
        ) as conn:
            conn.execute(f'SET ROLE "{key.role}"')
            conn.execute(
                "INSERT INTO bench_bulk SELECT g, repeat(md5(g::text), 30) "
                "FROM generate_series(%s::bigint, %s::bigint) g",
                [low, high],
            )

    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname=key.database, autocommit=True
    ) as conn:
        conn.execute(f'SET ROLE "{key.role}"')
        conn.execute("CREATE TABLE bench_bulk (id bigint, payload text)")
    workers = [threading.Thread(target=insert, args=half) for half in halves]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname=key.database, autocommit=True
    ) as conn:
        conn.execute("VACUUM ANALYZE bench_bulk")
        conn.execute("CHECKPOINT")
        (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
        (found,) = conn.execute("SELECT count(*) FROM bench_bulk").fetchone() or (0,)
    if found != rows:
        raise RuntimeError(f"bench_bulk has {found} rows, not {rows}")
    return int(size) / 2**20


def twin(bench: Bench, env: str) -> str:
    """A copy of ``env``'s database as it is now, owned by its role: the bare update's."""
    key = bench.key(env)
    name = bench.hand.name("twin")
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        for attempt in range(20):  # the template must have no session: a health check may
            try:
                conn.execute(
                    f'CREATE DATABASE "{name}" TEMPLATE "{key.database}" OWNER "{key.role}" '
                    "STRATEGY FILE_COPY"
                )
                return name
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.25)
    return name


def bump(version: str, script: str) -> dict[str, str]:
    """acme_base at ``version`` with one migration script for it."""
    folder = f"acme_base/migrations/{version}"
    return {
        "acme_base/__manifest__.py": MANIFEST.replace(OLD_VERSION, version),
        f"{folder}/{script.split(':', 1)[0]}.py": script.split(":", 1)[1],
    }


READ_ALL = (
    "post-bench:def migrate(cr, version):\n"
    "    cr.execute('SELECT count(*), sum(length(payload)) FROM bench_bulk')\n"
)
FAIL = (
    "pre-bench:def migrate(cr, version):\n"
    "    raise RuntimeError('bench: this update fails on purpose')\n"
)


def update_and_rollback(bench: Bench, size_mb: int) -> None:
    world, key = bench.world, bench.key("web")
    print(f"\n3. module update of web with {size_mb:,} MB of bulk data")
    started = time.monotonic()
    size = fill(bench, "web", size_mb)
    twin_db = twin(bench, "web")
    print(f"  database filled: {size:,.0f} MB in {time.monotonic() - started:.1f} s, "
          f"and a twin for the bare update")  # fmt: skip

    # ---- the update through the engine, under load
    world.app.write(bump("19.0.1.1.0", READ_ALL), "acme_base 1.1", branch="release/v1")
    with Load(bench.ingress, "web") as load:
        time.sleep(0.5)
        started = time.monotonic()
        result = bench.engine.reconcile()
        ended = time.monotonic()
        load.wait_served_after(ended, 30)
        time.sleep(0.5)
        stop = time.monotonic()
    if result.errors:
        raise RuntimeError(f"the module update failed: {result.errors}")
    window = outage(load.between(started, stop))
    updates = [s for s in bench.trace.one_offs(started, ended) if "-u" in s.detail[1:]]
    print(
        f"  through the engine: reconcile {ended - started:.2f} s; not served "
        f"{window.seconds:.2f} s ({window.failed} of {window.requests} requests failed; "
        f"{window.when(started)})"
    )
    for what in window.outcomes[:4]:
        print(f"    failed: {what}")
    print(f"  what the engine did: {bench.condition('web')[:300]}")
    bench.steps(started, ended)

    # ---- the same -u by hand, on the twin taken before the update
    want = bench.want("web")
    if not updates:
        raise RuntimeError("the engine ran no odoo -u: the commit changed no addon?")
    span = updates[-1]
    engine_args = _short(span.detail[1:])
    args = [*DockerDriver.common_args(want), *_on(engine_args, twin_db)]
    bare = bench.hand.update(want.image, key.role, bench.engine.password(key), args)
    aim = 1.2 * bare + 2
    print(f"  by hand: docker run --rm odoo {' '.join(_on(engine_args, twin_db))}: {bare:.2f} s "
          f"(the engine's own -u ran {span.ended - span.started:.2f} s)")  # fmt: skip
    bench.lines.append(
        f"module update ({size:,.0f} MB): not served {window.seconds:.1f} s against a bare "
        f"-u of {bare:.1f} s; aim 1.2x + 2 s ({aim:.1f} s): {verdict(window.seconds <= aim)}"
    )
    served_revision = want.revision

    # ---- a failing update: how long until the old version serves again
    world.app.write(bump("19.0.1.2.0", FAIL), "acme_base 1.2 (fails)", branch="release/v1")
    with Load(bench.ingress, "web") as load:
        time.sleep(0.5)
        started = time.monotonic()
        result = bench.engine.reconcile()
        ended = time.monotonic()
        load.wait_served_after(ended, 60)
        time.sleep(0.5)
        stop = time.monotonic()
    error = result.errors.get(key)
    failed_runs = [s for s in bench.trace.one_offs(started, ended) if s.detail[:1] != ("0",)]
    window = outage(load.between(started, stop))
    print("\n4. rollback after a failed update (a pre-migration of acme_base raises)")
    print(
        f"  reconcile {ended - started:.2f} s: "
        f"{error.code + ': ' + error.message.splitlines()[0][:160] if error else 'no error!'}"
    )
    print(f"  not served during it: {window.seconds:.2f} s ({window.failed} of "
          f"{window.requests} requests failed; {window.when(started)})")  # fmt: skip
    for what in window.outcomes[:4]:
        print(f"    failed: {what}")
    bench.steps(started, ended)
    container = world.containers().get(key.odoo_container)
    revision = container.labels.get("odooops.revision", "") if container is not None else ""
    old = revision == served_revision
    print(f"  serving afterwards: revision {revision[:12] or 'none'} "
          f"({'the previous one' if old else 'NOT the previous one'})")  # fmt: skip
    if error is None or not failed_runs:
        bench.lines.append("rollback: the failing update did not fail: NOT MEASURED")
        return
    failed_at = failed_runs[-1].ended
    if window.first_failed is None or (
        window.served_again is not None and window.served_again <= failed_at
    ):
        back = 0.0
        how = "served throughout after the failure"
    else:
        back = (window.served_again or float("inf")) - failed_at
        how = "from the failed -u's exit to the first request served"
    print(f"  rollback: {back:.2f} s ({how})")
    bench.lines.append(
        f"rollback after a failed update: {back:.1f} s ({how}; the old revision "
        f"{'serves' if old else 'does NOT serve'}); aim under 10 s: {verdict(back < 10 and old)}"
    )


def _on(args: Sequence[str], database: str) -> list[str]:
    """The engine's -u arguments with ``-d`` naming ``database`` instead."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "-d":
            out[i + 1] = database
    return out


if __name__ == "__main__":
    run_main(main, "the world's containers and databases and the bench's own were removed")
