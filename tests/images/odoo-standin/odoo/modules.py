"""Addons paths and manifests, as odoo/modules/module.py reads them.

- A module is a directory holding `__manifest__.py`, a Python literal read with
  ast.literal_eval; a manifest that does not parse raises, and since Odoo reads every
  manifest of the addons path when it updates the module list, any -i/-u then fails.
- The first addons path holding a name wins; Odoo's own addons come first.
- `version` is prefixed with the series ('1.0' -> '19.0.1.0'); `depends` defaults to
  ['base'] for every module but base; `installable: False` hides a module.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from typing import Any

from odoo import SERIES

CORE_ADDONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addons")
MANIFEST = "__manifest__.py"
DEFAULTS: dict[str, Any] = dict(author="Odoo S.A.", application=False, auto_install=False)
DEFAULTS.update(depends=[], installable=True, license="LGPL-3", version="1.0")


@dataclass(frozen=True)
class Module:
    """One module found on the addons path."""

    name: str
    path: str
    manifest: dict[str, Any] = field(hash=False)

    @property
    def version(self) -> str:
        return adapt_version(str(self.manifest["version"]))

    @property
    def depends(self) -> list[str]:
        return list(self.manifest["depends"])

    def auto_installs(self, chosen: set[str]) -> bool:
        """An auto_install module whose trigger (its depends, or the listed ones) is chosen."""
        flag = self.manifest["auto_install"]
        return bool(flag) and set(flag if isinstance(flag, list) else self.depends) <= chosen

    def data_file(self, name: str) -> str | None:
        """`data/<name>` of the module (install.sql, demo.sql, neutralize.sql), if shipped."""
        path = os.path.join(self.path, "data", name)
        return path if os.path.isfile(path) else None


def adapt_version(version: str) -> str:
    """Odoo's rule: a version not starting with the series gets it as a prefix."""
    if version == SERIES or not version.startswith(SERIES + "."):
        return f"{SERIES}.{version}"
    return version


def is_addons_dir(path: str) -> bool:
    """Odoo's test for --addons-path: the directory holds at least one module."""
    return any(os.path.isfile(os.path.join(path, entry, MANIFEST)) for entry in os.listdir(path))


def load_manifest(name: str, path: str) -> dict[str, Any]:
    """The manifest with Odoo's defaults; a syntax error propagates (a crash, as in Odoo)."""
    with open(os.path.join(path, MANIFEST), encoding="utf-8") as handle:
        manifest = {**DEFAULTS, **ast.literal_eval(handle.read())}
    if name != "base" and not manifest["depends"]:
        manifest["depends"] = ["base"]
    return manifest


def find(paths: list[str], name: str) -> str | None:
    """The directory of module `name` in the first addons path holding it."""
    found = (os.path.join(root, name) for root in paths)
    return next((path for path in found if os.path.isfile(os.path.join(path, MANIFEST))), None)


def available(paths: list[str]) -> dict[str, Module]:
    """Every installable module on the addons paths, by name; the first path wins."""
    found: dict[str, Module] = {}
    for root in paths:
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name in found or not os.path.isfile(os.path.join(path, MANIFEST)):
                continue
            manifest = load_manifest(name, path)
            if manifest["installable"]:
                found[name] = Module(name, path, manifest)
    return found
