"""The README's quick start, pasted line by line into one shell, as a new user would.

The daemon is started the way ``make run`` starts it (``scripts/run-example.sh``: the same bare
repositories, state files and keys), with the fixture images, its own instance label, API port
and a 5 s poll. The README's ``sh`` blocks marked ``<!-- quickstart: NAME -->`` are then run
command by command in one bash session whose working directory stands for the user's checkout:
every command must succeed, and what the README promises must hold (the QA environment through
git, then through the CLI; piped psql that ends; the data commands with both name forms).

Container and database names come from project names, not from the daemon's instance, and a
``make run`` may well be living on this engine with its ``acme`` (CI follows the quick start
before it runs the tests). So the example project gets a name of its own here
(``ODOOOPS_EXAMPLE_PROJECT``), and the README's ``acme/`` names are read as that name: nothing
else of what is pasted changes.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.world import REPO_ROOT, remove_instance

pytestmark = pytest.mark.integration

EXAMPLE = ("production", "staging", "feature-crm-reports")


def readme_block(name: str) -> str:
    """The ``sh`` block that follows ``<!-- quickstart: NAME -->`` in the README."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- quickstart: {name} -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no quick-start block {name!r}"
    return match.group(1)


def commands(block: str) -> list[str]:
    """The block as a user pastes it: one command per line, a here-document or a line ending
    in a backslash continuing it."""
    out: list[str] = []
    current: list[str] = []
    heredoc: str | None = None
    for line in block.splitlines():
        if not current and not line.strip():
            continue
        current.append(line)
        if heredoc is not None:
            if line.strip() != heredoc:
                continue
            heredoc = None
        else:
            opened = re.search(r"<<-?'?([A-Za-z_]+)'?", line)
            if opened:
                heredoc = opened.group(1)
                continue
            if line.endswith("\\"):
                continue
        out.append("\n".join(current))
        current = []
    assert not current, f"unterminated command: {current}"
    return out


class Shell:
    """One bash session fed command by command, as a terminal would be."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def run(self, command: str, timeout: float = 900) -> tuple[int, str]:
        """Run one command (its stdin is not the session's); its exit status and output."""
        marker = f"__done_{secrets.token_hex(4)}"
        assert self._proc.stdin is not None
        self._proc.stdin.write(f'{{ {command}\n}} </dev/null\necho "{marker} $?"\n')
        self._proc.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"`{command}` did not finish within {timeout} s:\n{''.join(output)}"
                ) from None
            if line is None:
                raise AssertionError(f"the shell ended during `{command}`:\n{''.join(output)}")
            if line.startswith(marker):
                return int(line.split()[1]), "".join(output)
            output.append(line)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class Example:
    """``make run`` in a temporary checkout: the daemon, its data, and the user's shell."""

    def __init__(self, root: Path) -> None:
        self.checkout = root / "checkout"
        self.work = self.checkout / ".odooops" / "example"
        self.instance = "q" + secrets.token_hex(4)
        self.project = "qs" + secrets.token_hex(3)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.daemon_log = root / "daemon.log"
        home = root / "home"
        (home / ".config").mkdir(parents=True)
        (home / "gitconfig").write_text(
            "[user]\n\tname = Ann Integrator\n\temail = ann@acme.example\n"
            "[init]\n\tdefaultBranch = main\n"
        )
        # What make run's set-up leaves in a checkout: .venv/bin/activate putting an
        # `odooops` on PATH; here one that runs the code under test.
        bindir = self.checkout / ".venv" / "bin"
        bindir.mkdir(parents=True)
        odooops = bindir / "odooops"
        odooops.write_text(
            f'#!/bin/sh\nPYTHONPATH="{REPO_ROOT}" exec "{sys.executable}" -m reconciler.cli "$@"\n'
        )
        odooops.chmod(0o755)
        (bindir / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
        # The user's environment (PostgreSQL and Docker settings included), but their own
        # login, cache and git identity, and nothing of an OdooOps already configured.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ODOOOPS_")}
        self.env.update(
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
            GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            ODOOOPS_API=f"http://127.0.0.1:{self.port}",
            COLUMNS="200",
        )
        self._daemon: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """As make run does, minus the machine set-up the fixtures already checked."""
        env = {
            **self.env,
            "ODOOOPS_EXAMPLE_DIR": str(self.work),
            "ODOOOPS_EXAMPLE_PROJECT": self.project,
            "ODOOOPS_SKIP_SETUP": "1",
            "ODOOOPS_PYTHON": sys.executable,
            "ODOOOPS_SETUP_LOG": str(self.daemon_log.with_name("setup.log")),
        }
        with self.daemon_log.open("wb") as log:
            self._daemon = subprocess.Popen(
                [
                    "bash",
                    str(REPO_ROOT / "scripts" / "run-example.sh"),
                    "--instance",
                    self.instance,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--interval",
                    "5",
                    "--jitter",
                    "0",
                    "--health-timeout",
                    "120",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self._daemon is not None and self._daemon.poll() is None:
            self._daemon.send_signal(signal.SIGINT)
            try:
                self._daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
                self._daemon.wait()

    def log_tail(self) -> str:
        return "\n".join(self.daemon_log.read_text(errors="replace").splitlines()[-40:])

    def status(self, env: str) -> dict[str, object]:
        path = self.work / "data" / "status.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        found: dict[str, object] = doc["environments"].get(f"{self.project}/{env}", {})
        return found

    def wait_healthy(self, envs: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._daemon is not None and self._daemon.poll() is not None:
                raise AssertionError(f"the daemon ended:\n{self.log_tail()}")
            if all(
                (self.status(e).get("health"), self.status(e).get("sync")) == ("Healthy", "Synced")
                for e in envs
            ):
                return
            time.sleep(1)
        states = {e: (self.status(e).get("health"), self.status(e).get("sync")) for e in envs}
        raise AssertionError(f"not converged within {timeout} s: {states}\n{self.log_tail()}")


@pytest.fixture
def example(
    tmp_path: Path,
    docker_engine: docker.DockerClient,
    images: dict[str, str],
    postgres_server: None,
) -> Iterator[Example]:
    ex = Example(tmp_path)
    ex.start()
    try:
        yield ex
    finally:
        ex.stop()
        remove_instance(docker_engine, ex.instance)
        for image in docker_engine.images.list(filters={"label": f"odooops.project={ex.project}"}):
            docker_engine.images.remove(image.id, force=True)


def paste(shell: Shell, block: str, example: Example) -> str:
    """Every command of a README block, in order; each must succeed."""
    seen = ""
    for command in commands(readme_block(block)):
        command = re.sub(r"\bacme/", f"{example.project}/", command)
        status, output = shell.run(command)
        seen += output
        assert status == 0, (
            f"`{command}` exited {status}:\n{output}\n--- daemon:\n{example.log_tail()}"
        )
    return seen


@pytest.mark.slow
def test_the_readme_quick_start_works_as_written(example: Example) -> None:
    """make run's bare repositories clone with main checked out; the QA example validates and
    converges through git, then through the CLI; piped psql runs and ends; data commands take
    bare and full names."""
    example.wait_healthy(EXAMPLE, timeout=420)
    printed = example.daemon_log.read_text(errors="replace").splitlines()
    started = next(i for i, line in enumerate(printed) if "odooops daemon:" in line)
    before_daemon = printed[:started]
    assert all(line.startswith("[run] ") for line in before_daemon), before_daemon
    for repo in ("state.git", "app.git"):
        head = subprocess.run(
            ["git", "--git-dir", str(example.work / repo), "symbolic-ref", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert head.stdout.strip() == "refs/heads/main"
    shell = Shell(example.checkout, example.env)
    try:
        paste(shell, "git", example)
        assert (example.checkout / "state" / "environments" / example.project / "qa.yaml").is_file()
        assert shell.run("pwd")[1].strip() == str(example.checkout)
        example.wait_healthy(("qa",), timeout=300)
        qa = example.status("qa")
        assert (qa["branch"], qa["tier"]) == ("release/v2", "staging")
        with urllib.request.urlopen(f"{qa['url']}/web/health", timeout=5) as resp:
            assert resp.status == 200

        said = paste(shell, "api", example)
        assert f"{example.project}/qa is gone" in said
        assert f"{example.project}/qa is Healthy" in said
        assert re.search(r"^\s*count\s*$", said, re.MULTILINE), said  # psql's answer, then exit
        assert "(1 row)" in said
        assert "SERVING" in said and "WANTED" in said
        assert re.search(r"last pass took \d+\.\d s; [1-9]\d* passes", said), said
        assert example.status("qa")["serving"] == example.status("qa")["revision"]

        said = paste(shell, "data", example)
        assert "succeeded" in said
        assert (example.checkout / "prod.zip").stat().st_size > 0
        # Polls skipped while a pass runs are by design, not something to print.
        assert "apscheduler" not in example.daemon_log.read_text(errors="replace")
    finally:
        shell.close()
