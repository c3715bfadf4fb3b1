"""What goes into an environment's image, and the key that names it.

An image is built once per exact set of inputs and reused wherever they are the same: the base
image's id, the tree of every repository that lands in it (the app's own, each git submodule's
at its pinned commit), the Python lock, the declared system packages and the recipe. The key
hashes all of them; two environments on different branches with the same inputs share one image.

Everything here is pure: repositories are read through ``TreeView`` (a git tree at one commit,
from the mirrors ``GitSource`` keeps), so the scan, the checks and the recipe are unit-tested
without git or Docker. What Odoo would silently do wrong is refused here, before any build:
a manifest that does not parse (Odoo hides the module), a version of another series (Odoo marks
it not installable and exits 0), one module name in two places (Odoo takes whichever comes
first on the addons path).
"""

from __future__ import annotations

import ast
import hashlib
import json
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from reconciler.core.errors import OdooOpsError

RECIPE_VERSION = 2
APP_ROOT = "/opt/odooops/app"
REPOS_ROOT = "/opt/odooops/repos"  # declared repositories, one folder each
PYTHON_ROOT = "/opt/odooops/python"
BUILD_ROOT = "/opt/odooops/build"
APP_DOCKERFILE = "Dockerfile"
# How deep below a repository's root the scan looks for folders of addons: `addons/`,
# `src/addons/`, `vendor/oca/web/` are found; OCA's `setup/<m>/odoo/addons/<m>` symlink farms
# (depth 4) are not, and would be aliases of the real folders anyway.
SCAN_DEPTH = 3
MANIFEST = "__manifest__.py"
LOCK_NAMES = ("requirements.lock", "requirements.txt")
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]*\])?(==[^\s;]+|\s*@\s*\S+)")
_HASH = re.compile(r"^--hash=sha256:([0-9a-f]{64})$")
_DEB_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


class BuildInputError(OdooOpsError):
    """The repositories as pushed cannot make a working image; nothing is built or deployed."""

    code = "invalid_build_input"

    def __init__(self, message: str, *, code: str, remediation: str) -> None:
        super().__init__(message, code=code, remediation=remediation, retryable=False)


# --------------------------------------------------------------------------- reading trees
class EntryKind(StrEnum):
    TREE = "tree"
    FILE = "file"
    LINK = "link"  # a symlink: its content is the target path
    COMMIT = "commit"  # a git submodule: its id is the pinned commit


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    id: str  # git object id (tree, blob, or the submodule's commit)


class TreeView(Protocol):
    """One repository's tree at one commit, read-only (``GitSource.view`` gives one)."""

    @property
    def tree_id(self) -> str: ...

    def entries(self, path: str) -> Mapping[str, Entry] | None:
        """The entries of the directory at ``path`` ("" the root); None if it is not one."""
        ...

    def read(self, path: str) -> bytes | None:
        """A file's content or a symlink's target; None when absent or a directory."""
        ...


class FileTree:
    """A ``TreeView`` over files held in memory: the fake for tests and benchmarks.

    Ids are content hashes, so equal content has equal ids as in git.
    """

    def __init__(
        self,
        files: Mapping[str, bytes],
        links: Mapping[str, str] | None = None,
        gitlinks: Mapping[str, str] | None = None,
    ) -> None:
        self._dirs: dict[str, dict[str, Entry]] = {"": {}}
        self._blobs: dict[str, bytes] = {}
        leaves: list[tuple[str, Entry, bytes | None]] = []
        for path, data in files.items():
            leaves.append((path, Entry(EntryKind.FILE, _digest(b"f" + data)), data))
        for path, target in (links or {}).items():
            leaves.append((path, Entry(EntryKind.LINK, _digest(b"l" + target.encode())), None))
            self._blobs[path] = target.encode()
        for path, commit in (gitlinks or {}).items():
            leaves.append((path, Entry(EntryKind.COMMIT, commit), None))
        for path, entry, content in leaves:
            parent, name = posixpath.split(path)
            self._dir(parent)[name] = entry
            if content is not None:
                self._blobs[path] = content
        self._ids: dict[str, str] = {}

    def _dir(self, path: str) -> dict[str, Entry]:
        if path not in self._dirs:
            parent, name = posixpath.split(path)
            self._dirs[path] = {}
            self._dir(parent)[name] = Entry(EntryKind.TREE, "")
        return self._dirs[path]

    def _tree_id(self, path: str) -> str:
        if path not in self._ids:
            parts = []
            for name, entry in sorted(self._dirs[path].items()):
                child = posixpath.join(path, name) if path else name
                ident = self._tree_id(child) if entry.kind is EntryKind.TREE else entry.id
                parts.append(f"{entry.kind}:{name}:{ident}")
            self._ids[path] = _digest("\n".join(parts).encode())
        return self._ids[path]

    @property
    def tree_id(self) -> str:
        return self._tree_id("")

    def entries(self, path: str) -> Mapping[str, Entry] | None:
        path = _norm(path)
        if path not in self._dirs:
            return None
        out = {}
        for name, entry in self._dirs[path].items():
            if entry.kind is EntryKind.TREE:
                entry = Entry(EntryKind.TREE, self._tree_id(posixpath.join(path, name)))
            out[name] = entry
        return out

    def read(self, path: str) -> bytes | None:
        return self._blobs.get(_norm(path))


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Source:
    """One repository tree placed in the image."""

    name: str  # "app", or the submodule's path in the app repository
    url: str  # without credentials
    commit: str
    tree: str
    mount: str  # where it lands in the image
    own: bool  # the app repository itself (the most often changed layer)
    # Only these addon folders (folder in the repository, name), each placed at
    # ``<mount>/<name>``; empty: the whole tree at ``mount``.
    only: tuple[tuple[str, str], ...] = ()

    @property
    def context(self) -> str:
        """Its folder in the build context, holding the image's file system from ``/`` down,
        so the layer's folders carry the times of the tar, never the time of the build."""
        return "layers/" + self.mount.strip("/").replace("/", "_")


@dataclass(frozen=True)
class Addon:
    name: str
    source: str  # Source.name
    path: str  # its folder in that repository
    tree: str  # git tree id of the folder: what decides whether it needs ``-u``
    version: str


@dataclass(frozen=True)
class PythonLock:
    path: str  # in the app repository
    content: bytes
    hashes: frozenset[str]  # sha256 of every allowed distribution file

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class BuildPlan:
    """Everything one image is made of; ``tag`` names it by ``key``."""

    project: str
    base: str  # image reference of the base (odoo:19.0)
    base_id: str
    sources: tuple[Source, ...]  # third party first, sorted by name; the app last
    addons: tuple[Addon, ...]
    addons_paths: tuple[str, ...]  # inside the image
    # Modules marked ``installable: False``: in the image all the same, so one installed
    # before is still updated when its folder changes (and Odoo then says it cannot be).
    uninstallable: tuple[Addon, ...]
    python: PythonLock | None
    system_packages: tuple[str, ...]
    app_base: str  # tag of the image the app's own Dockerfile builds ("" without one)
    wheelhouse: bool  # Python distributions come from the platform's wheel directory
    dockerfile: str = field(init=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dockerfile", recipe(self))
        inputs = {
            "recipe": RECIPE_VERSION,
            "base": self.base_id,
            "sources": [[s.mount, s.tree, [list(o) for o in s.only]] for s in self.sources],
            "python": self.python.sha256 if self.python else None,
            "packages": list(self.system_packages),
            "dockerfile": self.dockerfile,
        }
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "key", digest)

    @property
    def tag(self) -> str:
        return f"odooops/{self.project}:{self.key[:16]}"

    @property
    def addon_trees(self) -> tuple[tuple[str, str], ...]:
        trees = {a.name: a.tree for a in self.uninstallable}
        trees.update((a.name, a.tree) for a in self.addons)
        return tuple(sorted(trees.items()))


@dataclass(frozen=True)
class Submodule:
    path: str
    url: str
    commit: str


def submodules(app: TreeView) -> tuple[Submodule, ...]:
    """The git submodules of the app tree: ``.gitmodules`` names path and URL, the tree's
    gitlink at that path pins the commit. A declared path with no gitlink is ignored, as git
    ignores it; a gitlink with no ``.gitmodules`` entry cannot be fetched and is refused."""
    declared = _parse_gitmodules(app.read(".gitmodules") or b"")
    found: list[Submodule] = []
    for path, url in sorted(declared.items()):
        entry = _entry(app, path)
        if entry is not None and entry.kind is EntryKind.COMMIT:
            found.append(Submodule(path, url, entry.id))
    return tuple(found)


def _parse_gitmodules(raw: bytes) -> dict[str, str]:
    """path -> url of each ``[submodule "..."]`` section (git-config syntax, the subset git
    itself writes there)."""
    sections: list[dict[str, str]] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            sections.append({})
            continue
        if sections and "=" in line:
            key, _, value = line.partition("=")
            sections[-1][key.strip().lower()] = value.strip().strip('"')
    return {
        _norm(s["path"]): s["url"]
        for s in sections
        if s.get("path") and s.get("url") and ".." not in s["path"].split("/")
    }


@dataclass(frozen=True)
class RepoTree:
    """A repository tree as the planner reads it, with what the image records of it."""

    view: TreeView
    name: str
    url: str
    commit: str
    mount: str
    only: tuple[str, ...] | None = None  # a declared repository's ``addons``: just these


def plan_build(
    project: str,
    base: str,
    base_id: str,
    app: RepoTree,
    third_party: Sequence[RepoTree],
    *,
    addons_paths: tuple[str, ...] = (),
    system_packages: Sequence[str] = (),
    python_lock: str | None = None,
    series: str = "19.0",
    wheelhouse: bool = False,
) -> BuildPlan:
    """The plan of the image for these trees, or ``BuildInputError`` naming what to fix.

    ``addons_paths`` (the project's declared folders of the app repository) limit the app's
    scan to them; without, every repository is scanned (``SCAN_DEPTH``).
    """
    found: dict[str, list[tuple[RepoTree, _Found]]] = {}
    paths: list[str] = []
    picked: dict[str, tuple[tuple[str, str], ...]] = {}
    for repo in (app, *sorted(third_party, key=lambda r: r.mount)):
        roots = addons_paths if repo is app and addons_paths else None
        scanned = list(_scan(repo, roots))
        if repo.only is not None:
            scanned, picked[repo.mount] = _pick(repo, scanned)
        for folder, here in scanned:
            paths.append(posixpath.normpath(posixpath.join(repo.mount, folder)))
            for a in here:
                found.setdefault(a.name, []).append((repo, a))
    addons: list[Addon] = []
    uninstallable: list[Addon] = []
    for name, places in sorted(found.items()):
        installable = [(r, a) for r, a in places if a.installable]
        if not installable:
            repo, a = places[0]
            uninstallable.append(Addon(name, repo.name, a.path, a.tree, a.version))
            continue
        if len({(r.name, a.canonical) for r, a in installable}) > 1:
            where = " and ".join(f"{r.name}: {a.path}" for r, a in installable[:2])
            raise BuildInputError(
                f"module {name} is in two places ({where}); Odoo would load whichever comes "
                "first on the addons path",
                code="duplicate_addon",
                remediation="remove one copy (or set installable: False in its manifest), "
                "then push",
            )
        repo, a = installable[0]
        _check_version(repo, a, series)
        addons.append(Addon(name, repo.name, a.path, a.tree, a.version))
    lock = _python_lock(app, python_lock)
    packages = tuple(sorted(set(system_packages)))
    for package in packages:
        if not _DEB_PACKAGE.match(package):
            raise BuildInputError(
                f"{package!r} is not a Debian package name (build.system_packages)",
                code="invalid_system_package",
                remediation="give package names as apt-get takes them (libzbar0, or "
                "libzbar0=0.23.92-7), then push",
            )
    sources = (
        *(
            _source(r, own=False, only=picked.get(r.mount, ()))
            for r in sorted(third_party, key=lambda r: r.mount)
        ),
        _source(app, own=True),
    )
    app_base = ""
    if _entry(app.view, APP_DOCKERFILE) is not None:
        # The app's Dockerfile sees the whole repository (submodules filled in) as context.
        trees = "|".join(f"{s.mount}={s.tree}" for s in sources)
        digest = hashlib.sha256(f"{base_id}|{trees}".encode()).hexdigest()[:16]
        app_base = f"odooops/{project}-base:{digest}"
    return BuildPlan(
        project=project,
        base=base,
        base_id=base_id,
        sources=sources,
        addons=tuple(addons),
        addons_paths=tuple(dict.fromkeys(paths)),
        uninstallable=tuple(uninstallable),
        python=lock,
        system_packages=packages,
        app_base=app_base,
        wheelhouse=wheelhouse,
    )


def _source(repo: RepoTree, own: bool, only: tuple[tuple[str, str], ...] = ()) -> Source:
    return Source(repo.name, repo.url, repo.commit, repo.view.tree_id, repo.mount, own, only)


def _pick(
    repo: RepoTree, scanned: list[tuple[str, list[_Found]]]
) -> tuple[list[tuple[str, list[_Found]]], tuple[tuple[str, str], ...]]:
    """A declared repository's ``addons``: just those modules, each placed at the top of its
    folder in the image (one addons path entry), the rest of the repository left out."""
    wanted = set(repo.only or ())
    kept: dict[str, _Found] = {}
    for _folder, here in scanned:
        for a in here:
            if a.name in wanted and a.name not in kept:
                kept[a.name] = replace(a, path=a.name)
    missing = sorted(wanted - kept.keys())
    if missing:
        raise BuildInputError(
            f"repository {repo.name} at {repo.commit[:12]} has no module "
            f"{', '.join(missing)} (its addons list names it)",
            code="addon_not_found",
            remediation=f"fix repositories[].addons of {repo.name} in the project file, or its ref",
        )
    found = sorted(kept.values(), key=lambda a: a.name)
    return [("", found)], tuple((a.canonical, a.name) for a in found)


@dataclass(frozen=True)
class _Found:
    name: str
    path: str  # the folder as found (maybe a symlink)
    canonical: str  # the folder it really is
    tree: str
    installable: bool
    version: str
    linked: bool


def _scan(repo: RepoTree, roots: tuple[str, ...] | None) -> Iterator[tuple[str, list[_Found]]]:
    """Each folder of addons in ``repo`` with its addons (canonical folders deduplicated:
    a symlinked alias of an addon found for real is not a second addon)."""
    view = repo.view
    folders: list[tuple[str, list[_Found]]] = []
    if roots is not None:
        for root in roots:
            root = _norm(root)
            if view.entries(root) is None:
                raise BuildInputError(
                    f"addons path {root or '.'} is not a folder of {repo.name} at "
                    f"{repo.commit[:12]}",
                    code="addons_path_missing",
                    remediation="fix addons_paths in projects/<project>.yaml of the state "
                    "repository (or remove it: the scan then finds the addons), or push the "
                    "folder",
                )
            folders.append((root, _addons_in(repo, root)))
    else:
        pending = [("", 0)]
        while pending:
            folder, depth = pending.pop()
            here = _addons_in(repo, folder)
            if here:
                folders.append((folder, here))
            if depth >= SCAN_DEPTH:
                continue
            taken = {a.path for a in here}
            for name, entry in sorted((view.entries(folder) or {}).items(), reverse=True):
                child = posixpath.join(folder, name) if folder else name
                if entry.kind is EntryKind.TREE and not name.startswith(".") and child not in taken:
                    pending.append((child, depth + 1))
        folders.sort()
    real = {a.canonical for _, here in folders for a in here if not a.linked}
    for folder, here in folders:
        kept = [a for a in here if not (a.linked and a.canonical in real)]
        if kept:
            yield folder, kept


def _addons_in(repo: RepoTree, folder: str) -> list[_Found]:
    view = repo.view
    found = []
    for name, entry in sorted((view.entries(folder) or {}).items()):
        if name.startswith("."):
            continue
        path = posixpath.join(folder, name) if folder else name
        canonical, linked = path, False
        if entry.kind is EntryKind.LINK:
            target = _link_target(view, path)
            if target is None:
                continue
            canonical, linked = target, True
            entry = _entry(view, target) or entry
        if entry.kind is not EntryKind.TREE:
            continue
        raw = view.read(posixpath.join(canonical, MANIFEST))
        if raw is None:
            continue
        manifest = _manifest(repo, posixpath.join(path, MANIFEST), raw)
        found.append(
            _Found(
                name=name,
                path=path,
                canonical=canonical,
                tree=entry.id,
                installable=bool(manifest.get("installable", True)),
                version=str(manifest.get("version", "1.0")),
                linked=linked,
            )
        )
    return found


def _link_target(view: TreeView, path: str) -> str | None:
    """Where a symlink inside the repository points, resolved; None when it leaves it."""
    raw = view.read(path)
    if raw is None or raw.startswith(b"/"):
        return None
    parts: list[str] = []
    for part in posixpath.join(posixpath.dirname(path), raw.decode("utf-8", "replace")).split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _manifest(repo: RepoTree, path: str, raw: bytes) -> Mapping[str, object]:
    """The manifest as data: parsed as a Python literal, never executed (it is input)."""
    try:
        value = ast.literal_eval(raw.decode("utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        raise BuildInputError(
            f"{repo.name} at {repo.commit[:12]}: {path} is not a Python dict literal ({exc}); "
            "Odoo would skip the module without a word",
            code="invalid_manifest",
            remediation=f"fix {path} (python3 -c 'import ast,sys; "
            f"ast.literal_eval(open(sys.argv[1]).read())' {path}), then push",
        ) from None
    if not isinstance(value, dict):
        raise BuildInputError(
            f"{repo.name} at {repo.commit[:12]}: {path} is not a dict",
            code="invalid_manifest",
            remediation=f"make {path} a dict literal, then push",
        )
    return value


def _check_version(repo: RepoTree, a: _Found, series: str) -> None:
    """Odoo 19's rule: 2 to 5 integers; with up to 3 not starting with the series, the series
    is put in front (``1.0`` is ``19.0.1.0``); what does not then start with ``19.0.`` makes
    Odoo mark the module not installable and exit 0 (``18.0.1.0.0``, ``1.0.0.0``)."""
    version = a.version
    parts = version.split(".")
    valid = 2 <= len(parts) <= 5 and all(p.isdigit() for p in parts)
    if valid and len(parts) <= 3 and not version.startswith(series):
        version = f"{series}.{version}"
    if not (valid and version.startswith(series + ".")):
        raise BuildInputError(
            f"module {a.name} ({repo.name}: {a.path}) has version {a.version!r}, not of Odoo "
            f"{series}; Odoo would refuse to install it",
            code="addon_wrong_series",
            remediation=f"use the module's {series} branch (version {series}.x.y.z), or set "
            f"installable: False in {a.path}/{MANIFEST}, then push",
        )


def _python_lock(app: RepoTree, declared: str | None) -> PythonLock | None:
    """The app's Python lock: ``build.python_lock`` of ``.odooops.yaml``, else
    ``requirements.lock``, else a ``requirements.txt`` that pins everything with hashes.
    An unpinned ``requirements.txt`` is refused: what it installs would change under the
    same key."""
    names = (declared,) if declared else LOCK_NAMES
    for name in names:
        raw = app.view.read(_norm(name))
        if raw is None:
            if declared:
                raise BuildInputError(
                    f"build.python_lock names {declared}, which is not in the app repository "
                    f"at {app.commit[:12]}",
                    code="python_lock_missing",
                    remediation=f"push {declared}, or fix build.python_lock in .odooops.yaml",
                )
            continue
        hashes = _lock_hashes(name, raw, strict=bool(declared) or name != "requirements.txt")
        if not hashes:
            return None  # an empty requirements.txt
        return PythonLock(name, raw, hashes)
    return None


def _lock_hashes(name: str, raw: bytes, strict: bool) -> frozenset[str]:
    hashes: set[str] = set()
    for number, line in _logical_lines(raw.decode("utf-8", "replace")):
        tokens = line.split()
        where = f"{name}:{number}"
        if tokens[0].startswith("-"):
            raise BuildInputError(
                f"{where}: option {tokens[0]} in a lock; the index and other files are the "
                "platform's to choose",
                code="invalid_python_lock",
                remediation=f"remove the line from {name} (pip-compile --generate-hashes "
                "writes none), then push",
            )
        line_hashes = [m.group(1) for t in tokens if (m := _HASH.match(t))]
        if not _PIN.match(line) or not line_hashes:
            what = (
                f"{where}: {tokens[0]} is not pinned (==) with a --hash; builds install only "
                "what a lock pins"
            )
            command = (
                "pip-compile --generate-hashes -o requirements.lock requirements.txt "
                "(or uv pip compile --generate-hashes), then push"
            )
            if strict:
                raise BuildInputError(
                    what, code="invalid_python_lock", remediation=f"regenerate {name}: {command}"
                )
            raise BuildInputError(
                what, code="requirements_unlocked", remediation=f"write a lock: {command}"
            )
        hashes.update(line_hashes)
    return frozenset(hashes)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Requirement lines with ``\\`` continuations joined and comments removed."""
    buffer, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            yield start, buffer.strip()
        buffer = ""
    if buffer.strip():
        yield start, buffer.strip()


# --------------------------------------------------------------------------- the recipe
def recipe(plan: BuildPlan) -> str:
    """The generated Dockerfile: layers from the least to the most often changed (system
    packages, Python dependencies, third-party addons, own addons), so a change to own code
    rebuilds one small layer. Python distributions are installed from the lock with hashes
    into their own folder, byte-compiled with hashes instead of times and with every time
    reset, so the same lock gives the same layer."""
    lines = [f"FROM {plan.app_base or plan.base} AS system", "USER root"]
    if plan.system_packages:
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            + " ".join(plan.system_packages)
            + " && rm -rf /var/lib/apt/lists/*"
        )
    if plan.python is not None:
        index = f"--no-index --find-links {BUILD_ROOT}/wheels " if plan.wheelhouse else ""
        staged = f"{BUILD_ROOT}/layer"
        lines += [
            "FROM system AS python",
            f"COPY python/requirements.lock {BUILD_ROOT}/requirements.lock",
        ]
        if plan.wheelhouse:
            lines.append(f"COPY python/wheels/ {BUILD_ROOT}/wheels/")
        # Installed at its real path (compiled files record it), then moved under a folder
        # whose every time is reset, and copied to / from there: folders the builder made
        # would carry the build's time.
        lines += [
            "RUN pip install --no-cache-dir --disable-pip-version-check --no-color "
            "--root-user-action=ignore --no-deps --require-hashes --no-compile "
            f"--target {PYTHON_ROOT} {index}-r {BUILD_ROOT}/requirements.lock"
            f" && python3 -m compileall -q --invalidation-mode checked-hash {PYTHON_ROOT}"
            f" && mkdir -p {staged}{posixpath.dirname(PYTHON_ROOT)}"
            f" && mv {PYTHON_ROOT} {staged}{PYTHON_ROOT}"
            f" && find {staged} -exec touch -h -d @0 {{}} +",
            "FROM system",
            f"COPY --from=python {staged}/ /",
            f"ENV PYTHONPATH={PYTHON_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}",
        ]
    for source in plan.sources:
        lines.append(f"COPY {source.context}/ /")
    lines.append("USER odoo")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- helpers
def _entry(view: TreeView, path: str) -> Entry | None:
    parent, name = posixpath.split(_norm(path))
    if not name:
        return Entry(EntryKind.TREE, view.tree_id)
    return (view.entries(parent) or {}).get(name)


def _norm(path: str) -> str:
    return "/".join(p for p in path.split("/") if p not in ("", "."))


def _digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()
