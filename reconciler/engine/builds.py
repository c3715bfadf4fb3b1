"""Build contexts: what the image builder is handed, made from git trees, never a checkout.

Every byte of a context comes from the plan's inputs: each repository's tree at its commit
(``GitSource.archive``: sorted, dated by the commit, owned by root), the Python lock, the
distributions the lock names from the platform's wheel directory, and the generated
Dockerfile. So the same inputs give the same context, and the image builder the same layers.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from reconciler.core.buildplan import APP_ROOT, BuildPlan, Source
from reconciler.drivers.tarstream import merged

# A repository's tree (or the folder ``prefix`` of it) at its commit, as a tar with its entries
# under a root folder.
Archive = Callable[[Source, str, str], bytes]
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


class Wheelhouse:
    """The platform's folder of Python distributions (``--wheelhouse``), for builds that must
    not reach an index: a build gets exactly the files whose SHA-256 its lock names (never the
    whole folder, which other projects share), so the context depends on the lock alone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._digests: dict[tuple[str, int, int], str] = {}  # (name, size, mtime) -> sha256

    def matching(self, hashes: frozenset[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for path in sorted(self.path.iterdir()):
            if not path.is_file() or not path.name.endswith(DIST_SUFFIXES):
                continue
            st = path.stat()
            key = (path.name, st.st_size, st.st_mtime_ns)
            with self._lock:
                digest = self._digests.get(key)
            if digest is None:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                with self._lock:
                    self._digests[key] = digest
            if digest in hashes:
                out[path.name] = path.read_bytes()
        return out


def image_context(plan: BuildPlan, archive: Archive, wheels: Wheelhouse | None) -> bytes:
    """The context of the generated recipe: ``Dockerfile``, ``python/`` and one folder per
    repository under ``layers/`` holding it at its path in the image, as ``plan.dockerfile``
    copies them."""
    files = {"Dockerfile": plan.dockerfile.encode()}
    if plan.python is not None:
        files["python/requirements.lock"] = plan.python.content
        if plan.wheelhouse:
            files["python/wheels/.keep"] = b""  # the folder the recipe copies, if none match
            for name, data in (wheels.matching(plan.python.hashes) if wheels else {}).items():
                files[f"python/wheels/{name}"] = data
    return merged((part for s in plan.sources for part in _parts(s, archive)), files)


def _parts(source: Source, archive: Archive) -> list[bytes]:
    if not source.only:
        return [archive(source, source.context + source.mount, "")]
    return [
        archive(source, f"{source.context}{source.mount}/{name}", folder)
        for folder, name in source.only
    ]


def app_context(plan: BuildPlan, archive: Archive) -> bytes:
    """The context of the app's own Dockerfile: the repository as a clone with its submodules
    would show it."""
    submodules = [s for s in plan.sources if s.mount.startswith(APP_ROOT + "/")]
    app = [s for s in plan.sources if s.own]
    return merged((archive(s, "" if s.own else s.name, "") for s in [*app, *submodules]), {})
