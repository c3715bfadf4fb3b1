"""Every benchmark still runs: each ``bench/*.py`` but the ``_*.py`` helpers, with ``--quick``.

Benchmarks assert nothing, so nothing else notices when one stops starting on today's code
(``api_latency.py`` did not start for a whole layout change). This is a smoke run, not a timed
assertion: it fails on a crash, meaning a non-zero exit or a traceback in the output (a thread
or a spawned server that died without stopping the run prints one and the run may still exit
0), and it leaves the figures and their verdicts alone. They are printed: ``pytest -rP`` or
``-s`` shows them. A new benchmark is run by its name alone, with no edit here.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
HUNG = 600.0  # seconds: a hung run, not a slow one; --quick runs take well under a minute
TRACEBACK = "Traceback (most recent call last)"


def benchmarks(folder: Path = BENCH) -> list[Path]:
    """The benchmarks of ``folder``: every ``*.py`` whose name does not start with ``_``."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def smoke(script: Path, hung: float = HUNG) -> tuple[str, str | None]:
    """Run ``script --quick`` from the repository root: its output, and what went wrong if
    anything did (None when it ran through).

    A run still going after ``hung`` seconds gets SIGTERM first, which the benchmarks turn
    into Ctrl-C so that their clean-up removes what they created; SIGKILL only if that hangs.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=hung)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        return output, f"still running after {hung:.0f} s: stopped"
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        return output, f"exited {proc.returncode} after {seconds:.0f} s"
    if TRACEBACK in output:
        return output, f"printed a traceback, though it exited 0 after {seconds:.0f} s"
    return output + f"\n[{script.name} --quick: {seconds:.1f} s]\n", None


def test_benchmarks_are_found_by_name() -> None:
    """The naming rule finds the benchmarks and leaves the helper modules out."""
    names = {p.name for p in benchmarks()}
    assert {"plan_scale.py", "api_latency.py", "db_copy.py", "backup.py"} <= names
    assert not {"_cli.py", "_odoo_db.py"} & names


def test_a_new_benchmark_is_picked_up_and_a_helper_is_not(tmp_path: Path) -> None:
    for name in ("_helper.py", "new_bench.py", "README.md"):
        (tmp_path / name).write_text("")
    assert benchmarks(tmp_path) == [tmp_path / "new_bench.py"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("print('figures')", None),
        ("raise SystemExit('PostgreSQL is unreachable')", "exited 1"),
        ("import sys; sys.exit(130)", "exited 130"),
        (
            "import threading; t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()",
            "printed a traceback",
        ),
    ],
    ids=["runs-through", "exits-non-zero", "interrupted", "traceback-in-a-thread"],
)
def test_smoke_reports_crashes_only(tmp_path: Path, body: str, problem: str | None) -> None:
    script = tmp_path / "bench.py"
    script.write_text(f"import sys\nassert sys.argv[1:] == ['--quick']\n{body}\n")
    _, found = smoke(script)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_smoke_stops_a_hung_run_with_sigterm_first(tmp_path: Path) -> None:
    """A hung benchmark gets SIGTERM, so its ``finally`` clean-up runs, before any SIGKILL."""
    script = tmp_path / "bench.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('cleaned up'), sys.exit(130)))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    output, found = smoke(script, hung=1.0)
    assert found is not None and found.startswith("still running after 1 s")
    assert "cleaned up" in output


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("script", benchmarks(), ids=lambda p: p.stem)
def test_benchmark_runs_quick(
    script: Path, docker_engine: object, postgres_server: None, images: dict[str, str]
) -> None:
    """``--quick`` runs through on today's code; its figures are printed, never asserted."""
    output, problem = smoke(script)
    print(output)
    assert problem is None, f"bench/{script.name} --quick {problem}:\n{output[-4000:]}"
