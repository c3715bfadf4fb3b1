"""Authoring commits to the state repository on behalf of a person.

The author of every commit is the caller (a token's subject, or the CLI user), never a bot, so
``git log`` of the state repository tells who changed what. A write that touches a protected
environment (production by default) does not land on the main branch: it goes to a
change-request branch that a second person merges.

The server names every change request (a random id): a client's request id is only a
correlation id in the ``Request-Id`` trailer. A write joins an existing request only when it
says so (``change_request``) and only when its caller opened that request; joining after an
approval makes the approval stale (``reconciler.gitops.changerequests``).

Writes are group-committed. Writes that arrive while a push is in flight queue up; the next
push takes them all: each is applied and validated in arrival order on top of the ones before
it (``StateIndex.update``: only the files it touches and the checks they feed), each becomes
its own commit (its author, message and ``Request-Id``, so the audit trail is what one push
per write gives), and the chain goes to the remote in one push. A write the merged state
refuses is answered alone and the others go on; a write is answered only once its commit is
on the remote (or refused, with nothing of it committed). The validated state of the last
commit stays in memory, and the mirror is fetched only when the remote's branch moved.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.core.config import LoadedState
from reconciler.core.errors import OdooOpsError, SourceError
from reconciler.core.model import StateConfig
from reconciler.core.secretrefs import SecretPolicy
from reconciler.core.validation import applied
from reconciler.gitops import changes
from reconciler.gitops.changerequests import PREFIX, SUBJECT_TRAILER, ChangeRequests, identity
from reconciler.gitops.forges import Forge, ForgeError
from reconciler.gitops.gitsource import Author, ChainLink, GitSource

log = logging.getLogger("odooops.statewriter")

MAX_BATCH = 64
"""Writes one push carries at most; the rest wait for the next."""

MAX_GATHER = 0.02
"""Seconds a push may wait for the writers of the last one to come back, at most."""


@dataclass(frozen=True)
class WriteResult:
    commit: str
    branch: str
    change_request: bool
    request_id: str
    target: str  # the environment ("acme/qa") or the file ("policies.yaml") written
    url: str = ""  # the forge's pull/merge request, when one was opened
    change_request_id: str = ""  # the request the commit went to (named by the server)


@dataclass(frozen=True)
class _Head:
    """The validated state at one commit of the main branch, judged with one policy."""

    commit: str
    files: Mapping[str, bytes]
    loaded: LoadedState
    policy: SecretPolicy


@dataclass(eq=False)
class _Write:
    """One caller's write, waiting in the queue until a push answers it."""

    op: changes.Write
    author: Author
    subject: str | None
    request_id: str
    change_request: str | None
    via: str
    pr: bool
    wakeup: threading.Event = field(default_factory=threading.Event)
    answered: bool = False
    result: WriteResult | None = None
    error: BaseException | None = None

    def answer(self, result: WriteResult | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.answered = result, error, True
        self.wakeup.set()

    def message(self, change_request: str = "") -> str:
        message = self.op.message(self.request_id, self.via)
        if self.subject is not None:
            message += f"{SUBJECT_TRAILER}: {self.subject}\n"
        if change_request:
            message += f"Change-Request: {change_request}\n"
        return message


class StateWriter:
    """Commits validated writes; ``secrets`` gives the allowlist of secret references the
    daemon applies (asked at each write: named secrets come and go in its store)."""

    def __init__(
        self,
        repo: GitSource,
        branch: str = "main",
        forge: Forge | None = None,
        secrets: Callable[[], SecretPolicy] = SecretPolicy,
    ) -> None:
        self.repo = repo
        self.branch = branch
        self.forge = forge
        self.secrets = secrets
        self._head: _Head | None = None
        self._queue: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._arrived = threading.Condition(self._queue_lock)  # notified on each new write
        self._leading = False  # a caller is pushing; the others wait to be answered or led
        self._last_batch, self._last_push = 1, 0.0  # size and seconds of the last push

    def current(self) -> StateConfig:
        """The state at the head of the main branch (the remote asked where that is now)."""
        self.repo.refresh(self.branch)
        return self._state_at(self.repo.resolve(self.branch), self.secrets()).loaded.config

    def check(self, op: changes.Operation | changes.FileOperation) -> None:
        """Raise what ``submit`` would refuse ``op`` for on the head of the main branch, and
        commit nothing: for a write that follows another side effect (a pushed branch),
        which must not start when the write cannot land."""
        self.repo.refresh(self.branch)
        state = self._state_at(self.repo.resolve(self.branch), self.secrets())
        after = changes.validated_after(state.loaded, op.apply(state.files))
        if isinstance(op, changes.Operation):
            op.check(state.loaded.config, after.config)

    def submit(
        self,
        op: changes.Write,
        author: Author,
        *,
        subject: str | None = None,
        request_id: str | None = None,
        change_request: str | None = None,
        via: str = "cli",
        pr: bool = False,
    ) -> WriteResult:
        """Validate and commit ``op``; to a change-request branch when it touches a protected
        environment (``changes.touched_protected``), when asked (``pr``), or when joining the
        caller's own open request ``change_request``.

        ``subject`` is the token's (recorded as a trailer: the identity reviews compare);
        ``request_id`` is the client's correlation id, never a branch name. Returns once the
        commit is on the remote; concurrent callers share pushes (the module's docstring).
        """
        write = _Write(
            op, author, subject, request_id or uuid.uuid4().hex[:12], change_request, via, pr
        )
        with self._arrived:
            self._queue.append(write)
            lead, self._leading = not self._leading, True
            self._arrived.notify()
        if not lead:
            write.wakeup.wait()  # answered, or handed the lead
        if not write.answered:
            self._lead()
        if write.error is not None:
            raise write.error
        assert write.result is not None
        return write.result

    def _lead(self) -> None:
        """Push what is queued (this caller's write first), then hand the lead to the oldest
        write still waiting. Handing it over, rather than keeping it or letting the next
        caller take it, makes the writes that queued during this push the next batch, and
        this caller returns as soon as its own write is answered.

        When the last push carried several writers' writes, they are likely to write again
        at once: the push waits a moment for as many (at most a quarter of the last push's
        time, and ``MAX_GATHER``), or the first of them would go alone and the rest queue
        behind it. A lone writer never waits."""
        with self._arrived:
            expected = min(self._last_batch, MAX_BATCH)
            deadline = time.monotonic() + min(MAX_GATHER, self._last_push / 4)
            while len(self._queue) < expected and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        started = time.monotonic()
        try:
            self._run(batch)
        finally:
            self._last_batch, self._last_push = len(batch), time.monotonic() - started
            with self._queue_lock:
                if self._queue:
                    self._queue[0].wakeup.set()
                else:
                    self._leading = False

    def _run(self, batch: list[_Write]) -> None:
        """Answer every write of ``batch``: the main branch's as one push, then each change
        request's on its own branch. Whatever goes wrong is the answer of the writes it
        leaves unanswered, never an exception lost in another caller's thread."""
        try:
            policy = self.secrets()
            requests = self._commit_main([w for w in batch if w.change_request is None], policy)
            for write in batch:
                if write in requests or write.change_request is not None:
                    try:
                        write.answer(self._change_request(write, policy))
                    except Exception as exc:  # this write's alone: the others go on
                        write.answer(error=exc)
        except BaseException as exc:  # handed to each caller, who raises it
            for write in batch:
                if not write.answered:
                    write.answer(error=exc)

    def _commit_main(self, writes: list[_Write], policy: SecretPolicy) -> list[_Write]:
        """Commit the writes that stay on the main branch, in one push; returns those that
        need a change request instead (protected, or asked for)."""
        requests: list[_Write] = []
        chained: list[tuple[_Write, _Head]] = []

        def build(head: str) -> list[ChainLink]:
            # Runs again on the new head when another writer pushed first.
            requests.clear()
            chained.clear()
            state = self._state_at(head, policy)
            links = []
            for write in writes:
                if write.answered:
                    continue  # refused on an earlier head: answered already
                try:
                    edit = write.op.apply(state.files)
                    after = changes.validated_after(state.loaded, edit)
                    if isinstance(write.op, changes.Operation):
                        write.op.check(state.loaded.config, after.config)
                    if write.pr or changes.touched_protected(state.loaded.config, after.config):
                        requests.append(write)
                        continue
                except Exception as exc:
                    # Whatever one write's input makes fail (a refusal, or a bug it finds) is
                    # that write's answer alone: it must not fail the writes batched with it.
                    write.answer(error=exc)
                    continue
                state = _Head(head, applied(state.files, edit), after, policy)
                chained.append((write, state))
                links.append(ChainLink(edit, write.message(), write.author))
            return links

        commits = self.repo.commit_chain(self.branch, build) if writes else []
        for (write, _), commit in zip(chained, commits, strict=True):
            write.answer(WriteResult(commit, self.branch, False, write.request_id, write.op.target))
        if chained:
            last = chained[-1][1]
            config = dataclasses.replace(last.loaded.config, commit=commits[-1])
            loaded = dataclasses.replace(last.loaded, config=config)
            self._head = _Head(commits[-1], last.files, loaded, policy)
        return requests

    def _state_at(self, commit: str, policy: SecretPolicy) -> _Head:
        """The validated state at ``commit``: kept from the last write or read, else updated
        from it by the files that changed, else loaded whole. ``InvalidState`` when the
        branch holds an invalid state (a push that bypassed validation): no write then lands
        on it until it is fixed."""
        known = self._head
        if known is not None and known.commit == commit and known.policy == policy:
            return known
        changed = None
        if known is not None and known.policy == policy:
            try:
                changed = self.repo.changed_files(known.commit, commit)
            except SourceError:
                changed = None  # the kept commit is gone from the mirror: load it whole
        if known is not None and changed is not None:
            loaded = known.loaded.update(changed, commit)
            head = _Head(commit, applied(known.files, changed), loaded, policy)
        else:
            files = self.repo.read_tree(commit)
            loaded = LoadedState.load(files, commit, self.repo.display_url, policy)
            head = _Head(commit, files, loaded, policy)
        self._head = head
        return head

    def _change_request(self, write: _Write, policy: SecretPolicy) -> WriteResult:
        """Commit one write to a change-request branch: a new one (named here), or the
        caller's own open request it joins."""
        caller = identity(write.subject, write.author.email)
        requests = ChangeRequests(self.repo, self.branch, self.secrets)
        label = self.repo.display_url
        joining = write.change_request is not None
        if write.change_request is not None:
            joined = requests.joinable(write.change_request, caller)
            cr_id = joined.id
            files = self.repo.read_tree(joined.head)
            changes.validated(files, write.op.apply(files), label, policy)
        else:
            cr_id = uuid.uuid4().hex[:12]
        target = PREFIX + cr_id
        message = write.message(cr_id)

        def build(head_files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            # Runs after each fetch: the request may have been merged, closed or taken meanwhile.
            if joining:
                requests.joinable(cr_id, caller, fetch=False)
            elif target in self.repo.branches():
                raise OdooOpsError(
                    f"change request {cr_id} exists already",
                    code="conflict",
                    remediation="run the command again (a new id is drawn)",
                )
            edit = write.op.apply(head_files)
            changes.validated(head_files, edit, label, policy)
            return edit, message

        commit = self.repo.commit_with(
            target, build, write.author, create_branch_from=None if joining else self.branch
        )
        url = ""
        if not joining and self.forge is not None:
            title, _, body = message.partition("\n")
            try:
                url = self.forge.open_change_request(
                    target,
                    self.branch,
                    title,
                    f"{body.strip()}\n\nProposed by {write.author.name} <{write.author.email}>.",
                )
            except ForgeError as exc:  # the branch is pushed: review can still happen in git
                log.warning("change request %s: %s", cr_id, exc.render())
        return WriteResult(commit, target, True, write.request_id, write.op.target, url, cr_id)
