"""What an ``odoo -i``/``-u`` left in the database, judged: exit code 0 does not mean installed.

Real Odoo 19 exits 0 when it leaves a module out: a ``__manifest__.py`` that does not parse is
logged at DEBUG and the module is invisible (no ``ir_module_module`` row), a manifest version
of another series (``18.0.1.0.0``) makes it ``uninstallable`` with a warning, ``-i`` of an
unknown name logs "invalid module names, ignored". And an update commits module by module: one
that fails part-way leaves the modules before it updated, resets the pending states and sets
``base.partially_updated_database``. So a step is judged by what the database says, read after
every run; the log lines that name a module left out are kept to say why.

Pure: ``reconciler.data.database.modules`` reads the snapshot, the engine's steps decide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "PARTIAL_KEY",
    "ModuleProblem",
    "ModuleSnapshot",
    "explaining_lines",
    "problems",
]

PARTIAL_KEY = "base.partially_updated_database"
TRANSIENT = ("to install", "to upgrade", "to remove")
MAX_LINES = 12

_WHY = {
    None: "Odoo does not know it: its __manifest__.py does not parse (Odoo 19 says so only at "
    "DEBUG level) or it is not on the addons path",
    "uninstallable": "not installable: its manifest says installable: False, or its version "
    "is not of series 19.0 (such as 18.0.1.0.0)",
    "uninstalled": "not installed: a dependency is missing or could not be installed",
}
# Lines that explain without naming a module (Odoo prints the module list on another line).
_GENERAL = re.compile(
    r"invalid module names|incompatible version|Failed to initialize|not available in your "
    r"system|Some modules are not loaded|no such directory|invalid addons directory|MemoryError"
)


@dataclass(frozen=True)
class ModuleSnapshot:
    """The module table as a run left it."""

    states: Mapping[str, str]  # ir_module_module: name -> state
    partially_updated: bool  # base.partially_updated_database is set


@dataclass(frozen=True)
class ModuleProblem:
    name: str
    state: str | None  # None: no row at all
    why: str

    def __str__(self) -> str:
        return f"{self.name} ({self.state or 'unknown to Odoo'}): {self.why}"


def problems(snapshot: ModuleSnapshot, wanted: Iterable[str]) -> list[ModuleProblem]:
    """Every wanted module not ``installed``, and any module left in a transient state."""
    wanted = list(dict.fromkeys(wanted))
    found: list[ModuleProblem] = []
    for name in wanted:
        state = snapshot.states.get(name)
        if state == "installed":
            continue
        if state in TRANSIENT:
            why = f"left '{state}': the run stopped before it"
        else:
            why = _WHY.get(state, f"in state '{state}'")
        found.append(ModuleProblem(name, state, why))
    for name, state in sorted(snapshot.states.items()):
        if state in TRANSIENT and name not in wanted:
            found.append(ModuleProblem(name, state, f"left '{state}': the run stopped before it"))
    return found


def explaining_lines(logs: str, names: Sequence[str]) -> list[str]:
    """The log lines (warnings and worse, or naming one of ``names``) that say why, at most
    ``MAX_LINES``, the last ones when there are more."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b") if names else None
    picked = [
        line.rstrip()
        for line in logs.splitlines()
        if _GENERAL.search(line)
        or (
            pattern is not None
            and pattern.search(line)
            and re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)
        )
    ]
    return picked[-MAX_LINES:]
