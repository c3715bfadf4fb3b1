"""Images built from a real repository layout: own addons, addon repositories as git
submodules, Python dependencies from a lock served by a local wheel directory.

Real git remotes on disk (a user adds submodules with the git CLI), the real Docker engine,
PostgreSQL and the Odoo stand-in. What is checked is what the issue promises: the addons of
every repository are found and installed, the locked distribution is importable by Odoo, an
image is reused wherever the inputs are the same, a change to own code rebuilds one layer,
the same inputs give the same layers, and bad input holds the environment with a clear error
and builds nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.model import EnvKey
from reconciler.engine.status import Health
from tests.integration.world import World, git
from tests.wheels import lock_line, make_wheel

DEP = "odooops_fixture_dep"


def manifest(name: str, version: str = "19.0.1.0.0", **extra: Any) -> str:
    return repr({"name": name, "version": version, "depends": ["base"], **extra})


def addon_remote(
    world: World, name: str, files: Mapping[str, str], links: Mapping[str, str] | None = None
) -> Path:
    """A bare remote of an addon repository (as OCA's), seeded with ``files`` and symlinks."""
    remote = world.root / "remotes" / f"{name}.git"
    seed = world.root / f"{name}-seed"
    git("init", "-q", "--bare", str(remote))
    for path, content in files.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(content)
    for path, target in (links or {}).items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, seed / path)
    git("init", "-q", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    return remote


def add_submodules(world: World, subs: Mapping[str, str], branch: str) -> str:
    """``git submodule add URL PATH`` for each, committed and pushed to ``branch``."""
    d = world.app.dir
    git("fetch", "-q", "origin", cwd=d)
    git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=d)
    for path, url in subs.items():
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q", url, path, cwd=d)
    git("commit", "-q", "-m", "add submodules", cwd=d)
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=d)
    return git("rev-parse", "HEAD", cwd=d)


def drop_submodule(world: World, path: str, branch: str) -> None:
    git("rm", "-q", "-r", path, cwd=world.app.dir)
    git("commit", "-q", "-m", f"drop {path}", cwd=world.app.dir)
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=world.app.dir)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    make_wheel(folder, DEP, "1.0", {f"{DEP}/__init__.py": "VALUE = 42\n"})
    make_wheel(folder, "unrelated", "2.0", {"unrelated/__init__.py": ""})  # never copied
    return folder


def layered_world(world: World, wheelhouse: Path) -> dict[str, Path]:
    """The app of ``world`` on ``release/v1`` with two addon repositories as submodules (one by
    a relative URL, as on a forge), one declared in the project file, a lock of one
    distribution, and modules from all four."""
    web = addon_remote(
        world,
        "oca-web",
        {
            "web_x/__init__.py": "",
            "web_x/__manifest__.py": manifest("Web X"),
            "web_old/__init__.py": "",
            "web_old/__manifest__.py": manifest("Web Old", "18.0.1.0.0", installable=False),
            "setup/web_x/setup.py": "",
        },
        links={"setup/web_x/odoo/addons/web_x": "../../../../web_x"},
    )
    tools = addon_remote(
        world,
        "tools",
        {
            "addons/tools_y/__init__.py": "",
            "addons/tools_y/__manifest__.py": manifest(
                "Tools Y", external_dependencies={"python": [DEP]}
            ),
        },
    )
    add_submodules(world, {"oca/web": "../oca-web.git", "vendor/tools": str(tools)}, "release/v1")
    declared = addon_remote(
        world,
        "server-tools",
        {"base_a/__init__.py": "", "base_a/__manifest__.py": manifest("Base A")},
    )
    path = f"projects/{world.project}.yaml"
    project = yaml.safe_load((world.state.dir / path).read_text())
    project["repositories"] = [{"url": f"file://{declared}", "ref": "main"}]
    world.state.write({path: yaml.safe_dump(project)}, "declare server-tools")
    wheel = next(wheelhouse.glob(f"{DEP}-*.whl"))
    world.app.write(
        {
            "requirements.txt": f"{DEP}\n",
            "requirements.lock": lock_line(wheel, DEP, "1.0") + "\n",
            ".odooops.yaml": yaml.safe_dump({"modules": ["web_x", "tools_y", "base_a"]}),
        },
        "lock and modules",
        branch="release/v1",
    )
    return {"web": web, "tools": tools, "server-tools": declared}


def installed(world: World, env: str) -> dict[str, str]:
    rows = world.query(
        f"{world.project}__{env}",
        "SELECT name, state FROM ir_module_module "
        "WHERE name IN ('web_x', 'tools_y', 'web_old', 'base_a')",
    )
    return {name: state for name, state in rows}


def test_a_real_layout_builds_once_per_inputs_and_own_code_rebuilds_one_layer(
    world: World, wheelhouse: Path
) -> None:
    layered_world(world, wheelhouse)
    git("push", "-q", "origin", "release/v1:refs/heads/release/v2", cwd=world.app.dir)
    world.declare("staging", branch="release/v1")
    world.declare("qa", branch="release/v2", tier="staging")  # the same tree
    engine = world.engine(wheelhouse=wheelhouse)
    builds: list[str] = []
    build = engine.docker.build_image
    engine.docker.build_image = lambda tag, *a, **k: (builds.append(tag), build(tag, *a, **k))[1]  # type: ignore[method-assign]

    result = world.reconcile()
    assert result.errors == {}, result.errors
    assert engine.current is not None and not engine.current.held, engine.current.held
    want = engine.current.environments[EnvKey(world.project, "staging")]  # type: ignore[union-attr]
    qa = engine.current.environments[EnvKey(world.project, "qa")]  # type: ignore[union-attr]
    assert builds == [want.image] and qa.image == want.image  # one build, shared
    assert "/opt/odooops/app/oca/web" in want.addons_paths
    assert "/opt/odooops/app/vendor/tools/addons" in want.addons_paths
    # Odoo found the submodules' addons, and the lock's distribution (its external dependency).
    assert "/opt/odooops/repos/server-tools" in want.addons_paths
    assert installed(world, "staging") == {
        "web_x": "installed",
        "tools_y": "installed",
        "web_old": "uninstallable",
        "base_a": "installed",
    }
    image = world.docker.images.get(want.image)
    out = world.docker.containers.run(
        image.id, ["-c", f"import {DEP}; print({DEP}.VALUE)"], entrypoint="python3", remove=True
    )
    assert out.strip() == b"42"

    # Own code changes: only the last layer (the app's own tree) is new.
    world.app.write({"acme_base/models/extra.py": "X = 1\n"}, "own code", branch="release/v1")
    result = world.reconcile()
    assert result.errors == {}, result.errors
    new = engine.current.environments[EnvKey(world.project, "staging")]  # type: ignore[union-attr]
    assert new.image != want.image and builds == [want.image, new.image]
    old_layers = image.attrs["RootFS"]["Layers"]
    new_layers = world.docker.images.get(new.image).attrs["RootFS"]["Layers"]
    assert len(new_layers) == len(old_layers)
    assert new_layers[:-1] == old_layers[:-1] and new_layers[-1] != old_layers[-1]


def test_the_same_inputs_give_the_same_layers(world: World, wheelhouse: Path) -> None:
    """Two builds of one plan without any cache: the same layer digests, so the image is the
    same wherever and whenever it is built."""
    layered_world(world, wheelhouse)
    world.declare("staging", branch="release/v1")
    engine = world.engine(wheelhouse=wheelhouse)
    assert world.reconcile().errors == {}
    want = engine.current.environments[EnvKey(world.project, "staging")]  # type: ignore[union-attr]
    layers = []
    for n in range(2):
        tag = f"{want.image}-repro{n}"
        engine.docker.build_image(tag, engine._build_context(want, "image"), {})
        layers.append(world.docker.images.get(tag).attrs["RootFS"]["Layers"])
        world.docker.images.remove(tag)
        world.docker.api.prune_builds()
        time.sleep(1.1)  # a folder dated by the build would now differ
    assert layers[0] == layers[1]


def test_bad_inputs_hold_the_environment_with_the_error_and_build_nothing(
    world: World, wheelhouse: Path
) -> None:
    world.declare("staging", branch="release/v1")
    engine = world.engine(wheelhouse=wheelhouse)
    key = EnvKey(world.project, "staging")
    images = {i.id for i in world.docker.images.list(name=f"odooops/{world.project}")}

    def held() -> str:
        world.reconcile()
        assert engine.current is not None and key not in engine.current.environments
        return engine.current.held[key]

    # A module in the app and in a submodule: both named.
    dup = addon_remote(
        world, "dup", {"acme_base/__init__.py": "", "acme_base/__manifest__.py": manifest("x")}
    )
    add_submodules(world, {"dup": str(dup)}, "release/v1")
    reason = held()
    assert "module acme_base is in two places (app: acme_base and dup: acme_base)" in reason
    # A submodule whose remote is gone.
    drop_submodule(world, "dup", "release/v1")
    gone = addon_remote(world, "gone", {"README": "x"})
    add_submodules(world, {"gone": str(gone)}, "release/v1")
    for path in sorted(gone.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    gone.rmdir()
    assert "submodule gone" in held()
    # An unpinned requirements.txt.
    drop_submodule(world, "gone", "release/v1")
    world.app.write({"requirements.txt": "requests>=2\n"}, "unpinned", branch="release/v1")
    assert "requirements.txt:1: requests>=2 is not pinned" in held()
    assert {i.id for i in world.docker.images.list(name=f"odooops/{world.project}")} == images
    assert world.containers() == {}


def set_quotas(world: World, **quotas: object) -> None:
    platform = yaml.safe_load((world.state.dir / "odooops.yaml").read_text())
    platform["quotas"] = {**platform.get("quotas", {}), **quotas}
    world.state.write({"odooops.yaml": yaml.safe_dump(platform)}, "quotas")


def test_a_red_build_keeps_the_old_version_serving_and_says_why(
    world: World, wheelhouse: Path
) -> None:
    """A requirement the wheel directory does not have: the build is red at pip's step with
    pip's own words, recorded with its log; the running version is untouched."""
    world.declare("staging", branch="release/v1")
    engine = world.engine(wheelhouse=wheelhouse)
    result = world.reconcile()
    assert result.errors == {}, result.errors
    status = engine.status.get(f"{world.project}/staging")
    assert status is not None and status.health is Health.HEALTHY
    container = world.containers()[f"odooops-{world.project}-staging-odoo"].id
    missing = "a" * 64
    world.app.write(
        {"requirements.lock": f"requests==2.31.0 --hash=sha256:{missing}\n"},
        "a requirement nobody has",
        branch="release/v1",
    )
    result = world.reconcile()
    error = result.errors[EnvKey(world.project, "staging")]
    assert error.code == "build_failed", error
    red = engine.builds.list()[0]
    assert red.state == "red" and red.step.startswith("RUN pip install")
    assert any("requests==2.31.0" in line for line in red.excerpt), red.excerpt
    assert red.id in error.message and f"odooops builds logs {red.id}" in error.remediation
    assert "requests==2.31.0" in engine.builds.log_path(red.id).read_text()
    assert world.containers()[f"odooops-{world.project}-staging-odoo"].id == container
    assert urllib.request.urlopen(f"{status.url}/web/health", timeout=5).status == 200


def test_a_hanging_step_is_stopped_at_the_timeout_and_leaves_nothing_behind(
    world: World,
) -> None:
    set_quotas(world, build_timeout="8s")
    world.app.write(
        {"Dockerfile": "ARG ODOO_IMAGE\nFROM $ODOO_IMAGE\nRUN sleep 600\n"},
        "a step that hangs",
        branch="release/v1",
    )
    world.declare("staging", branch="release/v1")
    started = time.monotonic()
    result = world.reconcile()
    took = time.monotonic() - started
    error = result.errors[EnvKey(world.project, "staging")]
    assert error.code == "build_timed_out", error
    assert took < 60, took
    record = world.engine().builds.list()[0]
    assert record.state == "red" and "build_timed_out" in record.error
    assert "RUN sleep 600" in record.step
    deadline = time.monotonic() + 30  # the engine stops the step's container and removes it
    while time.monotonic() < deadline:
        # The builder's step container (no label of ours): found by its command.
        left = [c for c in world.docker.api.containers(all=True) if "sleep 600" in c["Command"]]
        if not left:
            break
        time.sleep(1)
    assert left == [], left
    assert f"odooops-{world.project}-staging-odoo" not in world.containers()


class StatusForge:
    """A Gitea-like API on loopback recording the commit statuses it is sent."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.answer = 201
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                forge.posts.append(
                    {"path": self.path, "auth": self.headers["Authorization"], **body}
                )
                self.send_response(forge.answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self, sha: str, timeout: float = 15) -> dict[str, list[str]]:
        """Each context's states for ``sha``, in order, once the posts have settled."""
        deadline, seen = time.monotonic() + timeout, -1
        while time.monotonic() < deadline and len(self.posts) != seen:
            seen = len(self.posts)
            time.sleep(1.5)
        out: dict[str, list[str]] = {}
        for post in self.posts:
            if post["path"].endswith(f"/statuses/{sha}"):
                out.setdefault(post["context"], []).append(post["state"])
        return out


@pytest.fixture
def status_forge() -> Iterator[StatusForge]:
    forge = StatusForge()
    try:
        yield forge
    finally:
        forge.server.shutdown()
        forge.server.server_close()


def test_build_and_deploy_results_are_posted_on_the_commit(
    world: World, status_forge: StatusForge
) -> None:
    engine = world.engine()
    engine.secrets.set_named("forge-token", "tok-123", ("127.0.0.1",))
    path = world.state.dir / f"projects/{world.project}.yaml"
    project = yaml.safe_load(path.read_text())
    project["repository"]["forge"] = {
        "kind": "gitea",
        "api": status_forge.url,
        "repo": "acme/app",
        "token": {"secret": "forge-token"},
    }
    world.state.write({f"projects/{world.project}.yaml": yaml.safe_dump(project)}, "forge")
    world.declare("staging", branch="release/v1")
    assert world.reconcile().errors == {}
    sha = git("rev-parse", "origin/release/v1", cwd=world.app.dir)
    assert status_forge.states(sha) == {
        "odooops/build": ["pending", "success"],
        "odooops/deploy staging": ["pending", "success"],
    }
    assert {p["auth"] for p in status_forge.posts} == {"token tok-123"}
    assert all(p["path"] == f"/api/v1/repos/acme/app/statuses/{sha}" for p in status_forge.posts)

    # A forge that fails changes nothing for the deployment (and the token is never logged).
    status_forge.answer = 500
    new = world.app.write({"acme_base/models/extra.py": "X = 1\n"}, "change", branch="release/v1")
    assert world.reconcile().errors == {}
    assert status_forge.states(new)["odooops/deploy staging"][-1] == "success"


def committed(world: World, path: str) -> str:
    """A file of the state repository as its remote has it now (the daemon commits too)."""
    return git("show", f"main:{path}", cwd=world.state.remote)


def test_declared_repositories_are_pinned_by_a_commit_and_bring_just_their_addons(
    world: World,
) -> None:
    tools = addon_remote(
        world,
        "server-tools",
        {
            "base_a/__init__.py": "",
            "base_a/__manifest__.py": manifest("Base A"),
            "base_b/__init__.py": "",
            "base_b/__manifest__.py": manifest("Base B"),
        },
    )
    path = f"projects/{world.project}.yaml"
    project = yaml.safe_load((world.state.dir / path).read_text())
    project["repositories"] = [{"url": f"file://{tools}", "ref": "main", "addons": ["base_a"]}]
    world.state.write({path: yaml.safe_dump(project)}, "declare server-tools")
    world.app.write(
        {".odooops.yaml": yaml.safe_dump({"modules": ["base_a"]})},
        "use base_a",
        branch="release/v1",
    )
    world.declare("staging", branch="release/v1")
    engine = world.engine()
    result = world.reconcile()
    assert result.errors == {}, result.errors
    head = git("ls-remote", str(tools), "refs/heads/main").split()[0]
    lock_path = f"projects/{world.project}.lock.yaml"
    lock = yaml.safe_load(committed(world, lock_path))
    assert lock["repositories"]["server-tools"] == {
        "url": f"file://{tools}",
        "ref": "main",
        "commit": head,
    }
    assert installed(world, "staging").get("web_x") is None
    rows = world.query(
        f"{world.project}__staging", "SELECT state FROM ir_module_module WHERE name = 'base_a'"
    )
    assert rows == [("installed",)]
    want = engine.current.environments[EnvKey(world.project, "staging")]  # type: ignore[union-attr]
    listing = world.docker.containers.run(
        want.image, ["/opt/odooops/repos/server-tools"], entrypoint="ls", remove=True
    )
    assert listing.split() == [b"base_a"]  # base_b stays out of the image

    # A new commit upstream changes nothing until the pin moves (by deleting it).
    seed = world.root / "server-tools-seed"
    (seed / "base_a" / "models.py").write_text("X = 1\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "upstream change", cwd=seed)
    git("push", "-q", str(tools), "main", cwd=seed)
    assert world.reconcile().errors == {}
    assert engine.current.environments[want.key].image == want.image  # type: ignore[union-attr]
    world.state.write({lock_path: None}, "move the pin of server-tools")
    assert world.reconcile().errors == {}
    moved = engine.current.environments[want.key]  # type: ignore[union-attr]
    assert moved.image != want.image
    world.state.write({}, "sync")
    new_head = git("ls-remote", str(tools), "refs/heads/main").split()[0]
    assert (
        yaml.safe_load((world.state.dir / lock_path).read_text())["repositories"]["server-tools"][
            "commit"
        ]
        == new_head
        != head
    )


def test_a_failing_step_of_the_apps_own_dockerfile_is_red_with_its_lines(world: World) -> None:
    world.app.write(
        {"Dockerfile": "ARG ODOO_IMAGE\nFROM $ODOO_IMAGE\nRUN echo 'no such tool' >&2; false\n"},
        "a Dockerfile step that fails",
        branch="release/v1",
    )
    world.declare("staging", branch="release/v1")
    error = world.reconcile().errors[EnvKey(world.project, "staging")]
    assert error.code == "build_failed", error
    record = world.engine().builds.list()[0]
    assert record.state == "red" and "false" in record.step
    assert any("no such tool" in line for line in record.excerpt), record.excerpt
    assert any("non-zero code" in line for line in record.excerpt), record.excerpt
    assert f"odooops-{world.project}-staging-odoo" not in world.containers()
