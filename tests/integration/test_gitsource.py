"""GitSource against real repositories: a bare remote on disk, served as a path or over smart HTTP.

A ``User`` plays a person with the git CLI; GitSource (pygit2 only) is the daemon. The HTTP server
runs ``git http-backend`` behind basic auth the way a forge does, so the network code paths
(credentials, server-side push refusals) run for real without leaving the machine.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pygit2
import pytest
from pygit2.enums import CredentialType

from reconciler.core.errors import SourceError
from reconciler.gitops.gitsource import Author, Credentials, GitSource, _Callbacks

pytestmark = pytest.mark.integration

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
BOT = Author("OdooOps Bot", "bot@odooops.test")
TOKEN = "tok-3f9a1c"


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.com", *args],
        cwd=cwd,
        env=GIT_ENV,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


class User:
    """A person with a clone of the remote, committing and pushing with the git CLI."""

    def __init__(self, remote: Path, workdir: Path) -> None:
        self.remote = remote
        self.workdir = workdir
        git("clone", "-q", str(remote), str(workdir))

    def commit(
        self, files: Mapping[str, str | None], message: str = "change", branch: str = "main"
    ) -> str:
        """Write (or, for None, delete) files on top of the remote branch and push them."""
        git("fetch", "-q", "origin", cwd=self.workdir)
        has_branch = git("ls-remote", "--heads", "origin", branch, cwd=self.workdir)
        start = [f"origin/{branch}"] if has_branch else []
        git("checkout", "-q", "-B", branch, *start, cwd=self.workdir)
        for path, content in files.items():
            target = self.workdir / path
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git("add", "-A", cwd=self.workdir)
        git("commit", "-q", "-m", message, cwd=self.workdir)
        git("push", "-q", "origin", branch, cwd=self.workdir)
        return git("rev-parse", "HEAD", cwd=self.workdir)

    def clone(self, path: Path, branch: str = "main") -> Path:
        """A fresh clone of ``branch``, as anyone would see the remote now."""
        git("clone", "-q", "--branch", branch, str(self.remote), str(path))
        return path


class _GitHttpServer(ThreadingHTTPServer):
    root: Path
    username: str = "x-access-token"
    token: str | None = None
    users_seen: list[str]


class _SmartHttp(BaseHTTPRequestHandler):
    """Serves the repositories under ``server.root`` with ``git http-backend``."""

    server: _GitHttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        body = self._body()
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            self.server.users_seen.append(base64.b64decode(auth[6:]).decode().split(":")[0])
        if self.server.token is not None:
            pair = f"{self.server.username}:{self.server.token}".encode()
            if auth != "Basic " + base64.b64encode(pair).decode():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path, _, query = self.path.partition("?")
        env = {
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.server.username,
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "srv" / "shop.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(path))
    return path


@pytest.fixture
def user(remote: Path, tmp_path: Path) -> User:
    person = User(remote, tmp_path / "alice")
    person.commit({"README.md": "hello\n", "addons/sale_x/__manifest__.py": "{}\n"}, "initial")
    return person


@pytest.fixture
def http_server(remote: Path) -> Iterator[_GitHttpServer]:
    server = _GitHttpServer(("127.0.0.1", 0), _SmartHttp)
    server.root = remote.parent
    server.users_seen = []
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(params=["path", "http"])
def url(request: pytest.FixtureRequest, remote: Path) -> str:
    """The remote as a local path, and served over smart HTTP."""
    if request.param == "path":
        return str(remote)
    server: _GitHttpServer = request.getfixturevalue("http_server")
    return f"http://127.0.0.1:{server.server_address[1]}/{remote.name}"


def source_for(url: str, cache: Path, **kwargs: Any) -> GitSource:
    source = GitSource(url, cache, **kwargs)
    source.fetch()
    return source


@pytest.fixture
def source(user: User, remote: Path, tmp_path: Path) -> GitSource:
    return source_for(str(remote), tmp_path / "cache")


# -- fetch and branches ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "file-url", "http"])
def test_first_fetch_clones_a_bare_mirror_named_by_url_hash(
    form: str, user: User, remote: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The first fetch leaves one bare repository under cache_dir, and nothing else."""
    if form == "http":
        port = request.getfixturevalue("http_server").server_address[1]
        url = f"http://127.0.0.1:{port}/{remote.name}"
    else:
        url = f"file://{remote}" if form == "file-url" else str(remote)
    source = source_for(url, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == [source.mirror_path]
    assert source.mirror_path.name.endswith(".git") and len(source.mirror_path.name) == 20
    assert pygit2.Repository(str(source.mirror_path)).is_bare
    assert source.branches() == {"main": git("rev-parse", "main", cwd=remote)}


def test_fetch_sees_new_commits_and_branches(source: GitSource, user: User) -> None:
    """Commits and branches pushed after the first fetch appear after the next one."""
    head = user.commit({"README.md": "v2\n"})
    feature = user.commit({"x.txt": "x\n"}, branch="feature")
    source.fetch()
    assert source.branches() == {"main": head, "feature": feature}


def test_fetch_forgets_deleted_branches(source: GitSource, user: User) -> None:
    """A branch deleted on the remote disappears from branches() after a fetch."""
    user.commit({"x.txt": "x\n"}, branch="feature")
    source.fetch()
    git("push", "-q", "origin", "--delete", "feature", cwd=user.workdir)
    source.fetch()
    assert set(source.branches()) == {"main"}


def test_branches_follow_a_force_push(source: GitSource, user: User) -> None:
    """A rewritten branch is mirrored as the remote has it, not fast-forwarded."""
    old = source.branches()["main"]
    user.commit({"README.md": "v2\n"})
    git("reset", "-q", "--hard", old, cwd=user.workdir)
    git("commit", "-q", "--allow-empty", "-m", "rewritten", cwd=user.workdir)
    git("push", "-q", "--force", "origin", "main", cwd=user.workdir)
    source.fetch()
    assert source.branches()["main"] == git("rev-parse", "HEAD", cwd=user.workdir)


def test_reads_before_the_first_fetch_say_so(tmp_path: Path, remote: Path) -> None:
    """Reading a source never fetched is a retryable not_fetched error, not a crash."""
    with pytest.raises(SourceError) as caught:
        GitSource(str(remote), tmp_path / "cache").branches()
    assert (caught.value.code, caught.value.retryable) == ("not_fetched", True)


# -- reads ----------------------------------------------------------------------------------


def test_read_file_at_old_and_new_commits(source: GitSource, user: User) -> None:
    """read_file answers for the exact commit asked, old or new, without a checkout."""
    old = source.branches()["main"]
    new = user.commit({"README.md": "v2\n", "addons/sale_x/__manifest__.py": None})
    source.fetch()
    assert source.read_file(old, "README.md") == b"hello\n"
    assert source.read_file(new, "README.md") == b"v2\n"
    assert source.read_file(old, "addons/sale_x/__manifest__.py") == b"{}\n"
    assert source.read_file(new, "addons/sale_x/__manifest__.py") is None


@pytest.mark.parametrize("path", ["missing.txt", "addons", "addons/sale_x/nope/x.py", ""])
def test_read_file_is_none_for_anything_but_a_file(source: GitSource, path: str) -> None:
    """Absent paths and directories read as None."""
    assert source.read_file("main", path) is None


def test_read_tree_returns_every_file_under_prefix(source: GitSource, user: User) -> None:
    """read_tree is recursive, keyed by path from the repository root."""
    user.commit({"addons/sale_x/models/order.py": "class A: ...\n", "addons/b/__init__.py": ""})
    source.fetch()
    assert source.read_tree("main", "addons/sale_x") == {
        "addons/sale_x/__manifest__.py": b"{}\n",
        "addons/sale_x/models/order.py": b"class A: ...\n",
    }
    assert set(source.read_tree("main")) == {
        "README.md",
        "addons/b/__init__.py",
        "addons/sale_x/__manifest__.py",
        "addons/sale_x/models/order.py",
    }
    assert source.read_tree("main", "nowhere") == {}


def test_read_tree_and_archive_skip_submodules(source: GitSource, user: User) -> None:
    """A gitlink has no content in this repository, so reads leave it out."""
    head = source.branches()["main"]
    git("update-index", "--add", "--cacheinfo", f"160000,{head},addons/vendored", cwd=user.workdir)
    git("commit", "-q", "-m", "submodule", cwd=user.workdir)
    git("push", "-q", "origin", "main", cwd=user.workdir)
    source.fetch()
    assert set(source.read_tree("main", "addons")) == {"addons/sale_x/__manifest__.py"}
    assert source.read_file("main", "addons/vendored") is None
    with tarfile.open(fileobj=io.BytesIO(source.archive("main", "addons"))) as tar:
        assert "vendored" not in tar.getnames()


def test_resolve_branch_full_and_abbreviated_sha(source: GitSource, user: User) -> None:
    """A branch name, a full sha and a 7-digit prefix resolve to the same full sha."""
    head = source.branches()["main"]
    assert source.resolve("main") == source.resolve(head) == source.resolve(head[:7]) == head


@pytest.mark.parametrize("rev", ["nope", "0000000", "abc12", "main~1", "../x", ""])
def test_resolve_unknown_revision(source: GitSource, rev: str) -> None:
    """Anything that is not a known branch or commit is a non-retryable unknown_revision."""
    with pytest.raises(SourceError) as caught:
        source.resolve(rev)
    assert (caught.value.code, caught.value.retryable) == ("unknown_revision", False)
    assert "git ls-remote --heads" in caught.value.remediation


def test_tree_id_changes_only_with_the_directory_content(source: GitSource, user: User) -> None:
    """A subdirectory's tree id is a content address: other changes leave it alone."""
    before = source.tree_id("main", "addons/sale_x")
    user.commit({"README.md": "v2\n"})
    source.fetch()
    assert source.tree_id("main", "addons/sale_x") == before
    assert source.tree_id("main") != source.tree_id("main", "addons")
    user.commit({"addons/sale_x/data.xml": "<odoo/>\n"})
    source.fetch()
    assert source.tree_id("main", "addons/sale_x") != before


def test_tree_id_of_a_missing_directory_is_path_not_found(source: GitSource) -> None:
    """Asking for a directory that is not there names the path in a clear error."""
    with pytest.raises(SourceError) as caught:
        source.tree_id("main", "addons/nope")
    assert caught.value.code == "path_not_found" and "addons/nope" in caught.value.message


def test_commit_info(source: GitSource, user: User) -> None:
    """commit_info gives author, UTC committer time and the summary line."""
    sha = user.commit({"x.txt": "x\n"}, "Add x\n\nbecause we need it")
    source.fetch()
    info = source.commit_info(sha)
    assert (info.sha, info.author_name, info.author_email, info.summary) == (
        sha,
        "Alice",
        "alice@example.com",
        "Add x",
    )
    assert info.committed_at.tzinfo == UTC
    assert abs(datetime.now(UTC) - info.committed_at).total_seconds() < 60


# -- archive --------------------------------------------------------------------------------


def test_archive_is_byte_identical_across_fresh_caches(
    user: User, remote: Path, tmp_path: Path
) -> None:
    """The same commit gives the same tar bytes from two independent clones, a moment apart."""
    user.commit({"addons/sale_x/models/order.py": "x = 1\n", "addons/sale_x/static/a.js": ""})
    first = source_for(str(remote), tmp_path / "cache-a").archive("main", "addons")
    time.sleep(1.1)
    second = source_for(str(remote), tmp_path / "cache-b").archive("main", "addons")
    assert first == second


def test_archive_contents_modes_and_metadata(source: GitSource, user: User) -> None:
    """Entries are sorted, under root, owned by 0, stamped with the commit time, modes from git."""
    user.commit({"addons/sale_x/bin/run.sh": "#!/bin/sh\n"})
    (user.workdir / "addons/sale_x/bin/run.sh").chmod(0o755)
    (user.workdir / "addons/sale_x/link").symlink_to("bin/run.sh")
    sha = user.commit({}, "exec and link")
    source.fetch()
    data = source.archive(sha, "addons/sale_x", root="src/sale_x")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert list(members) == sorted(members)
        assert {n: (m.type, m.mode) for n, m in members.items()} == {
            "src": (tarfile.DIRTYPE, 0o755),
            "src/sale_x": (tarfile.DIRTYPE, 0o755),
            "src/sale_x/__manifest__.py": (tarfile.REGTYPE, 0o644),
            "src/sale_x/bin": (tarfile.DIRTYPE, 0o755),
            "src/sale_x/bin/run.sh": (tarfile.REGTYPE, 0o755),
            "src/sale_x/link": (tarfile.SYMTYPE, 0o777),
        }
        assert members["src/sale_x/link"].linkname == "bin/run.sh"
        commit_time = int(source.commit_info(sha).committed_at.timestamp())
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {
            (commit_time, 0, 0, "", "")
        }
        extracted = tar.extractfile("src/sale_x/bin/run.sh")
        assert extracted is not None and extracted.read() == b"#!/bin/sh\n"


def test_archive_of_the_root_without_root_prefix(source: GitSource) -> None:
    """With no prefix and no root the tar holds the repository as it is."""
    with tarfile.open(fileobj=io.BytesIO(source.archive("main"))) as tar:
        assert tar.getnames() == [
            "README.md",
            "addons",
            "addons/sale_x",
            "addons/sale_x/__manifest__.py",
        ]


# -- commit_files ---------------------------------------------------------------------------


def test_commit_files_creates_updates_and_deletes(url: str, user: User, tmp_path: Path) -> None:
    """The user's clone sees the bot's files, authored by the bot, and the deletions."""
    source = source_for(url, tmp_path / "cache")
    sha = source.commit_files(
        "main",
        {
            "README.md": b"updated\n",
            "envs/staging/env.yaml": b"odoo: 19.0\n",
            "addons/sale_x/__manifest__.py": None,
            "never/existed.txt": None,
        },
        "Promote staging",
        BOT,
    )
    clone = user.clone(tmp_path / "check")
    assert git("rev-parse", "HEAD", cwd=clone) == sha == source.branches()["main"]
    assert (clone / "README.md").read_text() == "updated\n"
    assert (clone / "envs/staging/env.yaml").read_text() == "odoo: 19.0\n"
    assert not (clone / "addons").exists()
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", cwd=clone) == (
        "OdooOps Bot <bot@odooops.test>|OdooOps Bot <bot@odooops.test>|Promote staging"
    )


def test_commit_files_uses_a_configured_committer(user: User, remote: Path, tmp_path: Path) -> None:
    """A committer given to GitSource is recorded; the author stays who asked."""
    ops = Author("Ops", "ops@example.com")
    source = source_for(str(remote), tmp_path / "cache", committer=ops)
    sha = source.commit_files("main", {"a.txt": b"a"}, "a", BOT)
    assert git("log", "-1", "--format=%an|%cn", sha, cwd=remote) == "OdooOps Bot|Ops"


def test_commit_files_keeps_an_executable_executable(source: GitSource, user: User) -> None:
    """Rewriting an executable file keeps its mode; new files are 0644."""
    (user.workdir / "run.sh").write_text("#!/bin/sh\n")
    (user.workdir / "run.sh").chmod(0o755)
    user.commit({}, "add run.sh")
    source.commit_files("main", {"run.sh": b"#!/bin/sh\necho\n", "new.sh": b""}, "edit", BOT)
    listing = git("ls-tree", "main", cwd=user.remote)
    assert "100755 blob" in next(line for line in listing.splitlines() if "run.sh" in line)
    assert "100644 blob" in next(line for line in listing.splitlines() if "new.sh" in line)


def test_commit_files_with_no_effect_makes_no_commit(source: GitSource, user: User) -> None:
    """Changes that leave the tree identical return the current head and push nothing."""
    head = source.branches()["main"]
    same = source.commit_files("main", {"README.md": b"hello\n", "gone.txt": None}, "noop", BOT)
    assert same == head == git("rev-parse", "main", cwd=user.remote)


def test_commit_files_creates_a_branch_from_another(source: GitSource, user: User) -> None:
    """create_branch_from starts a missing branch at the given branch, with the commit on top."""
    base = source.branches()["main"]
    sha = source.commit_files(
        "odooops/promote-1", {"x.txt": b"x"}, "PR", BOT, create_branch_from="main"
    )
    assert git("rev-parse", f"{sha}^", cwd=user.remote) == base
    assert source.branches() == {"main": base, "odooops/promote-1": sha}


def test_commit_files_to_a_missing_branch_without_a_base_fails(source: GitSource) -> None:
    """Writing to a branch that does not exist, with nothing to start it from, is an error."""
    with pytest.raises(SourceError) as caught:
        source.commit_files("nope", {"x.txt": b"x"}, "x", BOT)
    assert (caught.value.code, caught.value.retryable) == ("unknown_revision", False)


@pytest.mark.parametrize(
    "changes",
    [
        {"../escape.txt": b"x"},
        {".git/config": b"x"},
        {"": b"x"},
        {"a": b"x", "a/b": b"y"},
        {"README.md/inside": b"x"},
        {"addons": b"a file over a directory"},
    ],
)
def test_commit_files_rejects_impossible_paths(
    source: GitSource, user: User, changes: dict[str, bytes]
) -> None:
    """Paths outside the tree, into .git, or through a file are refused before any push."""
    head = source.branches()["main"]
    with pytest.raises(SourceError) as caught:
        source.commit_files("main", changes, "bad", BOT)
    assert (caught.value.code, caught.value.retryable) == ("invalid_path", False)
    assert git("rev-parse", "main", cwd=user.remote) == head


class _Overtaken(GitSource):
    """A GitSource whose remote receives a user's commit right after each of its fetches."""

    def __init__(self, url: str, cache_dir: Path, user: User) -> None:
        super().__init__(url, cache_dir)
        self.user = user
        self.overtakes = 0

    def fetch(self) -> None:
        super().fetch()
        if self.overtakes:
            self.overtakes -= 1
            self.user.commit({f"user-{time.monotonic_ns()}.txt": "u\n"}, "user commit")


def test_commit_files_reapplies_when_the_remote_moves_before_push(
    url: str, user: User, tmp_path: Path
) -> None:
    """A push overtaken by another is redone on the new head: both commits land."""
    source = _Overtaken(url, tmp_path / "cache", user)
    source.fetch()
    source.overtakes = 1
    sha = source.commit_files("main", {"bot.txt": b"bot\n"}, "bot", BOT)
    clone = user.clone(tmp_path / "check")
    assert git("log", "--format=%s", cwd=clone).splitlines() == ["bot", "user commit", "initial"]
    assert git("rev-parse", "HEAD", cwd=clone) == sha
    assert (clone / "bot.txt").exists()


def test_commit_files_gives_up_after_max_attempts(url: str, user: User, tmp_path: Path) -> None:
    """When every attempt is overtaken the error is a retryable push_conflict."""
    source = _Overtaken(url, tmp_path / "cache", user)
    source.fetch()
    source.overtakes = 3
    with pytest.raises(SourceError) as caught:
        source.commit_files("main", {"bot.txt": b"bot\n"}, "bot", BOT, max_attempts=3)
    assert (caught.value.code, caught.value.retryable) == ("push_conflict", True)
    assert "bot.txt" not in git("ls-tree", "--name-only", "main", cwd=user.remote)


def test_racing_writers_lose_no_commit(url: str, user: User, tmp_path: Path) -> None:
    """Two sources with their own caches, 10 commits each to one branch: all 20 land."""

    def write(name: str) -> None:
        source = source_for(url, tmp_path / f"cache-{name}")
        for i in range(10):
            source.commit_files(
                "main",
                {f"{name}/{i}.txt": f"{name} {i}\n".encode()},
                f"{name} {i}",
                BOT,
                max_attempts=100,
            )

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(write, "a"), pool.submit(write, "b")]:
            future.result()
    clone = user.clone(tmp_path / "check")
    assert git("rev-list", "--count", "HEAD", cwd=clone) == "21"
    for name in "ab":
        assert sorted(p.name for p in (clone / name).iterdir()) == sorted(
            f"{i}.txt" for i in range(10)
        )


def test_a_server_refusal_is_push_rejected_not_retried(
    user: User, remote: Path, http_server: _GitHttpServer, tmp_path: Path
) -> None:
    """A pre-receive hook that declines gives push_rejected with the server's reason."""
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    url = f"http://127.0.0.1:{http_server.server_address[1]}/{remote.name}"
    source = source_for(url, tmp_path / "cache")
    with pytest.raises(SourceError) as caught:
        source.commit_files("main", {"x.txt": b"x"}, "x", BOT)
    assert (caught.value.code, caught.value.retryable) == ("push_rejected", False)
    assert "declined" in caught.value.message


# -- credentials and errors -----------------------------------------------------------------


def test_a_token_is_sent_as_basic_auth(
    user: User, remote: Path, http_server: _GitHttpServer, tmp_path: Path
) -> None:
    """With a token, fetch and push authenticate as x-access-token unless told otherwise."""
    http_server.token = TOKEN
    url = f"http://127.0.0.1:{http_server.server_address[1]}/{remote.name}"
    source = source_for(url, tmp_path / "cache", credentials=Credentials(token=TOKEN))
    source.commit_files("main", {"x.txt": b"x"}, "x", BOT)
    assert set(http_server.users_seen) == {"x-access-token"}
    http_server.username = "oauth2"
    gitlab = source_for(url, tmp_path / "cache2", credentials=Credentials(TOKEN, "oauth2"))
    assert gitlab.branches() == source.branches()


class _Redirect(BaseHTTPRequestHandler):
    """Answers every request with a redirect to ``server.target`` (another host)."""

    server: _RedirectServer

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RedirectServer(ThreadingHTTPServer):
    target: str


def test_a_token_bound_to_a_host_is_sent_there(
    user: User, remote: Path, http_server: _GitHttpServer, tmp_path: Path
) -> None:
    http_server.token = TOKEN
    url = f"http://127.0.0.1:{http_server.server_address[1]}/{remote.name}"
    creds = Credentials(token=TOKEN, host="127.0.0.1")
    assert source_for(url, tmp_path / "cache", credentials=creds).branches()
    assert set(http_server.users_seen) == {"x-access-token"}


def test_a_redirect_to_another_host_never_receives_a_bound_token(
    user: User, remote: Path, http_server: _GitHttpServer, tmp_path: Path
) -> None:
    """The remote of localhost redirects to 127.0.0.1, which asks for the token: refused,
    and 127.0.0.1 never sees an Authorization header."""
    http_server.token = TOKEN
    redirect = _RedirectServer(("127.0.0.1", 0), _Redirect)
    redirect.target = f"http://127.0.0.1:{http_server.server_address[1]}"
    thread = threading.Thread(target=redirect.serve_forever)
    thread.start()
    try:
        url = f"http://localhost:{redirect.server_address[1]}/{remote.name}"
        source = GitSource(url, tmp_path / "cache", Credentials(token=TOKEN, host="localhost"))
        with pytest.raises(SourceError) as caught:
            source.fetch()
    finally:
        redirect.shutdown()
        redirect.server_close()
        thread.join()
    assert caught.value.code == "authentication_failed"
    assert "127.0.0.1 asks for the credential of localhost" in caught.value.message
    assert TOKEN not in caught.value.render()
    assert http_server.users_seen == []


def test_a_wrong_token_fails_fast_without_showing_it(
    user: User, remote: Path, http_server: _GitHttpServer, tmp_path: Path
) -> None:
    """A refused token is a non-retryable authentication_failed that never contains the token."""
    http_server.token = "the-right-one"
    url = f"http://127.0.0.1:{http_server.server_address[1]}/{remote.name}"
    source = GitSource(url, tmp_path / "cache", Credentials(token=TOKEN), hint="projects/shop.yaml")
    with pytest.raises(SourceError) as caught:
        source.fetch()
    error = caught.value
    assert (error.code, error.retryable) == ("authentication_failed", False)
    assert TOKEN not in error.render() and TOKEN not in repr(source.__dict__["_credentials"])
    assert "projects/shop.yaml" in error.remediation
    assert len(http_server.users_seen) == 1


def test_no_credentials_for_a_private_remote(
    user: User, remote: Path, http_server: _GitHttpServer, tmp_path: Path
) -> None:
    """A remote that asks for credentials when none are configured says exactly that."""
    http_server.token = TOKEN
    url = f"http://127.0.0.1:{http_server.server_address[1]}/{remote.name}"
    with pytest.raises(SourceError) as caught:
        GitSource(url, tmp_path / "cache").fetch()
    assert caught.value.code == "authentication_failed"
    assert "none are configured" in caught.value.message


@pytest.mark.parametrize("scheme", ["https", "ssh"])
def test_credentials_in_the_url_never_reach_the_error(tmp_path: Path, scheme: str) -> None:
    """An unreachable URL with user:secret fails fast, retryably, with the secret hidden."""
    source = GitSource(f"{scheme}://user:secret@127.0.0.1:9/x.git", tmp_path / "cache")
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.fetch()
    assert time.monotonic() - started < 5
    error = caught.value
    assert (error.code, error.retryable) == ("fetch_failed", True)
    assert "secret" not in error.render() and "secret" not in str(error.to_dict())
    assert "secret" not in source.display_url + repr(source)
    assert f"git ls-remote {scheme}://***@127.0.0.1:9/x.git" in error.remediation
    assert error.__cause__ is None and error.__suppress_context__
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("form", ["path", "file-url", "inside-a-worktree"])
def test_a_missing_local_repository_is_repository_not_found(
    tmp_path: Path, user: User, form: str
) -> None:
    """A local path with no repository is a non-retryable error pointing at the project file."""
    missing = user.workdir / "addons" if form == "inside-a-worktree" else tmp_path / "nowhere.git"
    url = f"file://{missing}" if form == "file-url" else str(missing)
    source = GitSource(url, tmp_path / "cache", hint="projects/shop.yaml")
    with pytest.raises(SourceError) as caught:
        source.fetch()
    error = caught.value
    assert (error.code, error.retryable) == ("repository_not_found", False)
    assert str(missing) in error.message
    assert "`url` in projects/shop.yaml" in error.remediation
    assert error.__cause__ is None and error.__suppress_context__


def test_secrets_are_not_in_the_repr_of_credentials() -> None:
    """Logging a Credentials object shows which kind it is, never the token or passphrase."""
    text = repr(Credentials(token=TOKEN, ssh_key_path="/k", ssh_key_passphrase="pp-secret"))
    assert TOKEN not in text and "pp-secret" not in text and "/k" in text


def _refused(reason: str) -> SourceError:
    return SourceError(reason, code="authentication_failed", retryable=False)


@pytest.mark.parametrize(
    ("credentials", "allowed", "kind", "expected"),
    [
        (Credentials(token=TOKEN), "USERPASS_PLAINTEXT", "UserPass", ("x-access-token", TOKEN)),
        (Credentials(TOKEN, "oauth2"), "USERPASS_PLAINTEXT", "UserPass", ("oauth2", TOKEN)),
        (Credentials(), "SSH_KEY", "KeypairFromAgent", ("git", None, None, None)),
        (Credentials(), "USERNAME", "Username", ("git",)),
        (
            Credentials(ssh_key_path="{key}", ssh_key_passphrase="pp"),
            "SSH_KEY",
            "Keypair",
            ("git", "{key}.pub", "{key}", "pp"),
        ),
    ],
)
def test_credentials_answer_what_the_remote_allows(
    tmp_path: Path, credentials: Credentials, allowed: str, kind: str, expected: tuple[Any, ...]
) -> None:
    """Token as basic auth, ssh key (with key.pub beside it) or agent, ssh username: once each."""
    key = tmp_path / "id_ed25519"
    key.write_text("private")
    (tmp_path / "id_ed25519.pub").write_text("public")
    if credentials.ssh_key_path:
        credentials = Credentials(ssh_key_path=str(key), ssh_key_passphrase="pp")
        expected = tuple(str(v).format(key=key) for v in expected)
    callbacks = _Callbacks(credentials, _refused)
    answer = callbacks.credentials("x://git@h/x.git", "git", CredentialType[allowed])
    assert (type(answer).__name__, answer.credential_tuple) == (kind, expected)
    with pytest.raises(SourceError, match="refused"):
        callbacks.credentials("x://git@h/x.git", "git", CredentialType[allowed])


def test_pushing_to_a_checked_out_branch_of_a_non_bare_repository_is_refused(
    user: User, tmp_path: Path
) -> None:
    """A local non-bare remote's checked-out branch is never moved under its working tree."""
    source = source_for(str(user.workdir), tmp_path / "cache")
    with pytest.raises(SourceError) as caught:
        source.commit_files("main", {"x.txt": b"x"}, "x", BOT)
    assert (caught.value.code, caught.value.retryable) == ("push_rejected", False)
    assert "git clone --bare" in caught.value.remediation
