"""Group commit: concurrent writes share pushes and lose, reorder or smuggle in nothing.

Real git repositories on disk (a bare remote, each writer its own mirror); threads and
processes write at once. What must hold whatever the timing: every answered write is exactly
one commit on the remote's main, each by its own author with its own ``Request-Id``; one
writer's writes land in the order it made them; a write validation refuses is answered alone
and none of it is committed; the mirror is fetched only when the remote moved.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import InvalidState, OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.world import acme_state_remote, git

pytestmark = pytest.mark.integration


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return acme_state_remote(tmp_path)


class CountingSource(GitSource):
    """Counts pushes and fetches; ``slow_push`` holds each push so writes pile up behind it."""

    def __init__(self, *args: Any, slow_push: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pushes = 0
        self.fetches = 0
        self.slow_push = slow_push

    def fetch(self) -> None:
        self.fetches += 1
        super().fetch()

    def _publish(self, *args: Any, **kwargs: Any) -> bool:
        self.pushes += 1
        time.sleep(self.slow_push)
        return super()._publish(*args, **kwargs)


def started(remote: Path, tmp_path: Path, slow_push: float) -> tuple[CountingSource, StateWriter]:
    """A writer whose mirror is cloned already, each push held ``slow_push`` seconds."""
    source = CountingSource(f"file://{remote}", tmp_path / "cache", slow_push=slow_push)
    writer = StateWriter(source)
    writer.current()
    return source, writer


def create(name: str) -> changes.Operation:
    return changes.Operation("create", EnvKey("acme", name), {"branch": f"release/{name}"})


def main_log(remote: Path) -> list[tuple[str, str, str]]:
    """(author email, subject, Request-Id) of main's commits, oldest first."""
    out = git(
        "--git-dir",
        str(remote),
        "log",
        "--reverse",
        "--first-parent",
        "--format=%ae@@%s@@%(trailers:key=Request-Id,valueonly)##",
        "main",
    )
    rows = []
    for record in out.split("##"):
        if record.strip():
            email, subject, request = record.strip().split("@@")
            rows.append((email, subject, request.strip()))
    return rows


def run_threads(n: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_concurrent_writers_share_pushes_and_each_write_is_its_own_commit(
    remote: Path, tmp_path: Path
) -> None:
    source, writer = started(remote, tmp_path, slow_push=0.05)
    before = len(main_log(remote))
    results: dict[str, str] = {}

    def work(t: int) -> None:
        author = Author(f"Writer {t}", f"w{t}@acme.example")
        for i in range(4):
            name = f"w{t}-{i}"
            result = writer.submit(create(name), author, request_id=f"req-{name}", via="test")
            results[name] = result.commit

    assert run_threads(12, work) == []
    log = main_log(remote)[before:]
    assert len(log) == len(results) == 48  # one commit per write, none lost
    assert source.pushes < 48  # writes that arrived during a push went in the next one
    for t in range(12):
        mine = [request for email, _, request in log if email == f"w{t}@acme.example"]
        assert mine == [f"req-w{t}-{i}" for i in range(4)]  # in the order the writer made them
    for email, subject, request in log:
        name = request.removeprefix("req-")
        assert subject == f"feat(env): create acme/{name}"
        assert email == f"w{name[1:].split('-')[0]}@acme.example"
    answered = {git("--git-dir", str(remote), "rev-parse", c) for c in results.values()}
    on_main = set(git("--git-dir", str(remote), "rev-list", "main").split())
    assert answered <= on_main and len(answered) == 48
    # The objects went over as the loose files the mirror wrote: git finds them whole.
    git("--git-dir", str(remote), "fsck", "--strict", "--no-dangling")


def test_a_refused_write_is_answered_alone_and_the_batch_goes_on(
    remote: Path, tmp_path: Path
) -> None:
    _, writer = started(remote, tmp_path, slow_push=0.1)
    before = len(main_log(remote))
    outcome: dict[int, object] = {}
    ann = Author("Ann", "ann@acme.example")

    def work(i: int) -> None:
        # Every third write claims the branch qa deploys already: the merged state refuses it.
        branch = "release/v1" if i % 3 == 0 else f"release/ok-{i}"
        op = changes.Operation("create", EnvKey("acme", f"e-{i}"), {"branch": branch})
        try:
            outcome[i] = writer.submit(op, ann, request_id=f"r-{i}").commit
        except InvalidState as exc:
            outcome[i] = exc

    assert run_threads(9, work) == []
    refused = sorted(i for i, o in outcome.items() if isinstance(o, InvalidState))
    assert refused == [0, 3, 6]
    for i in refused:
        problem = outcome[i]
        assert isinstance(problem, InvalidState)
        assert [p.code for p in problem.problems] == ["duplicate_branch"]
    log = main_log(remote)[before:]
    assert sorted(request for _, _, request in log) == sorted(
        f"r-{i}" for i in range(9) if i not in refused
    )
    tree = git("--git-dir", str(remote), "ls-tree", "--name-only", "main", "environments/acme/")
    assert not {f"environments/acme/e-{i}.yaml" for i in refused} & set(tree.split())


class Broken(changes.Operation):
    """A write whose own input makes it fail with something no refusal expected."""

    def apply(self, files: Any) -> dict[str, bytes | None]:
        raise RuntimeError("this write's own failure")


def test_a_write_that_fails_unexpectedly_fails_alone(remote: Path, tmp_path: Path) -> None:
    _, writer = started(remote, tmp_path, slow_push=0.1)
    before = len(main_log(remote))
    outcome: dict[int, object] = {}
    ann = Author("Ann", "ann@acme.example")

    def work(i: int) -> None:
        op = Broken("create", EnvKey("acme", f"b-{i}")) if i == 2 else create(f"b-{i}")
        try:
            outcome[i] = writer.submit(op, ann, request_id=f"r-{i}").commit
        except RuntimeError as exc:
            outcome[i] = exc

    assert run_threads(6, work) == []
    assert [i for i, o in sorted(outcome.items()) if isinstance(o, RuntimeError)] == [2]
    requests = sorted(request for _, _, request in main_log(remote)[before:])
    assert requests == [f"r-{i}" for i in range(6) if i != 2]


def test_a_write_to_a_protected_environment_in_a_batch_still_goes_to_a_change_request(
    remote: Path, tmp_path: Path
) -> None:
    _, writer = started(remote, tmp_path, slow_push=0.05)
    before = main_log(remote)
    results: dict[int, Any] = {}
    ann = Author("Ann", "ann@acme.example")

    def work(i: int) -> None:
        if i == 0:
            op = changes.Operation("suspend", EnvKey("acme", "production"))
        else:
            op = create(f"c-{i}")
        results[i] = writer.submit(op, ann, request_id=f"r-{i}")

    assert run_threads(6, work) == []
    assert results[0].change_request and results[0].branch.startswith("odooops/change-")
    assert all(not results[i].change_request for i in range(1, 6))
    requests = [request for _, _, request in main_log(remote)[len(before) :]]
    assert sorted(requests) == [f"r-{i}" for i in range(1, 6)]


def test_the_mirror_is_fetched_only_when_the_remote_moved(remote: Path, tmp_path: Path) -> None:
    source = CountingSource(f"file://{remote}", tmp_path / "cache")
    writer = StateWriter(source)
    ann = Author("Ann", "ann@acme.example")
    writer.submit(create("first"), ann)
    fetched = source.fetches
    for i in range(5):
        writer.submit(create(f"quiet-{i}"), ann)
    assert source.fetches == fetched  # nobody else pushed: the remote's ref said so
    # Someone pushes with git itself; the next write fetches once and lands on top of it.
    work = tmp_path / "work"
    git("clone", "-q", str(remote), str(work))
    (work / "environments" / "acme" / "by-hand.yaml").write_text("branch: release/by-hand\n")
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "commit", "-q", "-m", "by hand")
    git("-C", str(work), "push", "-q", "origin", "main")
    writer.submit(create("after"), ann)
    assert source.fetches == fetched + 1
    subjects = [subject for _, subject, _ in main_log(remote)]
    assert subjects[-2:] == ["by hand", "feat(env): create acme/after"]


def test_a_push_overtaken_by_another_writer_is_built_again_on_the_new_head(
    remote: Path, tmp_path: Path
) -> None:
    """Another process pushes between this writer's build and its push: the remote refuses
    the push (compare-and-swap), the batch is validated again on the new head, and lands."""
    other = StateWriter(GitSource(f"file://{remote}", tmp_path / "other"))
    ann = Author("Ann", "ann@acme.example")

    class Racing(CountingSource):
        def _publish(self, *args: Any, **kwargs: Any) -> bool:
            if self.pushes == 0:
                # The other writer claims the very branch this batch's write deploys.
                other.submit(create("raced"), ann, request_id="other")
            return super()._publish(*args, **kwargs)

    writer = StateWriter(Racing(f"file://{remote}", tmp_path / "cache"))
    mine = changes.Operation("create", EnvKey("acme", "mine"), {"branch": "release/raced"})
    with pytest.raises(InvalidState) as refused:
        writer.submit(mine, ann, request_id="mine")
    assert [p.code for p in refused.value.problems] == ["duplicate_branch"]
    assert writer.submit(create("later"), ann, request_id="later").branch == "main"
    requests = [request for _, _, request in main_log(remote)]
    assert requests[-2:] == ["other", "later"] and "mine" not in requests


def _process_writer(url: str, cache: str, tag: str, count: int, start: Any) -> None:
    writer = StateWriter(GitSource(url, Path(cache)))
    author = Author(f"Process {tag}", f"{tag}@acme.example")
    start.wait()
    for i in range(count):
        for attempt in range(10):
            try:
                writer.submit(create(f"{tag}-{i}"), author, request_id=f"{tag}-{i}")
                break
            except OdooOpsError as exc:
                if exc.code != "push_conflict" or attempt == 9:
                    raise


def test_writer_processes_never_lose_or_reorder_a_write(remote: Path, tmp_path: Path) -> None:
    """Four processes: two with their own mirror, two sharing one (the mirror's file lock)."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    caches = ["own-a", "own-b", "shared", "shared"]
    procs = [
        ctx.Process(
            target=_process_writer,
            args=(f"file://{remote}", str(tmp_path / cache), f"p{i}", 6, start),
        )
        for i, cache in enumerate(caches)
    ]
    before = len(main_log(remote))
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    log = main_log(remote)[before:]
    assert len(log) == 24
    for i in range(4):
        mine = [request for email, _, request in log if email == f"p{i}@acme.example"]
        assert mine == [f"p{i}-{n}" for n in range(6)]


KILL_POINTS = ("before-push", "objects-copied", "remote-moved")


def _killed_writer(url: str, cache: str, point: str, ready: Any) -> None:
    """A writer whose push is killed (SIGKILL, as a crash would) at ``point``: before it
    starts, once the remote has the objects but not the branch, or once the remote's branch
    moved but before the mirror's did and before any caller was answered."""
    import os
    import signal

    from reconciler.gitops import gitsource

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    copy = gitsource._copy_objects

    def copy_then_die(*args: Any, **kwargs: Any) -> None:
        copy(*args, **kwargs)
        if point == "objects-copied":
            die()

    gitsource._copy_objects = copy_then_die  # type: ignore[assignment]

    class Dying(GitSource):
        def _publish(self, *args: Any, **kwargs: Any) -> bool:
            if point == "before-push":
                die()
            assert self._local is not None
            pushed = self._push_local(self._local, *args, **kwargs)
            if point == "remote-moved":
                die()
            return pushed

    writer = StateWriter(Dying(url, Path(cache)))
    writer.current()
    ann = Author("Ann", "ann@acme.example")
    ready.wait()
    threads = [
        threading.Thread(target=writer.submit, args=(create(f"k-{i}"), ann), daemon=True)
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_writer_killed_mid_push_leaves_all_or_nothing_and_the_next_write_lands(
    remote: Path, tmp_path: Path, point: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    cache = tmp_path / "cache"
    before = git("--git-dir", str(remote), "rev-parse", "main")
    proc = ctx.Process(target=_killed_writer, args=(f"file://{remote}", str(cache), point, ready))
    proc.start()
    ready.set()
    proc.join(60)
    assert proc.exitcode == -9  # it died where it was told to
    head = git("--git-dir", str(remote), "rev-parse", "main")
    landed = [s for _, s, _ in main_log(remote) if s.startswith("feat(env): create acme/k-")]
    if point == "remote-moved":
        assert head != before and len(landed) >= 1  # the chain is on the remote, whole
    else:
        assert head == before and landed == []  # nothing of it is
    git("--git-dir", str(remote), "fsck", "--strict", "--no-dangling")
    # Restarted on the same cache (the mirror may be behind the remote): writes land on top.
    writer = StateWriter(GitSource(f"file://{remote}", cache))
    ann = Author("Ann", "ann@acme.example")
    for i in range(3):
        name = f"k-{i}"
        if not any(s.endswith(f"acme/{name}") for s in landed):
            writer.submit(create(name), ann)  # what the killed writer never answered
    writer.submit(create("after"), ann)
    subjects = [s for _, s, _ in main_log(remote)]
    assert sorted(s for s in subjects if "acme/k-" in s) == [
        f"feat(env): create acme/k-{i}" for i in range(3)
    ]
    assert subjects[-1] == "feat(env): create acme/after"
    git("--git-dir", str(remote), "fsck", "--strict", "--no-dangling")
