"""The command line every benchmark shares: its options, ``--quick``, and how a run stops.

Every ``bench/*.py`` whose name does not start with ``_`` is a benchmark, and `make test` runs
each one with ``--quick`` (``tests/integration/test_benches.py``), so one that no longer starts
on today's code fails the suite instead of rotting until someone needs its figures. ``--quick``
keeps the shape of a run (every part, every figure, every ratio) on small data, so that smoke
run exercises the same code as a full one; only the full run's figures are worth quoting.

A benchmark runs as ``python bench/NAME.py``, which puts ``bench/`` and not the repository root
first on ``sys.path``: each one adds the root itself before importing this module.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import NoReturn, TypeVar

T = TypeVar("T")


def count(text: str) -> int:
    """An ``argparse`` type for sizes and counts: a whole number of at least 1.

    Zero or a negative size would not fail at once but far into a run, after minutes of
    generating data, or divide by zero in a ratio; argparse says so before anything starts.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: at least 1")
    return value


class Options:
    """A benchmark's options: ``--quick`` and sizes whose default depends on it.

    A size given on the command line wins over both defaults, so ``--quick --size-mb 64``
    is a quick run on 64 MB.
    """

    def __init__(self, doc: str | None, quick: str) -> None:
        self.parser = argparse.ArgumentParser(description=title(doc))
        self.parser.add_argument("--quick", action="store_true", help=quick)
        self._sizes: dict[str, tuple[int, int]] = {}

    def size(self, flag: str, full: int, quick: int, help: str) -> None:
        """An option whose default is ``full``, or ``quick`` with ``--quick``."""
        action = self.parser.add_argument(
            flag,
            type=count,
            default=None,
            help=f"{help} (default {full:,}; {quick:,} with --quick)",
        )
        self._sizes[action.dest] = (full, quick)

    def parse(self, argv: Sequence[str] | None) -> argparse.Namespace:
        args = self.parser.parse_args(argv)
        for dest, (full, quick) in self._sizes.items():
            if getattr(args, dest) is None:
                setattr(args, dest, quick if args.quick else full)
        return args


def title(doc: str | None) -> str:
    """The first paragraph of a module's docstring: what the benchmark measures."""
    return doc.split("\n\n")[0].strip() if doc else ""


def run_main(main: Callable[[], int], interrupted: str) -> NoReturn:
    """Run a benchmark's ``main`` as the script, and exit with its code.

    SIGTERM is turned into Ctrl-C before ``main`` starts, so the ``finally`` clean-ups of a
    run (containers, databases, servers, temporary files) run on ``kill`` too; a run cut short
    either way exits 130 and prints ``interrupted`` (what was cleaned up), not a traceback.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"\ninterrupted ({interrupted})", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Ignore Ctrl-C while cleaning up: a second one would leave half the objects behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``fn`` took, and what it returned."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def verdict(ok: bool) -> str:
    """The word every summary line uses for an aim."""
    return "MET" if ok else "NOT MET"
