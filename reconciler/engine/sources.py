"""Where the desired world comes from: the state repository and the app repositories.

Fetching is the only network work of a refresh; everything after it reads local mirrors. An
invalid head of the state repository never replaces the last valid commit (it is recorded as
the daemon's state error instead), and an app repository that cannot be read holds its
environments rather than pruning them.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import posixpath
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from reconciler.core import validation
from reconciler.core.buildplan import APP_ROOT, REPOS_ROOT, BuildPlan, RepoTree, Submodule
from reconciler.core.config import load_state
from reconciler.core.desired import BranchHead, Inputs, resolve
from reconciler.core.errors import DriverError, InvalidState, OdooOpsError, SourceError, sanitize
from reconciler.core.model import DeclaredRepo, Desired, EnvKey, Project, StateConfig
from reconciler.core.previews import pull_refspec
from reconciler.core.secretrefs import host_of
from reconciler.drivers.secrets import SecretStore
from reconciler.engine.status import StatusStore
from reconciler.gitops.gitsource import Author, Credentials, GitSource

log = logging.getLogger("odooops.sources")


class Sources:
    """The state repository mirror, the app repository mirrors, and the last valid state."""

    def __init__(
        self,
        state_url: str,
        state_branch: str,
        data_dir: Path,
        status: StatusStore,
        image_id: Callable[[str], str],
        secrets: SecretStore,
        wheelhouse: Path | None = None,
    ) -> None:
        self.state_url, self.state_branch, self.data_dir = state_url, state_branch, data_dir
        self.status = status
        self.secrets = secrets
        self.wheelhouse = wheelhouse
        self._image_id = image_id
        self.state_repo = GitSource(
            state_url, data_dir / "git", hint="--state-repo of odooops daemon"
        )
        self.apps: dict[str, GitSource] = {}
        self.third_party: dict[str, GitSource] = {}  # by URL: submodules of any project
        self._unavailable: dict[tuple[str, str], tuple[float, OdooOpsError]] = {}
        self._plans: dict[tuple[Any, ...], BuildPlan] = {}
        self._head_cache: dict[str, BranchHead] = {}
        self.last_good: StateConfig | None = None

    # -------------------------------------------------------------------------- state
    def load_state(self, fetch: bool = True) -> StateConfig:
        """The head of the state branch if it validates; otherwise the last valid commit.

        Raises only when no valid commit has ever been seen (then nothing can be applied).
        """
        if fetch:
            self.state_repo.fetch()
        head = self.state_repo.branches().get(self.state_branch)
        if head is None:
            raise SourceError(
                f"branch {self.state_branch} not found in the state repository",
                code="state_branch_missing",
                retryable=True,
                remediation=f"git push <state-repo> {self.state_branch}",
            )
        if self.last_good is not None and self.last_good.commit == head:
            return self.last_good
        try:
            config = load_state(
                self.state_repo.read_tree(head), head, self.state_url, self.secrets.policy
            )
        except InvalidState as exc:
            self._record_state_error(head, exc)
            fallback = self.last_good or self._previous_good()
            if fallback is None:
                raise
            self.last_good = fallback
            return fallback
        self.last_good = config
        self.status.set_daemon(replace(self.status.daemon, state_commit=head, state_error=None))
        return config

    def _record_state_error(self, head: str, exc: InvalidState) -> None:
        doc = exc.to_dict()
        doc["commit"] = head
        log.error("state commit %s rejected: %s", head[:12], exc.render())
        self.status.set_daemon(replace(self.status.daemon, state_error=doc))

    def _previous_good(self) -> StateConfig | None:
        commit = self.status.daemon.state_commit
        if not commit:
            return None
        try:
            return load_state(
                self.state_repo.read_tree(commit), commit, self.state_url, self.secrets.policy
            )
        except OdooOpsError:
            return None

    # ---------------------------------------------------------------------------- apps
    def app_repo(self, project: Project) -> GitSource:
        """The project's mirror, with credentials checked against the store on every call.

        A credential is a named secret sent only to the hosts declared for it: checked here
        before any request (a secret re-declared for other hosts since the state validated
        holds the project), and bound to the URL's host inside ``GitSource`` so a redirect to
        another host never receives it.
        """
        url = project.repo_url
        token = self.secrets.credential(project.token, url) if project.token else None
        key = self.secrets.credential(project.ssh_key, url) if project.ssh_key else None
        creds = Credentials(
            token=token,
            ssh_key_path=self._ssh_key_path(project.name, key) if key is not None else None,
            host=host_of(url),
        )
        policy = self.last_good.policies.previews if self.last_good else None
        extra: tuple[str, ...] = ()
        if project.forge is not None and policy is not None and policy.forks:
            extra = (pull_refspec(project.forge.kind),)  # previews of forks track pull/12
        repo = self.apps.get(project.name)
        if (
            repo is None
            or repo.url != sanitize(url)
            or repo.credentials != creds
            or repo.extra_refspecs != extra
        ):
            repo = GitSource(
                url,
                self.data_dir / "git",
                creds,
                hint=f"repository.url in projects/{project.name}.yaml",
                extra_refspecs=extra,
            )
            self.apps[project.name] = repo
        return repo

    def _ssh_key_path(self, project: str, key: str) -> str:
        """libgit2 reads keys from files: the named secret is written to a private file in the
        data directory (0600), never next to the git mirrors' config, and only when changed."""
        path = self.data_dir / "keys" / project
        text = key.strip() + "\n"
        if path.exists() and path.read_text() == text:
            return str(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return str(path)

    # ----------------------------------------------------------------- third-party trees
    def pinned(self, project: Project, sub: Submodule) -> RepoTree:
        """A submodule of ``project`` at its pinned commit, fetched when the mirror lacks it.

        Its URL is input from the app repository, so it is held to the project's own: a
        submodule on this host's disk is fetched only for a project whose repository is itself
        on this host, and the project's credential goes only to the project's own host. A
        submodule that cannot be read is remembered for a minute, so a pass over many
        environments of one tree tries it once.
        """
        url = submodule_url(project.repo_url, sub.url)
        return self._tree_at(
            project,
            url,
            sub.commit,
            sub.path,
            posixpath.join(APP_ROOT, sub.path),
            None,
            f"submodule {sub.path}",
            f"update the submodule: git submodule update --remote {sub.path}",
        )

    def declared(self, project: Project, repo: DeclaredRepo) -> RepoTree:
        """A repository declared in the project file, at the platform's pin of it."""
        assert repo.commit is not None  # resolution asks only for pinned ones
        url = submodule_url(project.repo_url, repo.url)
        return self._tree_at(
            project,
            url,
            repo.commit,
            repo.name,
            f"{REPOS_ROOT}/{repo.name}",
            repo.addons,
            f"repository {repo.name}",
            f"remove its entry from projects/{project.name}.lock.yaml (the daemon pins it "
            "again at its ref)",
        )

    def _tree_at(
        self,
        project: Project,
        url: str,
        commit: str,
        name: str,
        mount: str,
        only: tuple[str, ...] | None,
        what: str,
        fix: str,
    ) -> RepoTree:
        failed = self._unavailable.get((url, commit))
        if failed is not None and time.monotonic() - failed[0] < 60:
            raise failed[1]
        try:
            repo = self._third_party_repo(project, url)
            if not repo.has_commit(commit):
                repo.fetch()
            if not repo.has_commit(commit):
                raise SourceError(
                    f"{what} of {project.name} is pinned to commit {commit[:12]}, which no "
                    f"branch of {repo.display_url} holds",
                    code="submodule_unavailable",
                    retryable=True,
                    remediation=f"push that commit to a branch of {repo.display_url}, or {fix}",
                )
            return RepoTree(repo.view(commit), name, repo.display_url, commit, mount, only)
        except OdooOpsError as exc:
            if exc.code != "submodule_unavailable":
                exc = SourceError(
                    f"{what} of {project.name} ({sanitize(url)}) cannot be fetched: {exc.message}",
                    code="submodule_unavailable",
                    retryable=True,
                    remediation=exc.remediation or f"check the URL: git ls-remote {sanitize(url)}",
                )
            self._unavailable[(url, commit)] = (time.monotonic(), exc)
            raise exc from None

    def head_of(self, project: Project, repo: DeclaredRepo) -> str:
        """The commit ``repo.ref`` names now: a branch's head, or the commit itself."""
        source = self._third_party_repo(project, submodule_url(project.repo_url, repo.url))
        source.fetch()
        if re.fullmatch(r"[0-9a-f]{40}", repo.ref):
            if source.has_commit(repo.ref):
                return repo.ref
        else:
            head = source.branches().get(repo.ref)
            if head is not None:
                return head
        raise SourceError(
            f"{repo.ref} is neither a branch of {source.display_url} nor a commit on one",
            code="ref_not_found",
            retryable=True,
            remediation=f"git ls-remote {source.display_url}; then fix repositories[].ref of "
            f"{repo.name} in projects/{project.name}.yaml",
        )

    def commit_pins(self, project: Project, pins: Mapping[str, str], branch: str) -> str:
        """Write the new pins into ``projects/<project>.lock.yaml`` (kept entries stay, those
        of repositories no longer declared go) in one commit of the state repository."""
        path = f"projects/{project.name}.lock.yaml"
        declared = {r.name: r for r in project.repositories}

        def build(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            try:
                old = yaml.safe_load(files.get(path, b"") or b"{}")
            except yaml.YAMLError:
                old = None  # a lock broken by hand: written anew
            kept = old.get("repositories") if isinstance(old, dict) else None
            entries = {
                name: entry
                for name, entry in (kept if isinstance(kept, dict) else {}).items()
                if name in declared and name not in pins
            }
            for name, commit in pins.items():
                entries[name] = {
                    "url": declared[name].url,
                    "ref": declared[name].ref,
                    "commit": commit,
                }
            doc = {"version": 1, "repositories": dict(sorted(entries.items()))}
            text = LOCK_HEADER.format(project=project.name) + yaml.safe_dump(doc, sort_keys=False)
            names = ", ".join(f"{n} at {c[:12]}" for n, c in sorted(pins.items()))
            return {path: text.encode()}, f"Pin {names} for {project.name}"

        return self.state_repo.commit_with(branch, build, PIN_AUTHOR)

    def _third_party_repo(self, project: Project, url: str) -> GitSource:
        same_host = host_of(url) == host_of(project.repo_url)
        creds = Credentials()
        if same_host and (project.token or project.ssh_key):
            creds = self.app_repo(project).credentials
        repo = self.third_party.get(url)
        if repo is None or repo.credentials != creds:
            repo = GitSource(
                url, self.data_dir / "git", creds, hint=f"a repository of {project.name}"
            )
            self.third_party[url] = repo
        return repo

    def repo_for(self, url: str) -> GitSource:
        """The mirror a plan's source was read from (its display URL), for its archive."""
        for repo in (*self.apps.values(), *self.third_party.values()):
            if repo.display_url == url:
                return repo
        raise SourceError(
            f"no mirror of {url} is open",
            code="not_fetched",
            retryable=True,
            remediation="odooops reconcile (the next pass fetches it)",
        )

    # ------------------------------------------------------------------------- desired
    def resolve(self, config: StateConfig, fetch: bool = True, allocate: bool = True) -> Desired:
        """The desired world at ``config``. ``allocate=False`` hands out no new HTTP port (a
        plan must change nothing): a new environment then shows the next free one."""
        apps: dict[str, GitSource | OdooOpsError] = {}
        heads: dict[str, dict[str, BranchHead]] = {}
        for project in config.projects.values():
            try:
                repo = self.app_repo(project)
                if fetch:
                    repo.fetch()
                apps[project.name] = repo
                heads[project.name] = self._heads(repo)
            except OdooOpsError as exc:
                apps[project.name] = exc
        base_images: dict[str, str] = {}
        for image in {p.image for p in config.projects.values()}:
            try:
                base_images[image] = self._image_id(image)
            except DriverError as exc:
                log.error("%s", exc.render())
        ports = self.status.ports()
        free = port_probe(config.platform.publish_host)

        def port_for(key: EnvKey) -> int:
            if not allocate:
                taken = set(ports.values())
                return ports.get(str(key)) or next(
                    (
                        p
                        for p in range(config.platform.port_start, config.platform.port_end + 1)
                        if p not in taken and free(p)
                    ),
                    0,
                )
            return self.status.port_for(
                str(key), config.platform.port_start, config.platform.port_end, free
            )

        return resolve(
            config,
            Inputs(
                apps=apps,
                heads=heads,
                base_images=base_images,
                port_for=port_for,
                load_app_config=load_app_config,
                now=datetime.now(UTC),
                pinned=self.pinned,
                declared=self.declared,
                wheelhouse=self.wheelhouse is not None,
                plans=self._plans,
            ),
        )

    def _heads(self, repo: GitSource) -> dict[str, BranchHead]:
        """Author and time of each branch head; commits are immutable, so cached by id."""
        out: dict[str, BranchHead] = {}
        for branch, sha in repo.branches().items():
            head = self._head_cache.get(sha)
            if head is None:
                info = repo.commit_info(sha)
                head = self._head_cache[sha] = BranchHead(info.author_email, info.committed_at)
            out[branch] = head
        return out


PIN_AUTHOR = Author("OdooOps", "odooops@localhost")
LOCK_HEADER = (
    "# Written by OdooOps: the commit each repository of projects/{project}.yaml is pinned to.\n"
    "# Delete an entry (or this file) to pin it again at the head of its ref.\n"
)
_REMOTE = re.compile(r"^(https://|ssh://|file:///|/|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)")


def submodule_url(project_url: str, url: str) -> str:
    """A submodule's URL as git resolves it (``./x`` and ``../x`` against the project's URL
    taken as a folder), refused unless it is a kind of remote the platform fetches: https,
    ssh, and a path on this host only when the project's repository is on this host too."""
    if url.startswith(("./", "../")):
        head, sep, path = "", "", project_url
        if "://" in project_url:
            scheme, _, rest = project_url.partition("://")
            host, _, path = rest.partition("/")
            head, sep, path = f"{scheme}://{host}", "/", path
        elif re.match(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:", project_url):
            head, _, path = project_url.partition(":")
            sep = ":"
        joined = posixpath.normpath(posixpath.join(path.rstrip("/"), url))
        if project_url.startswith("/") and not joined.startswith("/"):
            joined = "/" + joined
        url = f"{head}{sep}{joined.lstrip('/') if sep else joined}"
    local = url.startswith(("file://", "/"))
    project_local = project_url.startswith(("file://", "/"))
    if not _REMOTE.match(url) or (local and not project_local) or "\n" in url:
        raise SourceError(
            f"submodule URL {sanitize(url)} is not one the platform fetches (https, ssh, or "
            "a path on this host for a project whose own repository is on this host)",
            code="submodule_unavailable",
            retryable=False,
            remediation="point the submodule at an https or ssh URL in .gitmodules, then "
            "git submodule sync && git commit -am 'submodule URL' && git push",
        )
    return url


def port_probe(host: str) -> Callable[[int], bool]:
    """Whether nothing listens on a port of ``host``, asked once per port and pass (a port is
    only probed when an environment needs a new one)."""

    @functools.cache
    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
        return True

    return free


@dataclass(frozen=True)
class _Blob:
    """An app repository file as a cache key: equal by content identity alone.

    ``content`` and ``label`` ride along for the call that misses the cache (which parses the
    content and names the file in errors) but take no part in equality or hashing, so a blob
    read at any number of commits is one entry.
    """

    id: bytes
    content: bytes = field(compare=False)
    label: str = field(compare=False)


def _validate_blob(blob: _Blob) -> Mapping[str, Any]:
    doc = validation.validate_app_config(blob.content, blob.label)
    data = doc.data or {}
    return MappingProxyType(data) if isinstance(data, dict) else MappingProxyType({})


class AppConfigCache:
    """Validated ``.odooops.yaml`` files, cached by their content (an ``AppConfigLoader``).

    A file's content, like its git blob id, is the same at every commit that did not change it,
    so 1,000 environments on 1,000 commits sharing one ``.odooops.yaml`` parse it once, where a
    cache keyed by the error label (``project@revision:.odooops.yaml``) parsed it once per
    revision: on every pass after new commits, and on every pass once more revisions than the
    cache holds cycle through it. The key is a SHA-256 of the content (equivalent to the blob
    id, without needing git and without SHA-1's collisions, as one mapping is shared across
    projects). Only a valid file is cached: the label matters only to errors, so an invalid one
    is validated again on each read (as before) and its problems name the commit read at.
    The mapping is shared by every environment reading the blob, hence read-only.
    """

    def __init__(self, maxsize: int = 4096) -> None:
        self._validated = functools.lru_cache(maxsize=maxsize)(_validate_blob)

    def __call__(self, content: bytes, label: str) -> Mapping[str, Any]:
        return self._validated(_Blob(hashlib.sha256(content).digest(), content, label))


load_app_config = AppConfigCache()
