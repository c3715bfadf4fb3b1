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

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.model import EnvKey
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
    a relative URL, as on a forge), a lock of one distribution, and modules from all three."""
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
    wheel = next(wheelhouse.glob(f"{DEP}-*.whl"))
    world.app.write(
        {
            "requirements.txt": f"{DEP}\n",
            "requirements.lock": lock_line(wheel, DEP, "1.0") + "\n",
            ".odooops.yaml": yaml.safe_dump({"modules": ["web_x", "tools_y"]}),
        },
        "lock and modules",
        branch="release/v1",
    )
    return {"web": web, "tools": tools}


def installed(world: World, env: str) -> dict[str, str]:
    rows = world.query(
        f"{world.project}__{env}",
        "SELECT name, state FROM ir_module_module WHERE name IN ('web_x', 'tools_y', 'web_old')",
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
    assert installed(world, "staging") == {
        "web_x": "installed",
        "tools_y": "installed",
        "web_old": "uninstallable",
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
    desired = engine.sources.resolve(engine.load_state())
    want = desired.environments[EnvKey(world.project, "staging")]
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
    images = {i.id for i in world.docker.images.list()}

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
    assert {i.id for i in world.docker.images.list()} == images
    assert world.containers() == {}
