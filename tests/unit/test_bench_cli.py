"""The benchmarks' shared command line: ``--quick`` sizes, refused counts, and how a run stops."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from bench._cli import Options, run_main, title

DOC = """What this benchmark measures.

More that the help need not say."""


def options() -> Options:
    opts = Options(DOC, "small data")
    opts.size("--size-mb", 1024, 24, "source size in MB")
    opts.size("--files", 2000, 60, "filestore files")
    return opts


@pytest.mark.parametrize(
    ("argv", "size_mb", "files"),
    [
        ([], 1024, 2000),
        (["--quick"], 24, 60),
        (["--quick", "--size-mb", "64"], 64, 60),
        (["--files", "10"], 1024, 10),
    ],
)
def test_sizes_follow_quick_unless_given(argv: list[str], size_mb: int, files: int) -> None:
    args = options().parse(argv)
    assert (args.size_mb, args.files) == (size_mb, files)


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_a_size_below_one_or_not_a_whole_number_is_refused_before_the_run(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        options().parse(["--size-mb", value])
    assert exit_info.value.code == 2
    assert "--size-mb" in capsys.readouterr().err


def test_help_describes_the_benchmark_by_its_first_paragraph() -> None:
    assert title(DOC) == "What this benchmark measures."
    assert options().parser.description == "What this benchmark measures."
    assert "default 1,024; 24 with --quick" in options().parser.format_help()


@pytest.fixture
def restore_sigterm() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_run_main_exits_with_mains_code(restore_sigterm: None) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: 0, "nothing to clean")
    assert exit_info.value.code == 0


def test_sigterm_runs_the_clean_up_and_exits_130(
    restore_sigterm: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM unwinds ``main`` like Ctrl-C, so its ``finally`` removes what it created."""
    cleaned: list[str] = []

    def main() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the run")
        finally:
            cleaned.append("done")

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, "servers stopped")
    assert exit_info.value.code == 130
    assert cleaned == ["done"]
    assert "interrupted (servers stopped)" in capsys.readouterr().err
