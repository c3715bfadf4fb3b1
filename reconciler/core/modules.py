"""What an ``odoo -i``/``-u`` left in the database, judged: exit code 0 does not mean installed.

Real Odoo 19 exits 0 when it leaves a module out: a ``__manifest__.py`` that does not parse is
logged at DEBUG and the module is invisible (no ``ir_module_module`` row), a manifest version
of another series (``18.0.1.0.0``) makes it ``uninstallable`` with a warning, ``-i`` of an
unknown name logs "invalid module names, ignored". And an update commits module by module: one
that fails part-way leaves the modules before it updated, resets the pending states and sets
``base.partially_updated_database``. So a step is judged by what the database says, read after
every run; the log lines that name a module left out are kept to say why.

Real Odoo sets ``base.partially_updated_database`` only when a run that succeeded leaves
modules pending (the next start would go on with them, with whatever code it runs); a run
that fails resets the pending states instead, so a half-updated database is seen by comparing
each module's ``latest_version`` before and after.

Pure: ``reconciler.data.database.modules`` reads the snapshot, the engine's steps decide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
RECORD_LINES = 4  # of a record on several lines (a traceback is not read whole)
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")

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
    versions: Mapping[str, str] = field(default_factory=dict)  # name -> latest_version

    def advanced(self, before: ModuleSnapshot) -> list[str]:
        """Modules whose recorded version moved since ``before``: the ones a failed run
        committed before it stopped (Odoo commits module by module)."""
        return sorted(
            name
            for name, version in self.versions.items()
            if name in before.versions and before.versions[name] != version
        )


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
    """The log records (warnings and worse naming one of ``names``, or saying why in general)
    that explain a run, at most ``MAX_LINES`` lines, the last ones when there are more.

    A record is a line that starts with Odoo's timestamp and the lines after it that do not
    (a message on several lines, such as "You try to install module 'x' that depends on
    module 'y'. / But the latter module is not available", or a traceback, cut short).
    """
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b") if names else None
    picked: list[str] = []
    for record in _records(logs):
        text = "\n".join(record)
        serious = _LEVEL.search(record[0]) is not None
        if _GENERAL.search(text) or (serious and pattern is not None and pattern.search(text)):
            picked.extend(_shortened(record))
    return picked[-MAX_LINES:]


def _shortened(record: list[str]) -> list[str]:
    """A record's first line and the message at the end of its traceback, if any (the
    indented frames and the "Traceback" header say nothing a user can act on)."""
    said = [
        line.rstrip()
        for line in record[1:]
        if line.strip() and not line.startswith((" ", "\t", "Traceback (most recent call"))
    ]
    return [record[0].rstrip(), *said[-(RECORD_LINES - 1) :]]


def _records(logs: str) -> list[list[str]]:
    records: list[list[str]] = []
    for line in logs.splitlines():
        if _STAMP.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return records


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
