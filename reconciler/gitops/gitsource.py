"""A git repository the daemon watches: a local bare mirror it fetches, reads and writes through.

Why a bare mirror: the daemon never needs a working tree. Every read (one file, a subtree, a tar
for a docker build) is answered from the object database at an exact commit, so threads can read
different commits at once with no checkout to race over, and nothing on disk can drift from what
git says. The mirror maps the remote's ``refs/heads/*`` onto its own ``refs/heads/*`` and prunes,
so ``branches()`` is the remote as of the last fetch, deleted branches included.

Why writes are file-level changes and never a checkout: the state repository is edited by people
and by the daemon at the same time. ``commit_files`` applies its changes to whatever the branch
head is when it pushes; if someone pushed first it fetches and applies the same changes again on
their commit, so neither write is lost and no merge is ever needed.

Only pygit2 is used, so the daemon's image needs no ``git`` binary. Errors are ``SourceError``
with the URL sanitised: a token embedded in a URL never reaches a message, a log or ``repr``.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import os
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, cast
from urllib.parse import unquote, urlsplit

import pygit2
from pygit2.enums import CredentialType, FetchPrune, FileMode, RepositoryOpenFlag

from reconciler.core.buildplan import Entry, EntryKind
from reconciler.core.errors import SourceError, sanitize
from reconciler.core.secretrefs import host_of

_MIRROR_REFSPEC = "+refs/heads/*:refs/heads/*"
_OUTGOING = "refs/odooops/outgoing/"
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_GIT_ERRORS = (pygit2.GitError, KeyError, ValueError, OSError)
_Edits = dict[tuple[str, ...], bytes | None]


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to a remote; secrets stay out of ``repr`` so logging one is safe.

    ``token`` is sent over https as basic auth with ``username`` (``x-access-token`` for GitHub,
    ``oauth2`` for GitLab, the account name for Gitea). ``ssh_key_path`` is a private key file;
    its public half is read from ``<path>.pub`` when present. Without a key, ssh asks the agent.
    ``host``, when set, is the only host the token or key is offered to: a remote that
    redirects elsewhere is refused instead of being handed the credential.
    """

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    ssh_key_path: str | None = None
    ssh_key_passphrase: str | None = field(default=None, repr=False)
    host: str | None = None


@dataclass(frozen=True)
class Author:
    """Who a commit written by ``commit_files`` is attributed to."""

    name: str
    email: str


@dataclass(frozen=True)
class ChainLink:
    """One commit of a chain (``GitSource.commit_chain``): its own changes, message and author,
    so a batch of writes pushed at once keeps one commit, and one author, per write."""

    changes: Mapping[str, bytes | None]
    message: str
    author: Author


@dataclass(frozen=True)
class CommitInfo:
    """What a status page or an audit line says about a commit."""

    sha: str
    author_name: str
    author_email: str
    committed_at: datetime
    summary: str
    trailers: Mapping[str, str] = field(default_factory=dict)  # "Request-Id: ..." lines

    def audit(self) -> dict[str, str]:
        """One line of the audit trail: who changed what, through which channel."""
        return {
            "commit": self.sha,
            "date": self.committed_at.isoformat(timespec="seconds"),
            "author": f"{self.author_name} <{self.author_email}>",
            "change": self.summary,
            "request_id": self.trailers.get("Request-Id", ""),
            "via": self.trailers.get("OdooOps-Via", "git"),
        }


def _info(c: pygit2.Commit) -> CommitInfo:
    message = c.message.strip()
    trailers: dict[str, str] = {}
    for line in message.splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            trailers[key.strip()] = value.strip()
    return CommitInfo(
        sha=str(c.id),
        author_name=c.author.name,
        author_email=c.author.email,
        committed_at=datetime.fromtimestamp(c.commit_time, tz=UTC),
        summary=message.split("\n", 1)[0],
        trailers=trailers,
    )


class _Callbacks(pygit2.RemoteCallbacks):
    """Answers libgit2's questions during one network operation.

    libgit2 asks for credentials again after each refusal, for as long as it is given some; the
    same kind of answer asked for twice means the first one was refused, so it becomes an
    ``authentication_failed`` error instead of a loop. Refused ref updates are collected in
    ``rejections``: a push that the server declines still returns normally from libgit2.
    """

    def __init__(self, credentials: Credentials, refused: Callable[[str], SourceError]) -> None:
        super().__init__()
        self._credentials = credentials
        self._refused = refused
        self._offered: set[str] = set()
        self.rejections: dict[str, str] = {}

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        creds = self._credentials
        asking = host_of(url)
        if creds.host is not None and (creds.token or creds.ssh_key_path) and asking != creds.host:
            raise self._refused(
                f"{asking or 'a remote without a host'} asks for the credential of "
                f"{creds.host}; it is only ever sent to {creds.host}"
            )
        ssh_user = username_from_url or creds.username or "git"
        answer: pygit2.Username | pygit2.UserPass | pygit2.Keypair
        if allowed_types & CredentialType.SSH_KEY and creds.ssh_key_path:
            public = creds.ssh_key_path + ".pub"
            kind, answer = (
                "ssh key",
                pygit2.Keypair(
                    ssh_user,
                    public if os.path.exists(public) else None,
                    creds.ssh_key_path,
                    creds.ssh_key_passphrase or "",
                ),
            )
        elif allowed_types & CredentialType.SSH_KEY:
            kind, answer = "ssh agent", pygit2.KeypairFromAgent(ssh_user)
        elif allowed_types & CredentialType.USERPASS_PLAINTEXT and creds.token:
            kind, answer = "token", pygit2.UserPass(creds.username or "x-access-token", creds.token)
        elif allowed_types & CredentialType.USERNAME:
            kind, answer = "username", pygit2.Username(ssh_user)
        else:
            raise self._refused("the remote asks for credentials and none are configured")
        if kind in self._offered:
            raise self._refused(f"the remote refused the {kind}")
        self._offered.add(kind)
        return answer

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejections[refname] = message


class GitSource:
    """One remote repository, mirrored bare under ``cache_dir``.

    Fetches and commits are serialised per mirror (``_MirrorLock``: re-entrant, so a subclass
    or a caller may fetch from inside a write, and held across processes sharing the cache
    directory); reads open their own handle on the mirror and run concurrently. ``hint`` names
    where the URL is configured (e.g. ``projects/shop.yaml``) so remediations point there.
    ``committer`` defaults to each commit's author.
    """

    def __init__(
        self,
        url: str,
        cache_dir: Path,
        credentials: Credentials | None = None,
        *,
        hint: str = "",
        committer: Author | None = None,
        extra_refspecs: tuple[str, ...] = (),
    ) -> None:
        self._url = url
        # Beside the branches, more refs mirrored as branches (a forge's pull-request heads).
        self.extra_refspecs = extra_refspecs
        self._credentials = credentials or Credentials()
        self._hint = hint
        self._committer = committer
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        self._mirror = Path(cache_dir) / f"{key}.git"
        self._local = _local_path(url)
        self._lock = _MirrorLock(self._mirror)
        self._addon_cache: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}

    @property
    def display_url(self) -> str:
        """The URL with any credentials replaced by ``***``; the raw URL is never exposed."""
        return sanitize(self._url)

    @property
    def url(self) -> str:
        """Same as ``display_url``: safe to log, print or put in a status document."""
        return self.display_url

    @property
    def credentials(self) -> Credentials:
        """What this source authenticates with (secrets stay out of its ``repr``)."""
        return self._credentials

    @property
    def mirror_path(self) -> Path:
        """The bare mirror on disk (named by a hash of the URL, so secrets are not in the name)."""
        return self._mirror

    def __repr__(self) -> str:
        return f"GitSource({self.display_url!r})"

    # -- network ---------------------------------------------------------------------------

    def fetch(self) -> None:
        """Bring the mirror up to date with the remote's branches, cloning it on first use."""
        with self._lock:
            self._check_local_remote()
            try:
                if self._mirror.exists():
                    self._fetch_into(self._open())
                else:
                    self._clone()
            except SourceError:
                raise
            except _GIT_ERRORS as exc:
                raise self._error(
                    f"cannot fetch {self.display_url}: {_describe(exc)}",
                    code="fetch_failed",
                    retryable=True,
                    remediation=f"check the remote answers: git ls-remote {self.display_url}"
                    f"{self._hint_suffix()}",
                ) from None

    def refresh(self, branch: str) -> bool:
        """Fetch only when the remote's ``branch`` is not where the mirror has it; whether it
        fetched. Asking where one branch points is one small round trip (a file read for a
        local remote), where a fetch negotiates every branch: a writer asks before each batch
        and fetches only when another writer moved the branch."""
        with self._lock:
            if not self._mirror.exists():
                self.fetch()
                return True
            try:
                current = self._remote_head(f"refs/heads/{branch}")
            except _GIT_ERRORS:
                current = None  # the fetch below says what is wrong, with its remediation
            if current is not None and current == self.branches().get(branch):
                return False
            self.fetch()
            return True

    def _remote_head(self, refname: str) -> str | None:
        """Where the remote's ``refname`` points now (None: no such branch)."""
        self._check_local_remote()
        if self._local is not None:
            ref = _open_exactly(self._local).references.get(refname)
            return str(ref.peel(pygit2.Commit).id) if ref is not None else None
        remote = self._open().remotes.create_anonymous(self._url)
        heads = remote.list_heads(callbacks=self._callbacks())
        return next((str(head.oid) for head in heads if head.name == refname), None)

    def _clone(self) -> None:
        """Fill a fresh bare repository beside the mirror, then rename it into place.

        A first fetch that fails half-way leaves nothing behind, so the next attempt starts clean
        instead of trusting a mirror with missing branches.
        """
        self._mirror.parent.mkdir(parents=True, exist_ok=True)
        partial = self._mirror.with_name(f".{self._mirror.name}.{uuid.uuid4().hex}.partial")
        try:
            self._fetch_into(pygit2.init_repository(str(partial), bare=True))
            try:
                partial.rename(self._mirror)
            except OSError:
                if not self._mirror.exists():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _fetch_into(self, repo: pygit2.Repository) -> None:
        # An anonymous remote keeps the URL (and any credentials in it) out of the mirror's config.
        remote = repo.remotes.create_anonymous(self._url)
        refspecs = [_MIRROR_REFSPEC, *self.extra_refspecs]
        remote.fetch(refspecs, callbacks=self._callbacks(), prune=FetchPrune.PRUNE)

    def _check_local_remote(self) -> None:
        if self._local is None:
            return
        try:
            _open_exactly(self._local)
        except _GIT_ERRORS:
            where = f"`url` in {self._hint}" if self._hint else "the repository url"
            origin = "" if str(self._local) == self._url else f" (from {self.display_url})"
            raise self._error(
                f"no git repository at {self._local}{origin}",
                code="repository_not_found",
                retryable=False,
                remediation=f"check {where}; `git ls-remote {self._local}` must list its branches",
            ) from None

    def _callbacks(self) -> _Callbacks:
        def refused(reason: str) -> SourceError:
            return self._error(
                f"authentication to {self.display_url} failed: {reason}",
                code="authentication_failed",
                retryable=False,
                remediation="check the token or ssh key configured for this repository, then "
                f"run `git ls-remote {self.display_url}` with the same credentials"
                f"{self._hint_suffix()}",
            )

        return _Callbacks(self._credentials, refused)

    # -- reads (mirror only, no network) ----------------------------------------------------

    def branches(self) -> dict[str, str]:
        """Branch name -> head commit hex, as of the last successful fetch."""
        repo = self._open()
        heads: dict[str, str] = {}
        for name in repo.references:
            if name.startswith("refs/heads/"):
                ref = repo.references[name]
                heads[name.removeprefix("refs/heads/")] = str(ref.peel(pygit2.Commit).id)
        return heads

    def resolve(self, rev: str) -> str:
        """A branch name, or a full or abbreviated (7+ digits) commit hex -> full commit hex."""
        return str(self._commit(self._open(), rev).id)

    def read_file(self, commit: str, path: str) -> bytes | None:
        """A file's content at ``commit``; None when absent or not a file (directory, submodule)."""
        obj = self._lookup(self._open(), commit, path)
        return obj.data if isinstance(obj, pygit2.Blob) else None

    def read_tree(self, commit: str, prefix: str = "") -> dict[str, bytes]:
        """Every file under ``prefix`` at ``commit``, keyed by posix path from the repo root.

        Submodules are skipped: their content is in another repository. Symlinks map to their
        target path. An absent prefix gives an empty dict.
        """
        repo = self._open()
        obj = self._lookup(repo, commit, prefix)
        base = "/".join(_parts(prefix))
        if isinstance(obj, pygit2.Blob):
            return {base: obj.data}
        if not isinstance(obj, pygit2.Tree):
            return {}
        return {
            path: entry.data for path, entry in _walk(obj, base) if isinstance(entry, pygit2.Blob)
        }

    def tree_id(self, commit: str, path: str = "") -> str:
        """The tree object id of a directory: equal ids mean byte-identical content."""
        return str(self._tree(self._open(), commit, path).id)

    def addon_trees(self, commit: str, paths: tuple[str, ...]) -> dict[str, str]:
        """Each addon folder directly under one of ``paths`` (the first holding a name wins,
        as on Odoo's addons path), with its tree id: the same idea as click-odoo-update's
        checksums, read from git instead of hashing files in a running Odoo. A commit never
        changes, so the answer is kept per commit."""
        cache_key = (commit, paths)
        found = self._addon_cache.get(cache_key)
        if found is not None:
            return dict(found)
        repo = self._open()
        trees: dict[str, str] = {}
        for path in paths:
            folder = self._lookup(repo, commit, path)
            if not isinstance(folder, pygit2.Tree):
                continue
            for entry in folder:
                if entry.name in trees or not isinstance(entry, pygit2.Tree):
                    continue
                if "__manifest__.py" in entry:
                    trees[cast(str, entry.name)] = str(entry.id)
        if len(self._addon_cache) > 256:
            self._addon_cache.clear()
        self._addon_cache[cache_key] = dict(trees)
        return trees

    def commit_info(self, commit: str) -> CommitInfo:
        """Author, committer time (UTC) and first message line of a commit."""
        return _info(self._commit(self._open(), commit))

    def merge_base(self, a: str, b: str) -> str | None:
        repo = self._open()
        base = repo.merge_base(self._commit(repo, a).id, self._commit(repo, b).id)
        return None if base is None else str(base)

    def changed_files(self, base: str, head: str) -> dict[str, bytes | None]:
        """What ``head`` changed since ``base``: new content per path, None where deleted."""
        repo = self._open()
        diff = self._commit(repo, base).tree.diff_to_tree(self._commit(repo, head).tree)
        out: dict[str, bytes | None] = {}
        for delta in diff.deltas:
            if delta.status_char() in ("D", "R"):
                out[delta.old_file.path] = None
            if delta.status_char() != "D":
                out[delta.new_file.path] = cast(pygit2.Blob, repo[delta.new_file.id]).data
        return out

    def touched(self, commit: str) -> frozenset[str]:
        """The paths ``commit`` changed against its first parent (all its files for a root)."""
        repo = self._open()
        c = self._commit(repo, commit)
        if not c.parents:
            return frozenset(p for p, e in _walk(c.tree, "") if not isinstance(e, pygit2.Tree))
        diff = c.parents[0].tree.diff_to_tree(c.tree)
        return frozenset(
            path for d in diff.deltas for path in (d.old_file.path, d.new_file.path) if path
        )

    def history(self, rev: str, limit: int = 50, until: str | None = None) -> list[CommitInfo]:
        """The last ``limit`` commits reachable from ``rev``, newest first (first parents).

        First parents only: for the state repository that is the sequence of states that
        were in force, which is what an audit trail must show.
        """
        repo = self._open()
        out: list[CommitInfo] = []
        commit: pygit2.Commit | None = self._commit(repo, rev)
        while commit is not None and len(out) < limit and str(commit.id) != until:
            out.append(_info(commit))
            commit = commit.parents[0] if commit.parents else None
        return out

    def view(self, commit: str) -> GitTreeView:
        """The tree at ``commit`` as the build planner reads it (``TreeView``)."""
        repo = self._open()
        return GitTreeView(repo, self._commit(repo, commit).tree)

    def has_commit(self, sha: str) -> bool:
        """Whether the mirror holds commit ``sha`` (a submodule's pin, after a fetch)."""
        if not self._mirror.exists():
            return False
        try:
            return isinstance(self._open().get(sha), pygit2.Commit)
        except _GIT_ERRORS:
            return False

    def archive(self, commit: str, prefix: str = "", *, root: str = "") -> bytes:
        """An uncompressed tar of the tree under ``prefix``, its entries placed under ``root``.

        The tar feeds a content-addressed docker build, so the same commit must give the same
        bytes on any machine, any day: entries are sorted by path, every mtime is the commit's
        committer time, owners are 0/"" and modes come from git (0644, 0755 for executables and
        directories), never from a filesystem. Symlinks are kept; submodules are skipped.
        """
        repo = self._open()
        c = self._commit(repo, commit)
        tree = self._tree(repo, commit, prefix)
        root_parts = _parts(root)
        buffer = io.BytesIO()

        def header(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, c.commit_time
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            return info

        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for depth in range(1, len(root_parts) + 1):
                tar.addfile(header("/".join(root_parts[:depth]), tarfile.DIRTYPE, 0o755))
            for path, entry in sorted(_walk(tree, "/".join(root_parts)), key=lambda pe: pe[0]):
                if isinstance(entry, pygit2.Tree):
                    tar.addfile(header(path, tarfile.DIRTYPE, 0o755))
                elif not isinstance(entry, pygit2.Blob):
                    continue
                elif entry.filemode == FileMode.LINK:
                    info = header(path, tarfile.SYMTYPE, 0o777)
                    info.linkname = entry.data.decode("utf-8", "surrogateescape")
                    tar.addfile(info)
                else:
                    executable = entry.filemode == FileMode.BLOB_EXECUTABLE
                    info = header(path, tarfile.REGTYPE, 0o755 if executable else 0o644)
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
        return buffer.getvalue()

    # -- writes ---------------------------------------------------------------------------

    def commit_files(
        self,
        branch: str,
        changes: Mapping[str, bytes | None],
        message: str,
        author: Author,
        *,
        max_attempts: int = 5,
        create_branch_from: str | None = None,
    ) -> str:
        """Commit ``changes`` (path -> content, None deletes) to ``branch`` of the remote.

        Each attempt fetches, applies the changes to the branch head and pushes only if the
        remote branch is still where it was fetched; if not, the next attempt applies the same
        changes to the new head. So a concurrent writer never loses a commit and neither do we.
        Changes that leave the tree as it is return the head without committing.
        ``create_branch_from`` (a branch or commit) starts ``branch`` when it does not exist yet.
        Returns the commit hex the branch points at afterwards.
        """
        edits = self._edits(changes)
        return self._commit_loop(
            branch, lambda: (edits, message), author, max_attempts, create_branch_from
        )

    def commit_with(
        self,
        branch: str,
        build: Callable[[dict[str, bytes]], tuple[Mapping[str, bytes | None], str]],
        author: Author,
        *,
        max_attempts: int = 5,
        create_branch_from: str | None = None,
        allow_empty: bool = False,
    ) -> str:
        """Like ``commit_files``, but the changes are recomputed from the files at each attempt.

        ``build(files)`` gets every file of the branch head (or of ``create_branch_from``) and
        returns ``(changes, message)``; it may raise to refuse (e.g. the merged state would be
        invalid). After a concurrent update it runs again on the new head, so a read-modify-write
        of one file (a patch to an environment) keeps the other writer's edit instead of
        overwriting it, and validation always judges the state that is actually committed.
        """

        def make() -> tuple[_Edits, str]:
            base = self.branches().get(branch)
            if base is None and create_branch_from is not None:
                base = self.resolve(create_branch_from)
            changes, message = build(self.read_tree(base) if base is not None else {})
            return self._edits(changes), message

        return self._commit_loop(
            branch, make, author, max_attempts, create_branch_from, allow_empty
        )

    def commit_chain(
        self,
        branch: str,
        build: Callable[[str], Sequence[ChainLink]],
        *,
        max_attempts: int = 5,
    ) -> list[str]:
        """Commit several changes as consecutive commits on ``branch``, pushed at once.

        ``build(head)`` gets the branch head and returns the links, built on it in order; it
        may answer some of its inputs itself (a write the merged state refuses) and leave them
        out. The mirror is fetched only when the remote moved (``refresh``); when another
        writer pushes between the build and the push, the remote refuses the push (it moves
        its branch compare-and-swap), the mirror is fetched and ``build`` runs again on the
        new head. Returns each link's commit, in order: a link that changes nothing gets the
        commit before it. Nothing is committed when ``build`` returns no link.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        refname = f"refs/heads/{branch}"
        with self._lock:
            for attempt in range(max_attempts):
                if attempt:
                    self.fetch()
                else:
                    self.refresh(branch)
                repo = self._open()
                existing = repo.references.get(refname)
                if existing is None:
                    raise self._error(
                        f"branch {branch} does not exist in {self.display_url}",
                        code="unknown_revision",
                        retryable=False,
                        remediation=f"git ls-remote --heads {self.display_url}",
                    )
                base = existing.peel(pygit2.Commit)
                links = build(str(base.id))
                if not links:
                    return []
                try:
                    new, commits, created = base.id, [], _Created(base.id)
                    for link in links:
                        edits = self._edits(link.changes)
                        new = self._new_commit(
                            repo, new, edits, link.message, link.author, created=created
                        )
                        commits.append(str(new))
                    if new == base.id or self._publish(repo, refname, new, base.id, created):
                        return commits
                except SourceError:
                    raise
                except _GIT_ERRORS as exc:
                    raise self._push_failed(branch, exc) from None
        raise self._error(
            f"{branch} of {self.display_url} kept moving: {max_attempts} attempts to push "
            f"{len(links)} commit(s) were overtaken by other pushes",
            code="push_conflict",
            retryable=True,
            remediation=f"retry later; see who is writing with `git ls-remote {self.display_url} "
            f"{refname}`",
        )

    def create_branch(self, branch: str, commit: str) -> None:
        """Start ``branch`` on the remote at ``commit`` (a commit the mirror has), never
        moving a branch that exists: ``branch_exists`` when the remote has it already, even
        when another writer created it between our fetch and our push."""
        refname = f"refs/heads/{branch}"
        if not pygit2.reference_is_valid_name(refname):
            raise self._invalid(f"{branch!r} is not a valid branch name")

        def exists() -> SourceError:
            return self._error(
                f"branch {branch} exists already in {self.display_url}",
                code="branch_exists",
                retryable=False,
                remediation=f"choose another name (git ls-remote --heads {self.display_url})",
            )

        with self._lock:
            self.fetch()
            repo = self._open()
            if repo.references.get(refname) is not None:
                raise exists()
            target = self._commit(repo, commit)
            try:
                created = self._publish(repo, refname, target.id, None)
            except SourceError:
                raise
            except _GIT_ERRORS as exc:
                raise self._push_failed(branch, exc) from None
            if not created:
                raise exists()

    def _push_failed(self, branch: str, exc: BaseException) -> SourceError:
        return self._error(
            f"cannot commit to {branch} of {self.display_url}: {_describe(exc)}",
            code="push_failed",
            retryable=True,
            remediation=f"git ls-remote {self.display_url} refs/heads/{branch}",
        )

    def _new_commit(
        self,
        repo: pygit2.Repository,
        parent: pygit2.Oid,
        edits: _Edits,
        message: str,
        author: Author,
        allow_empty: bool = False,
        created: _Created | None = None,
    ) -> pygit2.Oid:
        """A commit of ``edits`` on ``parent``; ``parent`` itself when they change nothing
        (unless ``allow_empty``). Every object written is noted in ``created``."""
        base = cast(pygit2.Commit, repo[parent])
        tree = _apply(repo, base.tree, edits, self._invalid, created) or _empty_tree(repo, created)
        if tree == base.tree.id and not allow_empty:
            return parent
        now = int(time.time())
        committer = self._committer or author
        commit = repo.create_commit(
            None,
            pygit2.Signature(author.name, author.email, now, 0),
            pygit2.Signature(committer.name, committer.email, now, 0),
            message if message.endswith("\n") else message + "\n",
            tree,
            [parent],
        )
        if created is not None:
            created.objects.append(commit)
        return commit

    def _publish(
        self,
        repo: pygit2.Repository,
        refname: str,
        new: pygit2.Oid,
        expected: pygit2.Oid | None,
        created: _Created | None = None,
    ) -> bool:
        """Push ``new`` to ``refname`` if the remote still has ``expected`` there, then move
        the mirror's branch too; False when the remote moved meanwhile. ``created``: the
        objects written on top of a commit the remote has, so none of the others are asked
        after."""
        if self._local is not None:
            pushed = self._push_local(self._local, repo, refname, new, expected, created)
        else:
            pushed = self._push_network(repo, refname, new, expected)
        if pushed:
            repo.references.create(refname, new, force=True)
        return pushed

    def _commit_loop(
        self,
        branch: str,
        make: Callable[[], tuple[_Edits, str]],
        author: Author,
        max_attempts: int,
        create_branch_from: str | None,
        allow_empty: bool = False,
    ) -> str:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        refname = f"refs/heads/{branch}"
        if not pygit2.reference_is_valid_name(refname):
            raise self._invalid(f"{branch!r} is not a valid branch name")
        message = ""
        with self._lock:
            for _ in range(max_attempts):
                self.fetch()
                edits, message = make()
                try:
                    landed = self._attempt(
                        refname, edits, message, author, create_branch_from, allow_empty
                    )
                except SourceError:
                    raise
                except _GIT_ERRORS as exc:
                    raise self._push_failed(branch, exc) from None
                if landed is not None:
                    return landed
        raise self._error(
            f"{branch} of {self.display_url} kept moving: {max_attempts} attempts to commit "
            f"{message.splitlines()[0] if message else ''!r} were overtaken by other pushes",
            code="push_conflict",
            retryable=True,
            remediation=f"retry later; see who is writing with `git ls-remote {self.display_url} "
            f"{refname}` (a stale {refname}.lock in a local remote also blocks every push)",
        )

    def _attempt(
        self,
        refname: str,
        edits: _Edits,
        message: str,
        author: Author,
        create_branch_from: str | None,
        allow_empty: bool = False,
    ) -> str | None:
        """One fetch-apply-push round; the new head, or None when the remote moved meanwhile."""
        repo = self._open()
        existing = repo.references.get(refname)
        if existing is not None:
            base = existing.peel(pygit2.Commit)
            expected: pygit2.Oid | None = base.id
        elif create_branch_from is not None:
            base, expected = self._commit(repo, create_branch_from), None
        else:
            raise self._error(
                f"branch {refname.removeprefix('refs/heads/')} does not exist in "
                f"{self.display_url}",
                code="unknown_revision",
                retryable=False,
                remediation=f"git ls-remote --heads {self.display_url}",
            )
        created = _Created(base.id)
        new = self._new_commit(repo, base.id, edits, message, author, allow_empty, created)
        if new == base.id and expected is not None:
            return str(base.id)  # nothing to change
        return str(new) if self._publish(repo, refname, new, expected, created) else None

    def _push_network(
        self, repo: pygit2.Repository, refname: str, new: pygit2.Oid, expected: pygit2.Oid | None
    ) -> bool:
        """Push without force; on failure ask the remote whether its branch moved.

        A refusal is a conflict only if the branch moved; otherwise it is a hook or a branch
        protection (``push_rejected``, not retried) or the network (``push_failed``, retried).
        Asking rather than parsing messages also covers a push that landed but whose answer
        was lost: the branch then points at our commit and that is success.
        """
        outgoing = f"{_OUTGOING}{uuid.uuid4().hex}"
        repo.references.create(outgoing, new)
        callbacks = self._callbacks()
        try:
            repo.remotes.create_anonymous(self._url).push(
                [f"{outgoing}:{refname}"], callbacks=callbacks
            )
            failure = callbacks.rejections.get(refname)
            rejected = failure is not None
        except pygit2.GitError as exc:
            failure, rejected = _describe(exc), False
        finally:
            repo.references.delete(outgoing)
        if failure is None:
            return True
        heads = repo.remotes.create_anonymous(self._url).list_heads(callbacks=self._callbacks())
        current = next((head.oid for head in heads if head.name == refname), None)
        if current == new:
            return True
        if current != expected:
            return False
        branch = refname.removeprefix("refs/heads/")
        raise self._error(
            f"{self.display_url} refused the push to {branch}: {failure}",
            code="push_rejected" if rejected else "push_failed",
            retryable=not rejected,
            remediation=(
                f"the server declined it (branch protection or a hook): allow the daemon to push "
                f"to {branch}, or commit to another branch"
                if rejected
                else f"check the remote answers: git ls-remote {self.display_url}"
            ),
        )

    def _push_local(
        self,
        path: Path,
        repo: pygit2.Repository,
        refname: str,
        new: pygit2.Oid,
        expected: pygit2.Oid | None,
        created: _Created | None = None,
    ) -> bool:
        """Copy the new objects into a local remote and move its branch compare-and-swap.

        libgit2's own local transport overwrites the remote ref unconditionally once its early
        fast-forward check has passed, so a push racing another one would silently drop it.
        Here the ref is locked (the same ``.lock`` file git uses, so this also excludes
        ``git push``), compared with the head we built on, and only then moved. As with
        libgit2's transport, the remote's hooks do not run.
        """
        remote = _open_exactly(path)
        if not remote.is_bare and not remote.head_is_unborn and remote.head.name == refname:
            raise self._error(
                f"{path} has {refname.removeprefix('refs/heads/')} checked out; "
                "pushing there would leave its working tree out of date",
                code="push_rejected",
                retryable=False,
                remediation=f"use a bare repository: git clone --bare {path} <new path>",
            )
        _copy_objects(repo, remote, new, created)
        with remote.transaction() as txn:
            try:
                txn.lock_ref(refname)
            except pygit2.GitError:
                return False
            current = remote.references.get(refname)
            moved = (current.peel(pygit2.Commit).id if current is not None else None) != expected
            if not moved:
                txn.set_target(refname, new, message="odooops: commit_files")
        return not moved

    # -- helpers ----------------------------------------------------------------------------

    def _open(self) -> pygit2.Repository:
        if not self._mirror.exists():
            raise self._error(
                f"{self.display_url} has not been fetched yet",
                code="not_fetched",
                retryable=True,
                remediation=f"wait for the first fetch; it needs `git ls-remote {self.display_url}`"
                " to succeed",
            )
        try:
            return _open_exactly(self._mirror)
        except _GIT_ERRORS as exc:
            raise self._error(
                f"the local mirror of {self.display_url} is unreadable: {_describe(exc)}",
                code="mirror_corrupt",
                retryable=False,
                remediation=f"remove it so the next fetch clones again: rm -rf {self._mirror}",
            ) from None

    def _commit(self, repo: pygit2.Repository, rev: str) -> pygit2.Commit:
        try:
            ref = repo.references.get(f"refs/heads/{rev}")
            if ref is not None:
                return ref.peel(pygit2.Commit)
            if 7 <= len(rev) <= 40 and set(rev) <= _HEXDIGITS:
                obj = repo.get(rev)
                if obj is not None:
                    return obj.peel(pygit2.Commit)
        except pygit2.AmbiguousError:
            reason = "is an ambiguous abbreviation; give more digits"
        except _GIT_ERRORS:
            reason = "is not a branch or a commit"
        else:
            reason = "is not a branch or a commit"
        raise self._error(
            f"{rev!r} {reason} in {self.display_url}",
            code="unknown_revision",
            retryable=False,
            remediation=f"list the branches with `git ls-remote --heads {self.display_url}`",
        )

    def _lookup(self, repo: pygit2.Repository, rev: str, path: str) -> pygit2.Object | None:
        tree = self._commit(repo, rev).tree
        parts = _parts(path)
        if not parts:
            return tree
        try:
            obj = tree["/".join(parts)]
        except KeyError:
            return None
        return None if obj.filemode == FileMode.COMMIT else obj

    def _tree(self, repo: pygit2.Repository, rev: str, path: str) -> pygit2.Tree:
        obj = self._lookup(repo, rev, path)
        if not isinstance(obj, pygit2.Tree):
            raise self._error(
                f"{path!r} is not a directory at {rev} in {self.display_url}",
                code="path_not_found",
                retryable=False,
                remediation=f"git ls-remote {self.display_url}; then `git ls-tree {rev} "
                f"{path or '.'}` in a clone shows what is there",
            )
        return obj

    def _edits(self, changes: Mapping[str, bytes | None]) -> _Edits:
        edits: _Edits = {}
        for path, content in changes.items():
            parts = _parts(path)
            if not parts or ".git" in parts:
                raise self._invalid(f"{path!r} is not a file path inside the repository")
            edits[parts] = content
        ordered = sorted(edits)
        for shorter, longer in itertools.pairwise(ordered):
            if longer[: len(shorter)] == shorter:
                raise self._invalid(
                    f"{'/'.join(shorter)!r} and {'/'.join(longer)!r} cannot both change: "
                    "one is inside the other"
                )
        return edits

    def _invalid(self, message: str) -> SourceError:
        return self._error(
            message,
            code="invalid_path",
            retryable=False,
            remediation="give paths relative to the repository root, without '..' or '.git'",
        )

    def _hint_suffix(self) -> str:
        return f" (configured as `url` in {self._hint})" if self._hint else ""

    def _error(self, message: str, *, code: str, retryable: bool, remediation: str) -> SourceError:
        """A SourceError with URLs sanitised and the configured secrets blanked out verbatim."""
        for secret in (self._credentials.token, self._credentials.ssh_key_passphrase):
            if secret:
                message = message.replace(secret, "***")
                remediation = remediation.replace(secret, "***")
        return SourceError(message, code=code, retryable=retryable, remediation=remediation)


class _MirrorLock:
    """Serialises the fetches and commits of one mirror: between threads (re-entrant, so a
    write may fetch from inside its own lock) and between processes that share the cache
    directory: an ``flock`` on a file inside the mirror, released by the kernel if its holder
    dies. Two CLI invocations, or a CLI beside a daemon, then never fetch into one mirror at
    once. Before the mirror exists there is nothing to share: a first clone fills a directory
    of its own and renames it into place, and the lock is taken as soon as the mirror exists.
    Reads take no lock: git writes objects and moves refs atomically."""

    def __init__(self, mirror: Path) -> None:
        self._file = mirror / "odooops.lock"
        self._thread = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread.acquire()
        try:
            if self._fd is None and self._file.parent.is_dir():
                fd = os.open(self._file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
        except BaseException:
            self._thread.release()
            raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._thread.release()


def _local_path(url: str) -> Path | None:
    """The filesystem path of a local remote, or None for a network URL.

    Like git: ``file://`` and paths are local; another ``scheme://`` is network; a colon before
    the first slash is the scp-like ssh form (``git@host:org/repo.git``).
    """
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if "://" in url or ":" in url.split("/", 1)[0]:
        return None
    return Path(url)


class GitTreeView:
    """One commit's tree read straight from the object database (a ``TreeView``)."""

    _KINDS: ClassVar[dict[int, EntryKind]] = {
        FileMode.TREE: EntryKind.TREE,
        FileMode.LINK: EntryKind.LINK,
        FileMode.COMMIT: EntryKind.COMMIT,
    }

    def __init__(self, repo: pygit2.Repository, tree: pygit2.Tree) -> None:
        self._repo, self._tree = repo, tree

    @property
    def tree_id(self) -> str:
        return str(self._tree.id)

    def _get(self, path: str) -> pygit2.Object | None:
        parts = tuple(p for p in path.split("/") if p not in ("", "."))
        if not parts:
            return self._tree
        if ".." in parts:
            return None
        try:
            return self._tree["/".join(parts)]
        except KeyError:
            return None

    def entries(self, path: str) -> dict[str, Entry] | None:
        obj = self._get(path)
        if not isinstance(obj, pygit2.Tree):
            return None
        return {
            cast(str, e.name): Entry(self._KINDS.get(e.filemode, EntryKind.FILE), str(e.id))
            for e in obj
        }

    def read(self, path: str) -> bytes | None:
        obj = self._get(path)
        return obj.data if isinstance(obj, pygit2.Blob) else None


def _open_exactly(path: Path) -> pygit2.Repository:
    """The repository at ``path`` itself; never one found by walking up to a parent directory."""
    return pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)


def _describe(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.strip() or type(exc).__name__


def _parts(path: str) -> tuple[str, ...]:
    """A repository path as components; '' and '.' are the root, '..' never resolves."""
    parts = tuple(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise SourceError(
            f"{path!r} leaves the repository",
            code="invalid_path",
            retryable=False,
            remediation="give paths relative to the repository root, without '..'",
        )
    return parts


def _walk(tree: pygit2.Tree, base: str) -> Iterator[tuple[str, pygit2.Object]]:
    """Every entry below ``tree``, depth first, with its path; submodules left out."""
    for entry in tree:
        if entry.filemode == FileMode.COMMIT:
            continue
        path = f"{base}/{entry.name}" if base else cast(str, entry.name)
        yield path, entry
        if isinstance(entry, pygit2.Tree):
            yield from _walk(entry, path)


def _apply(
    repo: pygit2.Repository,
    tree: pygit2.Tree | None,
    edits: _Edits,
    invalid: Callable[[str], SourceError],
    created: _Created | None = None,
) -> pygit2.Oid | None:
    """Write the tree ``tree`` becomes with ``edits``; None when nothing is left in it.

    Only the directories on the paths of ``edits`` are rewritten; every other subtree keeps its
    id. A file keeps its mode (an executable stays executable); a new file is 0644. Deleting an
    absent path is a no-op, and deleting a directory removes it whole.
    """
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    nested: dict[str, _Edits] = {}
    for parts, content in edits.items():
        name = parts[0]
        if len(parts) > 1:
            nested.setdefault(name, {})[parts[1:]] = content
            continue
        current = builder.get(name)
        if content is None:
            if current is not None:
                builder.remove(name)
        elif current is not None and current.filemode == FileMode.TREE:
            raise invalid(f"cannot write file {name!r}: it is a directory")
        else:
            keep = current is not None and current.filemode == FileMode.BLOB_EXECUTABLE
            mode = FileMode.BLOB_EXECUTABLE if keep else FileMode.BLOB
            blob = repo.create_blob(content)
            if created is not None:
                created.objects.append(blob)
            builder.insert(name, blob, mode)
    for name, sub in nested.items():
        current = builder.get(name)
        if current is not None and current.filemode != FileMode.TREE:
            if all(content is None for content in sub.values()):
                continue
            raise invalid(f"cannot write below {name!r}: it is a file")
        subtree = cast(pygit2.Tree, repo[current.id]) if current is not None else None
        written = _apply(repo, subtree, sub, invalid, created)
        if written is not None:
            builder.insert(name, written, FileMode.TREE)
        elif current is not None:
            builder.remove(name)
    if not len(builder):
        return None
    written = builder.write()
    if created is not None:
        created.objects.append(written)
    return written


def _empty_tree(repo: pygit2.Repository, created: _Created | None) -> pygit2.Oid:
    tree = repo.TreeBuilder().write()
    if created is not None:
        created.objects.append(tree)
    return tree


@dataclass
class _Created:
    """The objects one push wrote on top of ``base``, children before parents.

    Each was written by ``_apply`` or ``_new_commit``, and everything they name is either
    among them or part of ``base``; so when the remote has ``base`` (and with it, by
    ``_copy_objects``' invariant, its whole tree and history), copying these is copying
    everything it lacks, with no walk through trees of thousands of entries."""

    base: pygit2.Oid
    objects: list[pygit2.Oid] = field(default_factory=list)


def _copy_objects(
    source: pygit2.Repository,
    target: pygit2.Repository,
    root: pygit2.Oid,
    created: _Created | None = None,
) -> None:
    """Write into ``target`` every object reachable from ``root`` that it lacks.

    Children are written before their parents, so an object present in ``target`` always has
    its whole history and tree there too, which is what lets the walk stop at the first object
    ``target`` already has. When ``created`` says which objects are new and ``target`` has
    their base, those alone are copied (as they are on disk when loose: no recompression).
    """
    if created is not None and target.odb.exists(created.base):
        for oid in created.objects:
            _copy_object(source, target, oid)
    pending: list[tuple[pygit2.Oid, bool]] = [(root, False)]
    while pending:
        oid, expanded = pending.pop()
        if target.odb.exists(oid):
            continue
        if expanded:
            _copy_object(source, target, oid)
            continue
        pending.append((oid, True))
        obj = source[oid]
        if isinstance(obj, pygit2.Commit):
            children = [obj.tree_id, *obj.parent_ids]
        elif isinstance(obj, pygit2.Tree):
            children = [entry.id for entry in obj if entry.filemode != FileMode.COMMIT]
        elif isinstance(obj, pygit2.Tag):
            children = [obj.target]
        else:
            children = []
        pending.extend((child, False) for child in children)


def _copy_object(source: pygit2.Repository, target: pygit2.Repository, oid: pygit2.Oid) -> None:
    """One object into ``target``: its loose file hard-linked (as git's local clone does:
    a loose object file never changes, and git's loose format is the same in every
    repository), else copied, else read and written again."""
    if target.odb.exists(oid):
        return
    name = str(oid)
    loose = Path(source.path) / "objects" / name[:2] / name[2:]
    directory = Path(target.path) / "objects" / name[:2]
    if not loose.is_file():
        kind, content = source.odb.read(oid)  # packed in the mirror
        target.odb.write(kind, content)
        return
    directory.mkdir(exist_ok=True)
    try:
        os.link(loose, directory / name[2:])
        return
    except FileExistsError:
        return
    except OSError:
        pass  # another file system, or links refused: copy it
    partial = directory / f".tmp-{name[2:]}-{uuid.uuid4().hex[:8]}"
    partial.write_bytes(loose.read_bytes())
    partial.chmod(0o444)
    os.replace(partial, directory / name[2:])
