"""Migration scripts of a module being upgraded, run as odoo/modules/migration.py runs them.

A module ships `migrations/<version>/` (or `upgrades/<version>/`) folders of Python files
named `pre-*.py` and `post-*.py`, each defining `migrate(cr, version)`. When `-u` upgrades
a module (state 'to upgrade'), the folders whose version is newer than the installed one
(`latest_version`) and not newer than the manifest's run, in version order: the pre- files
before the module's data, the post- files after it, each called with the cursor of the
module's transaction and the installed version. `0.0.0` runs on any version change (first
for pre, last for post). A version without the series ('1.1') is compared on its module
part only, so a script is never run again when only the series changes.
An exception in a script fails the module, and with it the run (see loading). Odoo's
end- scripts and --upgrade-path are not reproduced.
Each run is logged: `module NAME: Running upgrade [1.1>] post-name` ([>1.1] for pre).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from typing import Any

from odoo import SERIES

_logger = logging.getLogger("odoo.modules.migration")

FOLDERS = ("migrations", "upgrades")
# An optional series prefix ('19.0.'), then 2 or 3 numbers ('0.0.0' included).
VERSION_RE = re.compile(r"^(\d+\.0\.)?\d+\.\d+(\.\d+)?$", re.ASCII)
FORMATS = {"pre": "[>{}]", "post": "[{}>]"}


def _parse(version: str) -> tuple[int, ...]:
    """A comparable version: its numbers without trailing zeros ('1.0' == '1.0.0')."""
    parts = [int(part) for part in version.split(".") if part.isdigit()]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _full(version: str) -> str:
    """A folder's version with the series, as Odoo's convert_version spells it."""
    if version == "0.0.0" or version.count(".") > 2:
        return version
    return f"{SERIES}.{version}"


def applies(folder: str, installed: str, current: str) -> bool:
    """Whether scripts of `folder` run when upgrading from `installed` to `current`."""
    if folder == "0.0.0":
        return _parse(installed) < _parse(current)
    full = _full(folder)
    if full != folder:  # series-less: compare the module part only
        return _module_part(installed) < _module_part(full) <= _module_part(current)
    return _parse(installed) < _parse(full) <= _parse(current)


def _module_part(version: str) -> tuple[int, ...]:
    """'19.0.1.1' -> (1, 1): the version without its series."""
    return _parse(".".join(version.split(".")[2:]))


def _folders(path: str) -> dict[str, list[str]]:
    """Version folder -> its Python files, over migrations/ and upgrades/."""
    found: dict[str, list[str]] = {}
    for root in (os.path.join(path, name) for name in FOLDERS):
        if not os.path.isdir(root):
            continue
        for version in os.listdir(root):
            full = os.path.join(root, version)
            if not os.path.isdir(full) or version == "tests":
                continue
            if not VERSION_RE.match(version):
                _logger.warning("Invalid version for upgrade script %r", full)
                continue
            files = [os.path.join(full, f) for f in os.listdir(full) if f.endswith(".py")]
            found.setdefault(version, []).extend(files)
    return found


def _ordered(versions: list[str], stage: str) -> list[str]:
    """Version order; 0.0.0 first for pre, last otherwise."""
    ordered = sorted((v for v in versions if v != "0.0.0"), key=lambda v: _parse(_full(v)))
    if "0.0.0" in versions:
        ordered = ["0.0.0", *ordered] if stage == "pre" else [*ordered, "0.0.0"]
    return ordered


def migrate_module(cr: Any, name: str, path: str, stage: str, installed: str, current: str) -> None:
    """Run the `stage` scripts of module `name` (at `path`) for an upgrade installed -> current."""
    folders = _folders(path)
    for version in _ordered(list(folders), stage):
        if not applies(version, installed, current):
            continue
        scripts = (f for f in folders[version] if os.path.basename(f).startswith(f"{stage}-"))
        for script in sorted(scripts, key=os.path.basename):
            exec_script(cr, installed, script, name, stage, version)


def exec_script(cr: Any, installed: str, pyfile: str, addon: str, stage: str, version: str) -> None:
    """Import one script and call its migrate(cr, installed_version)."""
    script = os.path.splitext(os.path.basename(pyfile))[0]
    spec = importlib.util.spec_from_file_location(
        f"odoo.upgrade.{addon}.{version}.{script}", pyfile
    )
    assert spec and spec.loader, f"no script at {pyfile}"
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError as exc:
        raise ImportError(f"module {addon}: Unable to load {stage}-upgrade file {pyfile}") from exc
    if not hasattr(mod, "migrate"):
        raise AttributeError(
            f"module {addon}: Each {stage}-upgrade file must have a"
            f' "migrate(cr, installed_version)" function, not found in {pyfile}'
        )
    fmt_version = FORMATS[stage].format(version)
    _logger.info("module %s: Running upgrade %s %s", addon, fmt_version, script)
    mod.migrate(cr, installed)
