#!/usr/bin/env python3
"""What an environment's image costs: a clean build, a deploy of inputs already built, a
one-addon change, and the bytes the images of one project's environments share.

One world as in ``tests/integration/test_builds.py``: real git remotes on disk made with the git
CLI, an app repository (``examples/acme-addons`` and ``--own-addons`` more) with two addon
repositories (``--addons`` each) added as git submodules (one by a relative URL, as on a forge)
and a ``requirements.lock`` of wheels made here and served from a local wheel directory (the
daemon's ``--wheelhouse``), the Odoo stand-in (``ODOOOPS_FIXTURE_ODOO_IMAGE``) as base, the
real Docker engine. Everything goes
through the product: ``Engine.load_state`` and ``resolve_desired`` (``plan_build``, the key
and tag), the image listing the planner reads (``DockerDriver.observe``), and the
``build-image`` step (``Steps.run``: the engine's build context from git trees and the
``Wheelhouse``, then ``DockerDriver.build_image`` of the generated recipe). No Dockerfile is
written here. Two parts, each against a baseline measured in the same run:

1. **one image**: a deploy timed from the state refresh (``load_state``, ``resolve``) to the
   image present, three ways: a *clean build* (a fresh layout whose tags do not exist, every
   layer of this run's content new, the builder cache pruned first; the baseline), a *cached
   deploy* (the same commit on another branch, declared as another environment: its tag exists
   and nothing is built) and a *one-addon change* (an own addon edited: only the layer of the
   app's own tree is built again). Seconds, medians of ``--rounds``, and ratios to the clean
   build; which layers each build made anew (from the builder's log), and the context size.
2. **bytes shared**: ``--environments`` branches, each with a small change of its own code and
   the same submodules and lock, one environment each, built in one pass; then the layers of
   their images from the Docker API. Dedup = bytes shared / total: the total is the images'
   virtual sizes added up, the unique bytes each image's layers that no other of them has.
   Seed > 80 %, target > 95 %, printed MET / NOT MET. The same over the layers the builds add
   on top of the base image, where the base's share does not hide anything.

Figures are printed, nothing asserted. Every image this run builds (tags unique per run: the
layout carries a random token) is removed at the end, also on Ctrl-C or SIGTERM. Run from the
repository root::

    .venv/bin/python bench/build.py [--quick] [--rounds 3] [--environments 10]
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402
import yaml  # noqa: E402

from bench._cli import Options, run_main, title, uninterruptible, verdict  # noqa: E402
from reconciler.core.model import DesiredEnvironment, EnvKey  # noqa: E402
from reconciler.core.planner import Action, Kind  # noqa: E402
from reconciler.engine.engine import Engine  # noqa: E402
from tests.integration.world import World, fixture_images, git  # noqa: E402
from tests.wheels import lock_line, make_wheel  # noqa: E402

MB = 1024 * 1024
BRANCH = "release/v1"  # the app branch of the first environment (World pushes main there)
OWN_CHANGE = "acme_base/models/bench_change.py"  # the own-code file each change edits
SEED_AIM, TARGET_AIM = 0.80, 0.95
# Instructions of the classic builder that make a layer; the others change the config only.
LAYER_STEP = re.compile(r"^(COPY|ADD|RUN)\b", re.IGNORECASE)
# History entries that change the config only, to pair the rest with ``RootFS.Layers`` when
# a layer of zero bytes makes the sizes alone ambiguous (classic builder and BuildKit forms).
CONFIG_ONLY = re.compile(
    r"(#\(nop\)\s+|^)(ENV|USER|LABEL|CMD|ENTRYPOINT|EXPOSE|VOLUME|WORKDIR|ARG|ONBUILD|"
    r"STOPSIGNAL|HEALTHCHECK|SHELL|MAINTAINER)\b"
)


# ----------------------------------------------------------------------------- the layout
def blob(kb: int) -> str:
    """``kb`` KiB of text no other run has (the layers it lands in are new to the engine)."""
    return os.urandom(kb * 512).hex()


def addon_files(prefix: str, addons: int, kb: int, token: str) -> dict[str, str]:
    """``addons`` Odoo modules of about ``kb`` KiB each: mostly a static asset, some Python."""
    files: dict[str, str] = {}
    for n in range(addons):
        module = f"{prefix}_{n:03d}"
        code = blob(max(1, kb // 8))
        files.update(
            {
                f"{module}/__init__.py": "from . import models\n",
                f"{module}/__manifest__.py": repr(
                    {"name": module, "version": "19.0.1.0.0", "depends": ["base"]}
                ),
                f"{module}/models/__init__.py": "from . import model\n",
                f"{module}/models/model.py": f"TOKEN = {token!r}\nDATA = {code!r}\n",
                f"{module}/static/src/js/{module}.js": f"// {token}\n{blob(kb)}\n",
            }
        )
    return files


def addon_remote(world: World, name: str, addons: int, kb: int, token: str) -> tuple[Path, int]:
    """A bare remote of an addon repository (as OCA's) with ``addon_files``; its path and the
    bytes of its files."""
    remote = world.root / "remotes" / f"{name}.git"
    seed = world.root / f"{name}-seed"
    files = {"README.md": f"{name} ({token})\n"}
    files.update(addon_files(name.replace("-", "_"), addons, kb, token))
    for path, content in files.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(content)
    git("init", "-q", "--bare", str(remote))
    git("init", "-q", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    shutil.rmtree(seed)
    return remote, sum(len(c) for c in files.values())


def wheels(folder: Path, count: int, kb: int, token: str) -> list[str]:
    """``count`` pure-Python wheels of about ``kb`` KiB (a quarter of it Python modules, the
    rest package data), new to this run; their lock lines."""
    lines = []
    for n in range(count):
        name = f"obench_dep{n}"
        files = {f"{name}/__init__.py": f"TOKEN = {token!r}\n"}
        modules = max(1, kb // 4 // 16)
        for m in range(modules):
            files[f"{name}/mod{m:03d}.py"] = f"DATA = {blob(16)!r}\n"
        for m in range(max(1, (kb - modules * 16) // 256)):
            files[f"{name}/data/blob{m:03d}.txt"] = blob(min(256, kb))
        wheel = make_wheel(folder, name, "1.0", files)
        lines.append(lock_line(wheel, name, "1.0"))
    return lines


@dataclass(frozen=True)
class Layout:
    wheelhouse: Path
    repo_bytes: int  # the files of the two addon repositories
    own_bytes: int  # the files of the app's own addons made here (acme_* come on top)
    wheel_bytes: int


def make_layout(world: World, house: Path, args: Any, token: str) -> Layout:
    """The app on ``BRANCH`` with own addons, two addon repositories as submodules and a lock,
    as ``layered_world`` of ``tests/integration/test_builds.py`` makes it, at the sizes asked."""
    house.mkdir()
    lock = wheels(house, args.wheels, args.wheel_kb, token)
    _web, web_bytes = addon_remote(world, "oca-web", args.addons, args.addon_kb, token)
    tools, tools_bytes = addon_remote(world, "vendor-tools", args.addons, args.addon_kb, token)
    app = world.app.dir
    git("fetch", "-q", "origin", cwd=app)
    git("checkout", "-q", "-B", BRANCH, f"origin/{BRANCH}", cwd=app)
    for path, url in {"oca/web": "../oca-web.git", "vendor/tools": str(tools)}.items():
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q", url, path, cwd=app)
    own = addon_files("acme_own", args.own_addons, args.addon_kb, token)
    own["requirements.lock"] = "\n".join(lock) + "\n"
    own[".bench-token"] = token + "\n"
    for path, content in own.items():
        (app / path).parent.mkdir(parents=True, exist_ok=True)
        (app / path).write_text(content)
    git("add", "-A", cwd=app)
    git("commit", "-q", "-m", "submodules and lock", cwd=app)
    git("push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=app)
    wheel_bytes = sum(f.stat().st_size for f in house.iterdir())
    own_bytes = sum(len(c) for p, c in own.items() if p.startswith("acme_own"))
    return Layout(house, web_bytes + tools_bytes, own_bytes, wheel_bytes)


def branch(world: World, name: str, files: Mapping[str, str], base: str = BRANCH) -> None:
    """A branch ``name`` off ``base`` with ``files`` changed, pushed."""
    app = world.app.dir
    git("checkout", "-q", "-B", name, f"origin/{base}", cwd=app)
    for path, content in files.items():
        (app / path).parent.mkdir(parents=True, exist_ok=True)
        (app / path).write_text(content)
    git("add", "-A", cwd=app)
    git("commit", "-q", "--allow-empty", "-m", f"bench: {name}", cwd=app)
    git("push", "-q", "origin", f"HEAD:refs/heads/{name}", cwd=app)


def declare(world: World, envs: Mapping[str, str]) -> None:
    """One state commit declaring a staging environment per name, on its branch."""
    world.state.write(
        {
            world.env_path(env): yaml.safe_dump({"branch": ref, "tier": "staging"})
            for env, ref in envs.items()
        },
        f"declare {', '.join(envs)}",
    )


def widen_ports(world: World, needed: int) -> None:
    """Room for every environment's HTTP port (a World's range holds 20): each one resolved
    gets one, though no container is ever started here."""
    path = world.state.dir / "odooops.yaml"
    platform = yaml.safe_load(path.read_text())
    port_range = platform["runtime"]["port_range"]
    port_range["end"] = max(port_range["end"], port_range["start"] + needed + 4)
    world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "bench: port range")


# ------------------------------------------------------------------------------ the builds
@dataclass(frozen=True)
class Step:
    instruction: str
    cached: bool
    image: str  # the short id the step ended on ("" if the log does not say)

    @property
    def layer(self) -> bool:
        return bool(LAYER_STEP.match(self.instruction))


@dataclass(frozen=True)
class BuildRecord:
    """One ``DockerDriver.build_image`` call, as the engine made it."""

    tag: str
    seconds: float
    context_bytes: int
    steps: tuple[Step, ...]

    @property
    def layers_made(self) -> list[Step]:
        return [s for s in self.steps if s.layer and not s.cached]

    @property
    def layer_steps(self) -> list[Step]:
        return [s for s in self.steps if s.layer]


def parse_log(log: str) -> tuple[Step, ...]:
    """The classic builder's log, step by step: ``Step n/m : INSTRUCTION``, then ``Using
    cache`` when it was cached, and `` ---> <id>`` of the image the step ended on."""
    steps = []
    for block in re.split(r"^Step \d+/\d+ : ", log, flags=re.MULTILINE)[1:]:
        instruction = block.split("\n", 1)[0].strip()
        ids = re.findall(r"^ ---> ([0-9a-f]{12})\s*$", block, flags=re.MULTILINE)
        steps.append(Step(instruction, "Using cache" in block, ids[-1] if ids else ""))
    return tuple(steps)


class Recorder:
    """Wraps the engine's ``build_image`` (the very object ``Steps`` calls) to keep each
    build's time, context size and log; the product runs unchanged inside."""

    def __init__(self, engine: Engine) -> None:
        self.records: list[BuildRecord] = []
        real = engine.docker.build_image

        def build_image(
            tag: str,
            context: bytes,
            labels: Mapping[str, str],
            build_args: Mapping[str, str] | None = None,
            **kwargs: Any,
        ) -> str:
            started = time.perf_counter()
            log = real(tag, context, labels, build_args, **kwargs)
            seconds = time.perf_counter() - started
            self.records.append(BuildRecord(tag, seconds, len(context), parse_log(log)))
            return log

        engine.docker.build_image = build_image  # type: ignore[method-assign]


@dataclass(frozen=True)
class Deploy:
    """One environment from the state refresh to its image present."""

    env: str
    image: str
    resolve: float  # load_state + resolve_desired (fetches, plan_build, key)
    observe: float  # the image listing the planner reads
    build: float  # the build-image step; 0 when the image was there
    builds: tuple[BuildRecord, ...]

    @property
    def docker(self) -> float:
        """The part of ``build`` inside ``DockerDriver.build_image`` (the rest: the context,
        made from git trees and the wheel directory)."""
        return sum(b.seconds for b in self.builds)

    @property
    def total(self) -> float:
        return self.resolve + self.observe + self.build


class Bench:
    def __init__(self, world: World, engine: Engine) -> None:
        self.world, self.engine = world, engine
        self.recorder = Recorder(engine)
        self.client: docker.DockerClient = world.docker
        self.before: set[str] = set()  # image ids present before the run (never removed)

    def key(self, env: str) -> EnvKey:
        return EnvKey(self.world.project, env)

    def resolve(self) -> Mapping[EnvKey, DesiredEnvironment]:
        desired = self.engine.resolve_desired(self.engine.load_state())
        if desired.held:
            raise RuntimeError(f"environments held: {dict(desired.held)}")
        return desired.environments

    def deploy(self, env: str) -> Deploy:
        """What a pass does for one environment's image: refresh, look, build if absent."""
        done = len(self.recorder.records)
        started = time.perf_counter()
        want = self.resolve()[self.key(env)]
        resolved = time.perf_counter()
        present = want.image in self.engine.docker.observe().images
        observed = time.perf_counter()
        if not present:
            self.build_step(want)
        if not self.engine.docker.has_image(want.image):
            raise RuntimeError(f"{env}: no image {want.image} after the build step")
        ended = time.perf_counter()
        return Deploy(
            env,
            want.image,
            resolved - started,
            observed - resolved,
            ended - observed if not present else 0.0,
            tuple(self.recorder.records[done:]),
        )

    def build_step(self, want: DesiredEnvironment) -> None:
        action = Action(want.key, Kind.BUILD_IMAGE, want.image, "bench: no image")
        self.engine.steps.run(want, action)

    # ------------------------------------------------------------------------ clean-up
    def made(self, records: Iterable[BuildRecord]) -> list[str]:
        """Image ids these builds made (every step not from cache, both stages), newest
        first: the final image and the intermediate ones the classic builder keeps as its
        cache (the ``python`` stage's are no parent of the final image, so removing the tag
        leaves them behind)."""
        ids = [
            s.image
            for r in records
            for s in r.steps
            if s.image and not s.cached and not s.instruction.upper().startswith("FROM ")
        ]  # a FROM step names the image it starts from, made before or by another step
        return [i for i in dict.fromkeys(reversed(ids)) if not self._existed(i)]

    def _existed(self, short: str) -> bool:
        return any(full.startswith(short) for full in self.before)

    def forget(self, tags: Iterable[str], records: Iterable[BuildRecord]) -> tuple[int, int]:
        """Remove ``tags`` and the images their builds made; an image another one still
        builds on (or that went meanwhile) is left. How many were removed, and left."""
        removed = 0
        for tag in tags:
            # noprune: the untagged parents are removed below only if this run made them.
            with contextlib.suppress(docker.errors.NotFound):
                self.client.images.remove(tag, force=True, noprune=True)
                removed += 1
        left = self.made(records)
        for _ in range(3):  # a parent goes once its children have
            kept = []
            for image in left:
                try:
                    self.client.images.remove(image, noprune=True)
                    removed += 1
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:
                    kept.append(image)
            if len(kept) == len(left):
                break
            left = kept
        return removed, len(left)

    def cleanup(self) -> str:
        self.engine.close()
        tags = {
            t
            for i in self.client.images.list(
                filters={"label": f"odooops.project={self.world.project}"}
            )
            for t in i.tags
        }
        tags |= {r.tag for r in self.recorder.records}
        removed, left = self.forget(sorted(tags), self.recorder.records)
        label: dict[str, str | list[str] | bool] = {
            "label": f"odooops.instance={self.world.instance}"
        }
        # Nothing here starts a container or makes a volume or network; made sure of.
        for c in self.client.containers.list(all=True, filters=label):
            c.remove(force=True, v=True)
        for v in self.client.volumes.list(filters=label):
            v.remove(force=True)
        for n in self.client.networks.list(filters=label):
            n.remove()
        kept = f"; {left} left, which other images build on" if left else ""
        return f"{removed} images (tags and the builder's intermediates){kept}"


# ------------------------------------------------------------------------- layer sizes
@dataclass(frozen=True)
class Layer:
    chain: str  # the ChainID: this layer with everything under it, what the store keeps once
    bytes: int
    made_by: str


@dataclass(frozen=True)
class ImageLayers:
    tag: str
    size: int  # the engine's own figure for the image (virtual size)
    layers: tuple[Layer, ...]  # bottom up


def image_layers(client: docker.DockerClient, ref: str) -> ImageLayers:
    """The image's layers with their sizes, from the Docker API.

    ``docker image inspect`` lists the layers (``RootFS.Layers``, diff ids, bottom up) but not
    their sizes; ``docker history`` gives a size per history entry (the layer's size on disk
    as the engine counts it, the sum of its files' apparent sizes, 0 for an entry that only
    changes the config). The non-empty entries, oldest first, are the layers in order; when
    a layer of zero bytes makes the counts differ, entries that cannot make a layer (ENV,
    USER, ...) are left out instead. Each layer is then named by its ChainID (sha256 of the
    chain under it and its diff id, as the OCI image spec defines it): the store keeps one copy
    per ChainID, so two images share exactly the layers whose ChainIDs they share. The sizes
    of an image's layers add up to its size; a difference is printed.
    """
    attrs = client.images.get(ref).attrs
    diffs = [str(d) for d in attrs["RootFS"]["Layers"]]
    history = [
        (int(h.get("Size") or 0), str(h.get("CreatedBy") or ""))
        for h in reversed(client.images.get(ref).history())
    ]
    made = [h for h in history if h[0] > 0]
    if len(made) != len(diffs):
        made = [h for h in history if h[0] > 0 or not CONFIG_ONLY.search(h[1])]
    if len(made) != len(diffs):
        raise RuntimeError(f"{ref}: {len(diffs)} layers, {len(made)} history entries with one")
    layers, chain = [], ""
    for diff, (size, made_by) in zip(diffs, made, strict=True):
        chain = (
            diff
            if not chain
            else "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
        )
        layers.append(Layer(chain, size, made_by))
    size = int(attrs.get("Size") or 0)
    if sum(layer.bytes for layer in layers) != size:
        print(
            f"  note: the layers of {ref} add up to {sum(x.bytes for x in layers):,} bytes, "
            f"its size is {size:,}"
        )
    return ImageLayers(ref, size, tuple(layers))


@dataclass(frozen=True)
class Shares:
    images: int
    total: int  # every image's bytes, added up (what N copies without sharing would take)
    unique: int  # bytes of layers only one of the images has
    stored: int  # bytes of the distinct layers: what the store holds for them

    @property
    def shared(self) -> int:
        return self.total - self.unique

    @property
    def dedup(self) -> float:
        return self.shared / self.total if self.total else 0.0

    @property
    def saved(self) -> float:
        return 1 - self.stored / self.total if self.total else 0.0


def shares(images: Sequence[ImageLayers], leave_out: frozenset[str] = frozenset()) -> Shares:
    """Dedup over ``images``, counting only layers whose ChainID is not in ``leave_out``."""
    users = Counter(layer.chain for im in images for layer in im.layers)
    size = {layer.chain: layer.bytes for im in images for layer in im.layers}
    kept = [layer for im in images for layer in im.layers if layer.chain not in leave_out]
    return Shares(
        images=len(images),
        total=sum(layer.bytes for layer in kept),
        unique=sum(layer.bytes for layer in kept if users[layer.chain] == 1),
        stored=sum(b for chain, b in size.items() if chain not in leave_out),
    )


def df_unique(client: docker.DockerClient, ids: Iterable[str]) -> tuple[int, int] | None:
    """``docker system df -v`` for these images: their sizes added up, and their UNIQUE SIZE
    added up (Size - SharedSize, where shared means with any image on the host); None when
    the engine does not report it."""
    wanted = set(ids)
    rows = [i for i in client.df().get("Images") or [] if i.get("Id") in wanted]
    if len(rows) != len(wanted) or any(int(i.get("SharedSize", -1)) < 0 for i in rows):
        return None
    return (
        sum(int(i["Size"]) for i in rows),
        sum(int(i["Size"]) - int(i["SharedSize"]) for i in rows),
    )


def builder_only(
    client: docker.DockerClient, records: Iterable[BuildRecord], images: Sequence[ImageLayers]
) -> tuple[int, int]:
    """The python stages these builds made that still exist, and the bytes of their layers
    that no image of ``images`` has (the lock, the wheels, the installed packages before they
    are copied into the image): the builder keeps them as its cache, as untagged images that
    are no parent of any image, so removing an image, even with its untagged parents, leaves
    them."""
    in_images = {layer.chain for im in images for layer in im.layers}
    tops = {
        s.image
        for r in records
        for s in r.steps
        if s.image and not s.cached and s.instruction.startswith("RUN pip ")
    }
    kept: dict[str, int] = {}
    found = 0
    for top in tops:
        try:
            stage = image_layers(client, top)
        except docker.errors.NotFound:
            continue
        found += 1
        kept.update((x.chain, x.bytes) for x in stage.layers if x.chain not in in_images)
    return found, sum(kept.values())


# ---------------------------------------------------------------------------- the parts
def fmt_mb(n: int) -> str:
    return f"{n / MB:,.1f} MB" if n >= MB / 10 else f"{n / 1024:,.1f} KB"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def rebuilt(d: Deploy) -> str:
    if not d.builds:
        return "none"
    made = sum(len(b.layers_made) for b in d.builds)
    of = sum(len(b.layer_steps) for b in d.builds)
    what = [b.layers_made[-1].instruction.split()[1] for b in d.builds if b.layers_made]
    return f"{made} of {of}" + (f": {what[-1]}" if made == 1 else "")


@dataclass
class Summary:
    lines: list[str] = field(default_factory=list)


def one_image(bench: Bench, rounds: int, summary: Summary) -> None:
    print(f"\n1. one image, from the state refresh to the image present (median of {rounds})")
    world = bench.world
    declare(world, {"build": BRANCH})
    started = time.perf_counter()
    bench.resolve()  # mirrors cloned, the first plan: not what a deploy costs afterwards
    print(
        f"  first refresh (mirrors of the app and both submodules cloned): "
        f"{time.perf_counter() - started:.2f} s, not counted"
    )
    bench.client.api.prune_builds()
    clean: list[Deploy] = []
    for n in range(rounds):
        if clean:  # the same inputs built again from nothing: its image and cache removed
            last = clean[-1]
            bench.forget([last.image], last.builds)
            bench.client.api.prune_builds()
        want = bench.resolve()[bench.key("build")]
        if bench.engine.docker.has_image(want.image):
            raise RuntimeError(f"clean build round {n + 1}: {want.image} exists already")
        clean.append(bench.deploy("build"))
    cached: list[Deploy] = []
    for n in range(1, rounds + 1):
        git(
            "push",
            "-q",
            "origin",
            f"refs/remotes/origin/{BRANCH}:refs/heads/same{n}",
            cwd=world.app.dir,
        )
        declare(world, {f"same{n}": f"same{n}"})
        cached.append(bench.deploy(f"same{n}"))
    changed: list[Deploy] = []
    layer_diffs: list[int] = []
    for n in range(1, rounds + 1):
        previous = clean[-1].image if not changed else changed[-1].image
        branch(world, BRANCH, {OWN_CHANGE: f"CHANGE = {n}\n"})
        changed.append(bench.deploy("build"))
        old = bench.client.images.get(previous).attrs["RootFS"]["Layers"]
        new = bench.client.images.get(changed[-1].image).attrs["RootFS"]["Layers"]
        differ = sum(1 for a, b in zip(old, new, strict=False) if a != b) + abs(len(old) - len(new))
        layer_diffs.append(differ)
    base = median([d.total for d in clean])
    print(
        f"  {'deploy':<32} {'resolve':>8} {'observe':>8} {'context':>8} {'docker':>8} "
        f"{'total':>8} {'x clean':>8} {'sent':>8}  layers built"
    )
    rows = [
        ("clean build (no cache)", clean),
        ("cached deploy (another branch)", cached),
        ("one-addon change (own code)", changed),
    ]
    for label, deploys in rows:
        total = median([d.total for d in deploys])
        context = max((b.context_bytes for d in deploys for b in d.builds), default=0)
        print(
            f"  {label:<32} {median([d.resolve for d in deploys]):>7.2f}s "
            f"{median([d.observe for d in deploys]):>7.2f}s "
            f"{median([d.build - d.docker for d in deploys]):>7.2f}s "
            f"{median([d.docker for d in deploys]):>7.2f}s {total:>7.2f}s "
            f"{ratio(total, base):>8.3f} {fmt_mb(context) if context else '-':>8}  "
            f"{rebuilt(deploys[-1])}"
        )
    for label, deploys in rows:
        print(f"    {label}: " + ", ".join(f"{d.total:.2f}" for d in deploys) + " s")
    built_when_cached = sum(len(d.builds) for d in cached)
    print(
        f"  cached deploys that built anything: {built_when_cached} of {len(cached)}; "
        f"layers differing from the image before, per change: {layer_diffs}"
    )
    steps = clean[-1].builds[-1].steps
    print(
        f"  the recipe ({len(steps)} steps, {len(clean[-1].builds[-1].layer_steps)} "
        "making layers), clean build:"
    )
    for s in steps:
        said = "" if s.instruction.upper().startswith("FROM ") else "cache" if s.cached else "built"
        print(f"    {said:<5}  {s.instruction[:92]}")
    c, k, a = base, median([d.total for d in cached]), median([d.total for d in changed])
    summary.lines.append(
        f"clean build {c:.2f} s; cached deploy {k:.2f} s ({ratio(k, c):.3f}x); "
        f"one-addon change {a:.2f} s ({ratio(a, c):.2f}x; layers built: {rebuilt(changed[-1])})"
    )


def shared_bytes(bench: Bench, environments: int, base_image: str, summary: Summary) -> None:
    print(
        f"\n2. bytes shared by the images of {environments} environments of one project "
        "(a branch each with its own small code change; same submodules and lock)"
    )
    world = bench.world
    git("fetch", "-q", "origin", cwd=world.app.dir)
    envs = {f"env{n}": f"bench/env{n}" for n in range(1, environments + 1)}
    for n, (_env, ref) in enumerate(envs.items(), 1):
        branch(world, ref, {"acme_base/models/bench_env.py": f"ENVIRONMENT = {n}\n"})
    declare(world, envs)
    done = len(bench.recorder.records)
    started = time.perf_counter()
    wants = bench.resolve()
    listed = bench.engine.docker.observe().images
    for env in envs:
        want = wants[bench.key(env)]
        if want.image not in listed:
            bench.build_step(want)
    seconds = time.perf_counter() - started
    records = bench.recorder.records[done:]
    tags = [wants[bench.key(env)].image for env in envs]
    if len(set(tags)) != len(tags):
        raise RuntimeError("two environments with different code got one image")
    print(
        f"  one pass (refresh, listing, {len(records)} builds): {seconds:.1f} s, "
        f"{median([r.seconds for r in records]):.2f} s per build (median); layers built per "
        f"image: {sorted({len(r.layers_made) for r in records})}"
    )
    client = bench.client
    images = [image_layers(client, tag) for tag in tags]
    base = frozenset(layer.chain for layer in image_layers(client, base_image).layers)
    whole, added = shares(images), shares(images, base)
    first = images[0]
    users = Counter(layer.chain for im in images for layer in im.layers)
    print(
        f"  the layers of {first.tag} ({fmt_mb(first.size)}; the base's "
        f"{len(base)} layers are {fmt_mb(sum(x.bytes for x in first.layers if x.chain in base))})"
    )
    for layer in first.layers:
        if layer.chain in base:
            continue
        what = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", layer.made_by).strip()
        print(
            f"    {fmt_mb(layer.bytes):>10}  in {users[layer.chain]:>2} of {len(images)}  "
            f"{what[:80]}"
        )
    print(
        f"  {'':<36} {'total':>11} {'unique':>11} {'shared':>11} {'dedup':>9} "
        f"{'stored':>11} {'saved':>7}"
    )
    for label, s in (("whole images", whole), ("the layers builds add (no base)", added)):
        print(
            f"  {label:<36} {fmt_mb(s.total):>11} {fmt_mb(s.unique):>11} "
            f"{fmt_mb(s.shared):>11} {s.dedup:>8.3%} {fmt_mb(s.stored):>11} {s.saved:>6.1%}"
        )
    ids = [str(client.images.get(tag).attrs["Id"]) for tag in tags]
    df = df_unique(client, ids)
    if df is not None:
        print(
            f"  docker system df -v for these images: size {fmt_mb(df[0])}, unique size "
            f"{fmt_mb(df[1])} (shared with any image on the host, the base included)"
        )
    stages, kept = builder_only(client, bench.recorder.records, images)
    print(
        f"  kept by the builder alone, in no image: {stages} python stage(s), {fmt_mb(kept)} "
        "(lock, wheels, installed packages; an untagged image no image is built on: removing "
        "the images leaves it)"
    )
    print(
        "  dedup = shared / total; total = the images' sizes added up; unique = bytes of "
        "layers no other of them has; stored = each distinct layer once; saved = 1 - "
        "stored / total"
    )
    aims = f"seed > 80 %: {verdict(whole.dedup > SEED_AIM)}; target > 95 %: " + verdict(
        whole.dedup > TARGET_AIM
    )
    summary.lines.append(f"dedup over {len(images)} images: {whole.dedup:.3%} ({aims})")
    summary.lines.append(
        f"  over the layers builds add (base left out): {added.dedup:.2%} (seed > 80 %: "
        f"{verdict(added.dedup > SEED_AIM)}; target > 95 %: {verdict(added.dedup > TARGET_AIM)}); "
        f"unique per image {fmt_mb(added.unique // max(1, len(images)))}"
    )


# ---------------------------------------------------------------------------------- main
@contextlib.contextmanager
def bench_world(images: Mapping[str, str]) -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="odooops-bench-build-"))
    try:
        yield World(root, images, 30000 + (int(time.time()) % 19) * 20)  # above the test bands
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    options = Options(__doc__, "3 environments, 1 round, a small layout (4 addons per repository)")
    options.size("--rounds", 3, 1, "deploys of each kind in part 1 (median taken)")
    options.size("--environments", 10, 3, "environments (branches) whose images part 2 compares")
    options.size("--addons", 40, 4, "addons in each of the two addon repositories")
    options.size("--own-addons", 10, 2, "addons of the app's own (next to acme_base, acme_sale)")
    options.size("--addon-kb", 128, 16, "KiB of each addon made here (mostly a static asset)")
    options.size("--wheels", 8, 2, "wheels in the lock")
    options.size("--wheel-kb", 4096, 256, "KiB of each wheel")
    args = options.parse(None)
    print(title(__doc__))
    images = fixture_images()
    base_image = images["ODOOOPS_FIXTURE_ODOO_IMAGE"]
    token = secrets.token_hex(4)
    started = time.perf_counter()
    summary = Summary()
    with bench_world(images) as world:
        house = world.root / "wheelhouse"
        bench = Bench(world, world.new_engine(wheelhouse=house))
        bench.before = {str(i.id) for i in bench.client.images.list(all=True)}
        try:
            layout = make_layout(world, house, args, token)
            widen_ports(world, 1 + args.rounds + args.environments)
            base_size = int(bench.client.images.get(base_image).attrs["Size"])
            print(
                f"world: project {world.project}, instance {world.instance}, token {token}; "
                f"base {base_image} ({fmt_mb(base_size)})"
            )
            print(
                f"layout: app examples/acme-addons with {args.own_addons} more own addons "
                f"({fmt_mb(layout.own_bytes)}); 2 addon repositories as submodules, "
                f"{args.addons} addons each ({fmt_mb(layout.repo_bytes)} of files); a "
                f"lock of {args.wheels} wheels ({fmt_mb(layout.wheel_bytes)}) from a wheel "
                "directory"
            )
            one_image(bench, args.rounds, summary)
            shared_bytes(bench, args.environments, base_image, summary)
        finally:
            with uninterruptible():
                print(f"\ncleanup: removed {bench.cleanup()}")
                world.docker.close()
    print("\nsummary")
    for line in summary.lines:
        print(f"  {line}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main, "the images this run built were removed")
