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
    "UpdatePlan",
    "applied",
    "explaining_lines",
    "problems",
    "update_plan",
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


# ---------------------------------------------------------------------- which to update


@dataclass(frozen=True)
class UpdatePlan:
    """What an update runs: ``-i`` for wanted modules not installed yet, ``-u`` for installed
    modules whose code changed; nothing at all when neither (a code-only deploy)."""

    install: tuple[str, ...]
    update: tuple[str, ...]
    why: str

    @property
    def empty(self) -> bool:
        return not self.install and not self.update

    def args(self) -> list[str]:
        out: list[str] = []
        if self.install:
            out += ["-i", ",".join(self.install)]
        if self.update:
            out += ["-u", ",".join(self.update)]
        return out

    def __str__(self) -> str:
        parts = [f"-i {','.join(self.install)}"] if self.install else []
        parts += [f"-u {','.join(self.update)}"] if self.update else []
        return f"{' '.join(parts) or 'no module to update'} ({self.why})"


def applied(
    addons: Mapping[str, str], base_image_id: str, wanted: Iterable[str]
) -> dict[str, object]:
    """What the ledger keeps after a successful ``-i``/``-u``: the tree id of each app addon,
    the base image, and the modules that were wanted."""
    return {"addons": dict(addons), "base": base_image_id, "wanted": sorted(set(wanted))}


def update_plan(
    recorded: Mapping[str, object] | None,
    addons: Mapping[str, str],
    base_image_id: str,
    wanted: Sequence[str],
    installed: Iterable[str] | None = None,
) -> UpdatePlan:
    """Which modules to install and update, from git alone.

    An app addon whose folder's tree id differs from the one recorded at the last successful
    update changed; a wanted module that is not installed (``installed``, when the database
    was read; else: not wanted last time) is new. A new base image (Odoo itself changed), or
    nothing recorded (a database updated before the platform kept hashes), updates every
    wanted module, as before.
    """
    own = [m for m in wanted if m != "base"] or ["base"]
    old_addons = recorded.get("addons") if recorded else None
    if not isinstance(old_addons, Mapping) or recorded is None:
        return UpdatePlan(tuple(own), tuple(own), "no module hashes recorded yet")
    if recorded.get("base") != base_image_id:
        return UpdatePlan(tuple(own), tuple(own), "the Odoo base image changed")
    old_wanted = recorded.get("wanted")
    have = (
        set(installed)
        if installed is not None
        else set(old_wanted if isinstance(old_wanted, list) else ())
    )
    install = tuple(m for m in wanted if m not in have)
    changed = sorted(
        name
        for name, tree in addons.items()
        if name in have and old_addons.get(name) != tree and name not in install
    )
    why = "changed since the last update" if changed else "new modules" if install else ""
    return UpdatePlan(install, tuple(changed), why or "no addon changed")
