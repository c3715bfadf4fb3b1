"""How planning scales: time and memory per environment, and the cost of a no-op pass.

The reconciler recomputes everything on every pass, so what a pass costs per environment decides
how many environments one daemon can hold. Two aims come from the issue, and both are printed as
ratios against a baseline measured in the same run (absolute figures vary too much between
machines to mean anything on their own):

* Part A (pure, no services): ``planner.plan`` (no-op, and with drift and pruning) and
  ``desired.resolve`` (with an in-memory app repository) for 10, 100 and 1,000 environments.
  Growth is the cost per environment at N divided by the cost per environment at the smallest
  N; linear scaling keeps it near 1.0. Where the in-memory stand-in is much cheaper than the
  real thing (git), the work is also counted, so its growth shows even when the clock's does not.
  Then the issue's case for the app config cache: resolve at the largest N, every environment on
  its own revision and all sharing one ``.odooops.yaml``, on a pass whose revisions are all new
  (caches empty), with the cache keyed by content and label (before) and by content alone
  (after, the engine's). The aim is under 10 % of before.
* Part B (live Docker and PostgreSQL): a no-op pass over 100 environments, observed through a
  real ``Engine.observe`` and then planned, against the bare listing calls such a pass cannot
  avoid. The aim is a ratio of at most 2.0. Resolution (git, ``.odooops.yaml``) and the status
  writes of ``Engine.reconcile`` are outside this figure: part A covers resolution.

Nothing here asserts: a benchmark reports, a test decides. Run from the repository root::

    .venv/bin/python bench/plan_scale.py [--quick] [--skip-live]
"""

from __future__ import annotations

import functools
import gc
import hashlib
import io
import ipaddress
import os
import secrets
import statistics
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/plan_scale.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402
import docker.types  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench._cli import Options, count, run_main, timed, uninterruptible, verdict  # noqa: E402
from reconciler.core import validation  # noqa: E402
from reconciler.core.buildplan import APP_ROOT, FileTree  # noqa: E402
from reconciler.core.desired import (  # noqa: E402
    APP_CONFIG,
    AppConfigLoader,
    BranchHead,
    Inputs,
    resolve,
)
from reconciler.core.errors import DriverError  # noqa: E402
from reconciler.core.model import (  # noqa: E402
    BranchRule,
    DatabaseServer,
    Desired,
    DesiredEnvironment,
    EnvironmentSpec,
    EnvKey,
    Platform,
    Policies,
    Project,
    StateConfig,
    Tier,
)
from reconciler.core.observed import Observed, ObservedEnvironment  # noqa: E402
from reconciler.core.planner import Plan, plan  # noqa: E402
from reconciler.drivers.secrets import SecretStore  # noqa: E402
from reconciler.drivers.tarstream import merged  # noqa: E402
from reconciler.engine.engine import Engine, EngineConfig  # noqa: E402
from reconciler.engine.ledger import DatabaseRecord, DbState  # noqa: E402
from reconciler.engine.sources import AppConfigCache, load_app_config  # noqa: E402
from tests.factories import desired as factory_desired  # noqa: E402
from tests.factories import live  # noqa: E402
from tests.integration import pgadmin  # noqa: E402

T = TypeVar("T")

SERVER = DatabaseServer("shared", "127.0.0.1", 5432, "host-gateway", "postgres")
BASE_IMAGE = "odoo:19.0"
STATE_COMMIT = "5" * 40
NOW, DAY = datetime(2025, 6, 1, tzinfo=UTC), timedelta(days=1)
APP_YAML = b"""version: 1
modules: [acme_sale]
tiers:
  production:
    workers: 4
    backup_schedule: "0 */6 * * *"
    resource_limits: {cpu: "2000m", memory: "5Gi"}
"""
# One project of ten: production and staging on the shared server, the rest with their own
# database container, which is the mix the issue describes (mostly dev, some shared).
PROJECT_LAYOUT: tuple[tuple[str, str, Tier], ...] = (
    ("prod", "main", Tier.PRODUCTION),
    ("staging", "staging", Tier.STAGING),
    *((f"dev-{i}", f"dev/{i}", Tier.DEV) for i in range(1, 4)),
    *((f"feat-{i}", f"feature/{i}", Tier.EPHEMERAL) for i in range(1, 6)),
)
POLICIES = Policies(
    rules=(
        BranchRule("main", Tier.PRODUCTION),
        BranchRule("staging", Tier.STAGING),
        BranchRule("dev/*", Tier.DEV),
        BranchRule("feature/*", Tier.EPHEMERAL, auto_create=True),
    )
)
LINEAR_GROWTH = 1.5  # per-environment cost may wobble this much and still count as linear
NOOP_RATIO = 2.0  # the aim for a no-op pass against its bare listing calls
SHARED_APP_RATIO = 0.10  # the aim for resolve with one shared .odooops.yaml vs before
WORKERS = 4  # parallel set-up and clean-up calls; the engine and server are the bottleneck


# ================================================================ shared measuring helpers
def median_seconds(fn: Callable[[], object], repeats: int, min_sample: float = 0.02) -> float:
    """Median wall time of one call over ``repeats`` samples.

    Each sample runs the call enough times to last ``min_sample`` seconds, because a 10-environment
    plan takes tens of microseconds and a single call would measure the timer, not the planner.
    """
    loops = 1
    while True:
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        if time.perf_counter() - started >= min_sample or loops >= 1 << 16:
            break
        loops *= 2
    samples = []
    for _ in range(repeats):
        gc.collect()  # garbage of the previous sample must not be charged to this one
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - started) / loops)
    return statistics.median(samples)


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak memory allocated by one call (including what it returns), via tracemalloc.

    Measured apart from timing because tracemalloc slows allocation several times over.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - before


# ======================================================================= Part A: the world
class MemoryAppRepo:
    """An application repository in memory: the ``AppRepo`` protocol without git.

    ``branches`` returns a fresh dict on every call, as ``GitSource.branches`` does, and counts
    the heads it hands out: copying a dict is far cheaper than peeling every git ref, so the
    count shows the shape of the work where the clock here cannot.
    """

    def __init__(self, heads: Mapping[str, str], app_config: bytes | None) -> None:
        self._heads = dict(heads)
        self._app_config = app_config
        self._views: dict[str, FileTree] = {}
        self.heads_listed = 0

    def branches(self) -> dict[str, str]:
        self.heads_listed += len(self._heads)
        return dict(self._heads)

    def resolve(self, rev: str) -> str:
        return self._heads.get(rev, rev)

    def read_file(self, commit: str, path: str) -> bytes | None:
        return self._app_config if path == APP_CONFIG else None

    def view(self, commit: str) -> FileTree:
        """A tree of its own per commit (one image each), its ``.odooops.yaml`` in it."""
        tree = self._views.get(commit)
        if tree is None:
            files = {"COMMIT": commit.encode()}
            if self._app_config is not None:
                files[APP_CONFIG] = self._app_config
            tree = self._views[commit] = FileTree(files)
        return tree


def label_keyed_loader() -> AppConfigLoader:
    """The engine's loader before the cache by content: keyed by content *and* the error label
    (``project@revision:.odooops.yaml``), so it validates the file again for every revision."""

    @functools.lru_cache(maxsize=4096)
    def load(content: bytes, label: str) -> Mapping[str, Any]:
        data = validation.validate_app_config(content, label).data or {}
        return MappingProxyType(data) if isinstance(data, dict) else MappingProxyType({})

    return load


def commit_of(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def mixed_world(n: int, app_config: bytes | None) -> tuple[StateConfig, Inputs]:
    """``n`` environments declared by files: ``n / 10`` projects of ``PROJECT_LAYOUT`` each.

    Projects grow with environments (rather than one project holding a thousand) because that is
    how a platform grows, and it exposes any per-project work that scans every environment.
    Every dev environment has its own owner, so no quota holds any back.
    """
    projects: dict[str, Project] = {}
    specs: list[EnvironmentSpec] = []
    apps: dict[str, MemoryAppRepo] = {}
    for p in range(-(-n // len(PROJECT_LAYOUT))):
        name = f"p{p:03d}"
        projects[name] = Project(
            name, f"file:///srv/{name}", "19.0", BASE_IMAGE, (".",), ("base_setup",), "shared"
        )
        heads: dict[str, str] = {}
        for env, branch, tier in PROJECT_LAYOUT[: n - len(specs)]:
            heads[branch] = commit_of(name, branch)
            owner = f"{name}-{env}@example.com" if tier.dedicated_database else None
            specs.append(
                EnvironmentSpec(
                    key=EnvKey(name, env),
                    branch=branch,
                    tier=tier,
                    revision="track",
                    protected=tier is Tier.PRODUCTION,
                    suspended=False,
                    owner=owner,
                    overrides={"workers": 3} if tier is Tier.STAGING else {},
                )
            )
        apps[name] = MemoryAppRepo(heads, app_config)
    config = StateConfig(
        commit=STATE_COMMIT,
        platform=Platform(database_servers={"shared": SERVER}),
        policies=POLICIES,
        projects=projects,
        environments=tuple(specs),
    )
    return config, inputs_for(config, apps, {BASE_IMAGE: "sha256:" + "b" * 64}, 18000)


def branch_world(n: int) -> tuple[StateConfig, Inputs, MemoryAppRepo]:
    """One project whose ``n`` feature branches each get an environment from a branch rule.

    This is the Odoo.sh shape (one repository, a branch per feature), and the one where any
    per-environment work that scans the project's branches grows quadratically. Each branch has
    its own author, so no quota holds any back; no ``.odooops.yaml``, so YAML does not mask it.
    """
    name = "shop"
    branches = {f"feature/{i:04d}": commit_of(name, i) for i in range(n)}
    project = Project(
        name, "file:///srv/shop", "19.0", BASE_IMAGE, (".",), ("base_setup",), "shared"
    )
    config = StateConfig(
        commit=STATE_COMMIT,
        platform=Platform(database_servers={"shared": SERVER}),
        policies=POLICIES,
        projects={name: project},
        environments=(),
    )
    heads = {
        name: {b: BranchHead(f"dev{i}@example.com", NOW - DAY) for i, b in enumerate(branches)}
    }
    repo = MemoryAppRepo(branches, None)
    inputs = inputs_for(config, {name: repo}, {BASE_IMAGE: "sha256:" + "b" * 64}, 18000, heads)
    return config, inputs, repo


def inputs_for(
    config: StateConfig,
    apps: Mapping[str, MemoryAppRepo],
    base_images: Mapping[str, str],
    first_port: int,
    heads: Mapping[str, Mapping[str, BranchHead]] | None = None,
) -> Inputs:
    """Resolution inputs as the engine gathers them, minus git and the status store.

    Branch heads default to those of the declared environments, a day old (so none is past its
    TTL) and authored by the environment's owner. A port, once given, stays with its
    environment, as the status store keeps it.
    """
    if heads is None:
        declared: dict[str, dict[str, BranchHead]] = {}
        for spec in config.environments:
            author = spec.owner or "ci@example.com"
            declared.setdefault(spec.key.project, {})[spec.branch] = BranchHead(author, NOW - DAY)
        heads = declared
    ports: dict[EnvKey, int] = {}

    def port_for(key: EnvKey) -> int:
        return ports.setdefault(key, first_port + len(ports))

    return Inputs(
        apps=dict(apps),
        heads=heads,
        base_images=base_images,
        port_for=port_for,
        load_app_config=load_app_config,
        now=NOW,
    )


def matching(desired: Desired) -> Observed:
    """The observation of a world that is exactly as declared: planning it yields no action."""
    envs = {key: live(want) for key, want in desired.environments.items()}
    return Observed(envs, frozenset(w.image for w in desired.environments.values()))


def drifted(desired: Desired) -> Observed:
    """A world where one in ten environments drifted and one in ten live ones is undeclared.

    Every drifted Odoo container is both stopped and built from an older spec and revision
    (planned: update modules, replace), so the mix of work per environment is the same at every
    N, which growth figures need. Undeclared environments alternate staging and dev, so both
    ways of pruning (shared database, dedicated container) are planned.
    """
    envs: dict[EnvKey, ObservedEnvironment] = {}
    for i, (key, want) in enumerate(sorted(desired.environments.items())):
        if i % 10 == 3:
            envs[key] = live(want, state="exited", spec_hash="0" * 16, revision="f" * 40)
        else:
            envs[key] = live(want)
    for i in range(max(1, len(desired.environments) // 10)):
        gone = live(factory_desired(f"gone-{i}", Tier.DEV if i % 2 else Tier.STAGING))
        envs[gone.key] = gone
    return Observed(envs, frozenset(w.image for w in desired.environments.values()))


# ===================================================================== Part A: measuring
@dataclass(frozen=True)
class Row:
    """One size of one workload; ``work`` counts operations the clock here underrates."""

    n: int
    seconds: float
    peak: int
    note: str = ""
    work: int | None = None


def print_rows(title: str, rows: Sequence[Row]) -> bool:
    """One table; returns whether per-environment time, memory (and work) grew at most linearly.

    Growth columns: t time, m peak memory, w counted work, each per environment and relative to
    the smallest N.
    """
    print(f"\n{title}")
    print(
        f"  {'N':>6} {'total ms':>10} {'µs/env':>9} {'peak KiB':>10} {'KiB/env':>8} "
        f"{'growth t':>9} {'growth m':>9} {'growth w':>9}  note"
    )
    base = rows[0]
    worst = 0.0
    for row in rows:
        per_t, base_t = row.seconds / row.n, base.seconds / base.n
        per_m, base_m = row.peak / row.n, base.peak / base.n
        growth_t, growth_m = per_t / base_t, per_m / base_m
        growth_w = "-"
        worst = max(worst, growth_t, growth_m)
        if row.work is not None and base.work:
            ratio = (row.work / row.n) / (base.work / base.n)
            growth_w, worst = f"{ratio:.2f}", max(worst, ratio)
        print(
            f"  {row.n:>6} {row.seconds * 1e3:>10.2f} {per_t * 1e6:>9.1f} "
            f"{row.peak / 1024:>10.1f} {per_m / 1024:>8.2f} {growth_t:>9.2f} {growth_m:>9.2f} "
            f"{growth_w:>9}  {row.note}"
        )
    ok = worst <= LINEAR_GROWTH
    print(
        f"  linear aim (per-env growth <= {LINEAR_GROWTH} vs N={base.n}): {verdict(ok)} "
        f"(worst {worst:.2f})"
    )
    return ok


def measure_size(n: int, repeats: int) -> tuple[Row, Row, Row, Row, Row]:
    """Rows for one size: plan no-op and drifted; resolve with and without ``.odooops.yaml``,
    and of one project whose environments all come from branches."""
    config, inputs = mixed_world(n, APP_YAML)
    bare_config, bare_inputs = mixed_world(n, None)
    branch_config, branch_inputs, branch_repo = branch_world(n)
    want = resolve(config, inputs)
    for world, got in (("mixed", want), ("branch", resolve(branch_config, branch_inputs))):
        if len(got.environments) != n or got.held or got.expired:
            raise SystemExit(f"{world} world of {n}: some held back {dict(got.held)}")
    same, changed = matching(want), drifted(want)
    quiet, busy = plan(want, same), plan(want, changed)

    def row(fn: Callable[[], object], note: str, work: int | None = None) -> Row:
        return Row(n, median_seconds(fn, repeats), peak_bytes(fn), note, work)

    projects = f"{len(config.projects)} project{'s' if len(config.projects) > 1 else ''}"
    listed = heads_listed(branch_config, branch_inputs, branch_repo)
    return (
        row(
            lambda: plan(want, same),
            f"{len(quiet.actions)} actions" + ("  <- NOT A NO-OP" if quiet.actions else ""),
        ),
        row(
            lambda: plan(want, changed),
            f"{len(busy.actions)} actions over {len(busy.by_env())} envs, "
            f"{len(changed.environments) - n} of them to prune",
        ),
        row(lambda: resolve(config, inputs), projects),
        row(lambda: resolve(bare_config, bare_inputs), projects),
        row(
            lambda: resolve(branch_config, branch_inputs),
            f"1 project; w = branch heads listed: {listed:,} ({listed / n:,.0f}/env)",
            listed,
        ),
    )


def heads_listed(config: StateConfig, inputs: Inputs, repo: MemoryAppRepo) -> int:
    """How many branch heads one resolution asks the app repository for (``AppRepo.branches``).

    Each is a ref that ``GitSource`` opens and peels in production, so this is the git work of
    a pass, whatever the in-memory clock says.
    """
    before = repo.heads_listed
    resolve(config, inputs)
    return repo.heads_listed - before


def run_pure(sizes: Sequence[int], repeats: int) -> dict[str, bool]:
    """Part A: plan (no-op and drifted) and resolve, at each size; returns each aim's verdict."""
    print("Part A: pure planning and resolution (no services)")
    print(
        f"  median of {repeats} samples; growth = per-env cost at N / per-env cost at N={sizes[0]}"
    )
    tables = zip(*(measure_size(n, repeats) for n in sizes), strict=True)
    noop, drift, res_yaml, res_bare, res_branch = tables
    results = {
        "A plan, no-op: linear": print_rows(
            "plan(desired, observed), no-op: observed matches desired", noop
        ),
        "A plan, drifted: linear": print_rows(
            "plan(desired, observed), 10% drifted + 10% undeclared to prune", drift
        ),
        "A resolve, with .odooops.yaml: linear": print_rows(
            "desired.resolve(config, inputs), each app repo has a .odooops.yaml", res_yaml
        ),
        "A resolve, no .odooops.yaml: linear": print_rows(
            "desired.resolve(config, inputs), no .odooops.yaml (no YAML parsing)", res_bare
        ),
        "A resolve, one project of branch environments: linear": print_rows(
            "desired.resolve(config, inputs), one project, every environment from a branch rule",
            res_branch,
        ),
    }
    n = sizes[-1]
    results[
        f"A resolve, {n} envs sharing one .odooops.yaml: < {SHARED_APP_RATIO:.0%} of before"
    ] = measure_shared_app_config(n, repeats)
    return results


def measure_shared_app_config(n: int, repeats: int) -> bool:
    """The issue's case: ``n`` environments on ``n`` distinct revisions sharing one
    ``.odooops.yaml``, resolved before (cache keyed by content and label) and after (by content).

    Timed on a cold pass, with a new, empty cache per call: that is the pass after the
    revisions moved (or the first after a restart), where the label-keyed cache missed for every
    environment. A warm pass (same revisions as the pass before) is printed for context: there
    the label-keyed cache hit as well, as long as it held every revision.
    """
    config, inputs = mixed_world(n, APP_YAML)
    want = resolve(config, inputs)
    revisions = len({w.revision for w in want.environments.values()})
    if len(want.environments) != n or revisions != n:
        raise SystemExit(f"shared .odooops.yaml world of {n}: {revisions} distinct revisions")

    def cold(new_loader: Callable[[], AppConfigLoader]) -> Callable[[], object]:
        return lambda: resolve(config, replace(inputs, load_app_config=new_loader()))

    def warm(loader: AppConfigLoader) -> Callable[[], object]:
        warmed = replace(inputs, load_app_config=loader)
        resolve(config, warmed)
        return lambda: resolve(config, warmed)

    before = median_seconds(cold(label_keyed_loader), repeats)
    after = median_seconds(cold(AppConfigCache), repeats)
    warm_before = median_seconds(warm(label_keyed_loader()), repeats)
    warm_after = median_seconds(warm(AppConfigCache()), repeats)
    ratio = after / before
    print(
        f"\ndesired.resolve, {n} environments on {revisions} distinct revisions sharing one "
        ".odooops.yaml"
    )
    print(f"  {'pass':<46} {'before ms':>10} {'after ms':>10} {'ratio':>7}")
    for name, b, a in (
        ("cold (new revisions: every cache empty)", before, after),
        ("warm (same revisions as the pass before)", warm_before, warm_after),
    ):
        print(f"  {name:<46} {b * 1e3:>10.2f} {a * 1e3:>10.2f} {a / b:>7.1%}")
    ok = ratio < SHARED_APP_RATIO
    print(
        f"  aim (cold pass under {SHARED_APP_RATIO:.0%} of before): {verdict(ok)} "
        f"({ratio:.1%}; before {before / n * 1e6:.0f} µs/env, after {after / n * 1e6:.0f} µs/env)"
    )
    return ok


# =============================================================== Part B: live environments
def fixture_image() -> str:
    """The Odoo stand-in image the integration tests use (built by scripts/setup.sh images)."""
    env_file = REPO_ROOT / "build" / "images.env"
    values: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                values[name.strip()] = value.strip()
    ref = values.get("ODOOOPS_FIXTURE_ODOO_IMAGE")
    if not ref:
        raise SystemExit(
            f"Part B: no ODOOOPS_FIXTURE_ODOO_IMAGE in {env_file}; build the fixture images: "
            "bash scripts/setup.sh images  (or run with --skip-live)"
        )
    return ref


def admin_connect() -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the shared server as its admin (password in PGPASSWORD)."""
    return psycopg.connect(
        host=SERVER.host,
        port=SERVER.port,
        user=SERVER.admin_user,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def check_postgres() -> None:
    try:
        pgadmin.export()  # PGPASSWORD for every client of the run (setup.sh's password)
    except pgadmin.PasswordUnavailable as exc:
        raise SystemExit(f"Part B: {exc}  (or run with --skip-live)") from None
    try:
        admin_connect().close()
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SystemExit(
            f"Part B: PostgreSQL on {SERVER.host}:{SERVER.port} (user {SERVER.admin_user}) "
            f"is unreachable ({first}); start it: bash scripts/setup.sh services  "
            "(or run with --skip-live)"
        ) from None


def parallel(fn: Callable[[T], object], items: Iterable[T]) -> None:
    """Run ``fn`` over ``items`` on a few threads; on the first error or Ctrl-C, queue no more.

    Calls already running are waited for, so the clean-up that follows sees every object that
    was created.
    """
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="bench")
    try:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def app_tar() -> bytes:
    """A one-file app tree for ``DockerDriver.build_image`` (its Dockerfile copies ``app/``)."""
    buf = io.BytesIO()
    data = b"# bench\n"
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo("app")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        info = tarfile.TarInfo("app/README")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class LiveWorld:
    """``count`` suspended staging environments of one project, under a unique instance label.

    Suspended, so that an Odoo container that is created but never started is the converged
    state: listing a stopped container costs the engine the same as a running one, and starting
    a hundred Odoo stand-ins would measure the CPU they burn instead of the reconciler. The
    planner returns early for a suspended environment (no spec hash), so its share here is
    smaller than for running ones; part A measures that case.
    """

    instance: str
    project: str
    count: int
    image: str
    config: StateConfig
    desired: Desired
    engine: Engine

    @property
    def docker(self) -> docker.DockerClient:
        return self.engine.docker.client


def live_world(count: int, tmp: Path) -> LiveWorld:
    """Declare the world and construct the real ``Engine`` that will observe it.

    The engine never touches its state repository here: ``Engine.observe`` takes the config, so
    a path that does not exist is enough, and nothing is fetched.
    """
    fixture = fixture_image()
    check_postgres()
    instance = f"bench-{secrets.token_hex(4)}"
    engine_config = EngineConfig(
        state_url=str(tmp / "state.git"), data_dir=tmp / "data", instance=instance
    )
    try:
        engine = Engine(engine_config, SecretStore(tmp / "secrets.bin", os.urandom(32)))
    except DriverError as exc:
        raise SystemExit(f"Part B: {exc.message}; {exc.remediation}  (or --skip-live)") from None
    try:
        return declare(engine, fixture, instance, count)
    except BaseException:
        engine.close()
        raise


def declare(engine: Engine, fixture: str, instance: str, count: int) -> LiveWorld:
    """The state repository's view of the world, resolved to ``Desired`` as the engine does.

    Every environment tracks a branch at the same commit, so all share one image, built later.
    """
    try:
        base_id = str(engine.docker.client.images.get(fixture).id)
    except docker.errors.ImageNotFound:
        raise SystemExit(
            f"Part B: fixture image {fixture} is missing; build it: bash scripts/setup.sh images"
        ) from None
    project = "b" + instance.removeprefix("bench-")
    revision = commit_of(project, "main")
    specs = [
        EnvironmentSpec(
            key=EnvKey(project, f"e{i:03d}"),
            branch=f"env/{i:03d}",
            tier=Tier.STAGING,
            revision="track",
            protected=False,
            suspended=True,
            owner=None,
            overrides={},
        )
        for i in range(count)
    ]
    config = StateConfig(
        commit=STATE_COMMIT,
        platform=Platform(database_servers={"shared": SERVER}),
        policies=Policies(),
        projects={
            project: Project(project, "file:///dev/null", "19.0", fixture, (".",), (), "shared")
        },
        environments=tuple(specs),
    )
    apps = {project: MemoryAppRepo({s.branch: revision for s in specs}, None)}
    # Ports are only declared: the containers never start, so nothing binds them.
    first_port = 40000 + secrets.randbelow(20000 - count)
    desired = resolve(config, inputs_for(config, apps, {fixture: base_id}, first_port))
    image = next(iter(desired.environments.values())).image
    return LiveWorld(instance, project, count, image, config, desired, engine)


def populate(world: LiveWorld) -> None:
    """Create every object a converged environment has, with the driver's own methods.

    The image is built as the engine's build step builds it (so it carries ``built-by``); the
    volume, the Odoo container, the database and its role come from ``create_volume``,
    ``create_odoo`` and ``PostgresDriver.create``/``mark_initialised``, so labels and spec hashes
    are exactly the product's. Networks are the exception: ``create_network`` takes a subnet from
    Docker's default pools, which hold about 30 bridge networks on a stock engine, so 100 would
    fail and starve everything else on the engine; they are created here with the driver's
    labels and a /28 each from a random 10.x.0.0/16.
    """
    d = world.engine.docker
    base = world.config.projects[world.project].image
    d.build_image(
        world.image,
        merged([app_tar()], {"Dockerfile": f"FROM {base}\nCOPY app/ {APP_ROOT}/\n".encode()}),
        {"odooops.project": world.project, "odooops.revision": commit_of(world.project, "main")},
    )
    pg = world.engine.pg(SERVER.name, world.config)
    wants = sorted(world.desired.environments.values(), key=lambda w: w.key)
    subnets = ipaddress.ip_network(f"10.{secrets.randbelow(56) + 200}.0.0/16").subnets(12)
    nets = dict(zip((w.key for w in wants), subnets, strict=False))

    def one(want: DesiredEnvironment) -> None:
        key, protected = want.key, want.spec.protected
        d.client.networks.create(
            key.network,
            driver="bridge",
            labels=d.labels(key, protected=str(protected).lower()),
            ipam=docker.types.IPAMConfig(
                pool_configs=[docker.types.IPAMPool(subnet=str(nets[key]))]
            ),
        )
        d.create_volume(key, key.filestore_volume, protected)
        password = secrets.token_urlsafe(24)
        d.create_odoo(want, password)
        pg.ensure_role(key, password)
        pg.create_database(key)
        world.engine.ledger.put_database(
            DatabaseRecord(
                key, SERVER.name, key.database, DbState.INITIALISED, protected, want.spec.tier.value
            )
        )

    parallel(one, wants)


def cleanup(world: LiveWorld) -> str:
    """Remove everything labelled with the world's instance, whatever step failed or was cut.

    Sweeps by label instead of replaying what ``populate`` did, so half-created environments go
    too. Each kind is tried even when another failed; a summary line says what was removed.
    """
    client = world.docker
    label: dict[str, str | list[str] | bool] = {"label": f"odooops.instance={world.instance}"}
    removed: dict[str, int] = {}
    problems: list[str] = []

    def sweep(kind: str, list_fn: Callable[[], list[Any]], remove: Callable[[Any], None]) -> None:
        try:
            found = list_fn()
            parallel(remove, found)
            removed[kind] = len(found)
        except Exception as exc:  # keep sweeping the other kinds; report at the end
            problems.append(f"{kind}: {exc}")

    sweep(
        "containers",
        lambda: client.containers.list(all=True, filters=label),
        lambda c: c.remove(force=True, v=True),
    )
    sweep("volumes", lambda: client.volumes.list(filters=label), lambda v: v.remove(force=True))
    sweep("networks", lambda: client.networks.list(filters=label), lambda n: n.remove())
    sweep(
        "images",
        lambda: [world.image] if client.images.list(name=world.image) else [],
        lambda ref: client.images.remove(ref, force=True),
    )
    pattern = f'%"odooops.instance": "{world.instance}"%'
    try:
        with admin_connect() as conn:
            dbs = conn.execute(
                "SELECT datname FROM pg_database "
                "WHERE shobj_description(oid, 'pg_database') LIKE %s",
                [pattern],
            ).fetchall()
            for (name,) in dbs:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            roles = conn.execute(
                "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE %s",
                [pattern],
            ).fetchall()
            for (name,) in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            removed["databases"], removed["roles"] = len(dbs), len(roles)
    except psycopg.Error as exc:
        problems.append(f"databases: {exc}")
    world.engine.close()
    summary = ", ".join(f"{n} {kind}" for kind, n in removed.items())
    if problems:
        summary += "; LEFT BEHIND, remove by hand (label " + world.instance + "): "
        summary += "; ".join(problems)
    return summary


def baseline_pass(world: LiveWorld) -> Callable[[], tuple[float, float]]:
    """The bare listing calls a no-op pass needs: four Docker lists and two catalogue queries.

    The returned callable times its Docker and its PostgreSQL halves separately.

    The PostgreSQL connection is opened each time because a pass opens one too (the daemon keeps
    none between passes); the Docker client's keep-alive connection is shared with the engine's.
    """
    api = world.docker.api
    mine = {"label": [f"odooops.instance={world.instance}"]}
    built = {"label": ["odooops.built-by=odooops"]}

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        api.networks(filters=mine)
        api.volumes(filters=mine)
        api.containers(all=True, filters=mine)
        api.images(filters=built)
        t1 = time.perf_counter()
        with admin_connect() as conn:
            conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
            ).fetchall()
            conn.execute(
                "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles"
            ).fetchall()
        return t1 - t0, time.perf_counter() - t1

    return run


def measure_live(world: LiveWorld, repeats: int) -> bool:
    """Interleave baseline and engine passes (alternating which goes first) and compare medians.

    Interleaving spreads any noise from other users of the engine over both sides equally.
    """
    baseline = baseline_pass(world)
    observe: list[float] = []
    planning: list[float] = []
    bare: list[tuple[float, float]] = []
    last: tuple[Observed, Plan] | None = None
    for i in range(repeats + 1):  # the first round warms connections and caches, and is dropped
        for side in ("baseline", "engine") if i % 2 else ("engine", "baseline"):
            gc.collect()
            if side == "baseline":
                bare.append(baseline())
                continue
            t0 = time.perf_counter()
            observed = world.engine.observe(world.config)
            t1 = time.perf_counter()
            the_plan = plan(world.desired, observed)
            planning.append(time.perf_counter() - t1)
            observe.append(t1 - t0)
            last = observed, the_plan
    assert last is not None
    observed, the_plan = last
    base = statistics.median(d + p for d, p in bare[1:])
    base_docker = statistics.median(d for d, _ in bare[1:])
    base_pg = statistics.median(p for _, p in bare[1:])
    obs, pln = statistics.median(observe[1:]), statistics.median(planning[1:])
    total = statistics.median([a + b for a, b in zip(observe[1:], planning[1:], strict=True)])
    n = world.count
    print(f"  observed {len(observed.environments)} environments of instance {world.instance}")
    noop = not the_plan.actions and len(observed.environments) == n
    print(
        f"  plan: {len(the_plan.actions)} actions -> "
        + ("a no-op pass, as intended" if noop else "NOT a no-op; the ratio below is not valid")
    )
    if not noop:
        print("\n".join("    " + line for line in the_plan.render().splitlines()[:12]))
    print(f"\n  median of {repeats} interleaved rounds          {'ms':>9} {'µs/env':>9}")
    for label, seconds in (
        ("(1) bare listing calls (4 Docker + 2 SQL)", base),
        ("      of which 4 Docker listings", base_docker),
        ("      of which PostgreSQL connect + 2 queries", base_pg),
        ("(2) Engine.observe + plan", total),
        ("      of which Engine.observe", obs),
        ("      of which plan", pln),
    ):
        print(f"  {label:<46} {seconds * 1e3:>9.2f} {seconds / n * 1e6:>9.1f}")
    ratio = total / base
    ok = ratio <= NOOP_RATIO and noop
    print(
        f"  ratio (2)/(1) = {ratio:.2f}; aim <= {NOOP_RATIO}: {verdict(ok)}"
        f"  (overhead beyond the listings: {(total - base) / n * 1e6:.0f} µs/env)"
    )
    return ok


def run_live(count: int, repeats: int) -> bool:
    """Part B: build the live world, measure, and always clean up (also on Ctrl-C)."""
    print(f"\nPart B: a no-op pass over {count} live environments (Docker + PostgreSQL)")
    print("  (2) is a real Engine's observe (throw-away data dir) followed by planner.plan;")
    print("  resolution and the status writes of Engine.reconcile are not part of either figure")
    with tempfile.TemporaryDirectory(prefix="odooops-bench-") as tmp:
        world = live_world(count, Path(tmp))
        try:
            seconds, _ = timed(lambda: populate(world))
            print(
                f"  created {count} suspended staging environments (network, volume, Odoo "
                f"container never started, database, role) in {seconds:.1f} s"
            )
            return measure_live(world, repeats)
        finally:
            with uninterruptible():
                seconds, summary = timed(lambda: cleanup(world))
                print(f"  cleanup in {seconds:.1f} s: removed {summary}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run part A, then part B unless skipped, and print the summary."""
    options = Options(__doc__, "about 15 s: N up to 100 and 20 live environments")
    options.parser.add_argument(
        "--skip-live", action="store_true", help="only part A (no services)"
    )
    options.parser.add_argument(
        "--repeats", type=count, default=7, help="samples per median (default 7)"
    )
    args = options.parse(argv)
    sizes = (10, 100) if args.quick else (10, 100, 1000)
    started = time.perf_counter()
    results = run_pure(sizes, args.repeats)
    if not args.skip_live:
        live_envs = 20 if args.quick else 100
        results[f"B no-op pass over {live_envs} live envs <= {NOOP_RATIO}x listings"] = run_live(
            live_envs, args.repeats
        )
    print(f"\nSummary ({time.perf_counter() - started:.0f} s):")
    for aim, ok in results.items():
        print(f"  {verdict(ok):<8} {aim}")
    return 0


if __name__ == "__main__":
    run_main(main, "anything created was removed first")
