"""Which modules Odoo loads and in what order (odoo/modules/module_graph.py of Odoo 19).

The graph holds the modules named (by their state in ir_module_module) that Odoo can load,
sorted by (phase, depth, name): depth is the longest chain of dependencies down to base;
base is phase 0, and in an update a module whose state ('to install' or not) differs from
one of its dependencies' comes in a later phase, so new dependencies are installed before
the modules upgraded onto them. A module that cannot be loaded is left out with Odoo's line:
- no installable manifest (none, unparsable, another series):
  WARNING "module NAME: not installable, skipped";
- a dependency outside the graph: INFO "module NAME: some depends are not loaded, skipped";
- a dependency left out: INFO "module NAME: its direct/indirect dependency is skipped, skipped".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from odoo.modules import Module

_logger = logging.getLogger("odoo.modules.module_graph")


@dataclass(frozen=True)
class Node:
    """A module of the graph with its row as it was when the graph was built."""

    name: str
    module: Module
    state: str
    installed_version: str


def _loadable(mods: dict[str, Module], names: Collection[str]) -> dict[str, Module]:
    """The named modules with an installable manifest whose dependencies are loadable too."""
    kept: dict[str, Module] = {}
    for name in sorted(names):
        mod = mods.get(name)
        if mod is None or not mod.installable:
            _logger.warning("module %s: not installable, skipped", name)
        else:
            kept[name] = mod
    while unmet := [n for n, mod in kept.items() if not set(mod.depends) <= set(kept)]:
        for name in unmet:
            if set(kept[name].depends) & set(names):
                _logger.info("module %s: its direct/indirect dependency is skipped, skipped", name)
            else:
                _logger.info("module %s: some depends are not loaded, skipped", name)
            del kept[name]
    return kept


def build(cr: Any, mods: dict[str, Module], names: Collection[str], update: bool) -> list[Node]:
    """The loadable modules among `names`, in Odoo's loading order."""
    kept = _loadable(mods, names)
    cr.execute(
        "SELECT name, state, latest_version FROM ir_module_module WHERE name = ANY(%s)",
        (list(kept),),
    )
    rows = {name: (state, version or "") for name, state, version in cr.fetchall()}
    nodes = {name: Node(name, mod, *rows[name]) for name, mod in kept.items()}

    @functools.cache
    def depth(name: str) -> int:
        return max((depth(dep) + 1 for dep in nodes[name].module.depends), default=0)

    @functools.cache
    def phase(name: str) -> int:
        if name == "base":
            return 0
        if not update:
            return 1
        node = nodes[name]
        return max(
            phase(dep)
            + ((node.state == "to install") != (nodes[dep].state == "to install"))
            + (dep == "base")
            for dep in node.module.depends
        )

    return sorted(nodes.values(), key=lambda node: (phase(node.name), depth(node.name), node.name))
