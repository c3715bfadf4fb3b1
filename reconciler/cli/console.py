"""The CLI's two consoles (stdout and stderr), shared by every command module.

On a terminal rich follows its width. Piped (scripts, CI logs) there is no width to follow:
``COLUMNS`` inherited from a shell describes some terminal, not the reader, and a table cut to
it ends names in "…", which no script can use. So piped output is at least 220 columns wide.
Errors are printed with soft wrapping: a remediation is a command to copy, and a newline rich
put into it would break the copy.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

from reconciler.core.errors import OdooOpsError

PIPED_WIDTH = 220


def _width() -> int | None:
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return max(PIPED_WIDTH, int(columns)) if columns.isdigit() else PIPED_WIDTH


out = Console(width=_width())
err = Console(stderr=True, width=_width())


def print_error(error: OdooOpsError) -> None:
    """Code, message and remediation on stderr, each line whole."""
    err.print(error.render(), markup=False, highlight=False, soft_wrap=True)
