"""Addons paths and manifests, as odoo/modules/module.py (Odoo 19) reads them.

- A module is a directory holding `__manifest__.py`, a Python literal read with
  ast.literal_eval. A manifest that does not parse is logged at DEBUG only ("Failed to parse
  the manifest file at ...") and the directory is not a module: no row in ir_module_module,
  and `-i` of its name is an unknown name. A later addons path may then provide the name.
- The first addons path holding a (parsable) module wins; Odoo's own addons come first.
- `depends` defaults to ['base'] for every module but base.
- `version` is adapted to the series: with 2 or 3 parts and not starting with it, it gets
  the series as a prefix ('1.0' -> '19.0.1.0'); 4 or 5 parts are kept. A version that does
  not then start with '19.0.' ('18.0.1.0.0') makes the module `installable=False` with a
  WARNING "The module NAME has an incompatible version, setting installable=False"; Odoo
  still lists it, as 'uninstallable'. A version that is no version at all (not 2 to 5
  integers) is an error: "Module NAME: invalid manifest".
- `post_init_hook` names a function of the module's Python package; Odoo imports every
  module it loads, the stand-in imports one only to call its hook (it has no ORM, so the
  packages of real addons would not import).
- `external_dependencies` ({"python": [...], "bin": [...], "apt": {name: package}}) is checked
  by check_manifest_dependencies when a module is marked to install or upgrade (loading.py):
  each python entry is a requirement; its distribution is looked up with
  importlib.metadata.version (so on sys.path, PYTHONPATH included) and, when there is none,
  imported as a module name (WARNING "... does not appear o be a valid PyPI package ...",
  Odoo's typo kept); when both fail it is MissingDependency "External dependency 'NAME' not
  installed: ...". A version specifier or marker needs the `packaging` package: without it
  (as in this image) only bare names are accepted, as Odoo 19 does. A bin entry must be on
  PATH.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from odoo import SERIES

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # Odoo 19's fallback: without packaging, bare names only

    class InvalidRequirement(Exception):  # type: ignore[no-redef]
        """Never raised: the fallback Requirement raises a plain Exception."""

    class Requirement:  # type: ignore[no-redef]
        def __init__(self, pydep: str) -> None:
            if not re.fullmatch(r"[\w\-]+", pydep):
                msg = (
                    f"Package `packaging` is required to parse `{pydep}` external dependency"
                    " and is not installed"
                )
                raise Exception(msg)
            self.marker = None
            self.specifier = None
            self.name = pydep


_logger = logging.getLogger("odoo.modules.module")

CORE_ADDONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addons")
MANIFEST = "__manifest__.py"
DEFAULTS: dict[str, Any] = dict(author="Odoo S.A.", application=False, auto_install=False)
DEFAULTS.update(depends=[], installable=True, license="LGPL-3", version="1.0")
DEFAULTS.update(post_init_hook="", external_dependencies={})


@dataclass(frozen=True)
class Module:
    """One module found on the addons path."""

    name: str
    path: str
    manifest: dict[str, Any] = field(hash=False)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def installable(self) -> bool:
        return bool(self.manifest["installable"])

    @property
    def depends(self) -> list[str]:
        return list(self.manifest["depends"])

    @property
    def triggers(self) -> set[str] | None:
        """What auto-installs the module: its depends, or the listed ones; None: opt-in."""
        flag = self.manifest["auto_install"]
        if not flag:
            return None
        return set(flag if isinstance(flag, list | tuple | set) else self.depends)

    def data_file(self, name: str) -> str | None:
        """`data/<name>` of the module (install.sql, demo.sql, neutralize.sql), if shipped."""
        path = os.path.join(self.path, "data", name)
        return path if os.path.isfile(path) else None


def adapt_version(version: str) -> str:
    """Odoo 19's rule: 2 to 5 integers; up to 3 parts not starting with the series get it."""
    parts = version.split(".")
    if not 2 <= len(parts) <= 5 or not all(part.isdigit() for part in parts):
        raise ValueError(f"Invalid version {version!r}, must have between 2 and 5 parts")
    if len(parts) <= 3 and not version.startswith(SERIES):
        return f"{SERIES}.{version}"
    return version


def check_version(version: str) -> bool:
    """A version this series can install: it starts with '19.0.' once adapted."""
    return adapt_version(version).startswith(SERIES + ".")


def is_addons_dir(path: str) -> bool:
    """Odoo's test for an addons path: a subdirectory holds __init__.py and __manifest__.py."""
    return any(
        all(os.path.isfile(os.path.join(path, entry, name)) for name in ("__init__.py", MANIFEST))
        for entry in os.listdir(path)
    )


def _read_manifest(path: str) -> dict[str, Any] | None:
    """The literal in __manifest__.py, or None when there is none or it does not parse."""
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as handle:
            return dict(ast.literal_eval(handle.read()))
    except OSError:
        return None
    except Exception:
        _logger.debug("Failed to parse the manifest file at %r", path, exc_info=True)
        return None


def _complete(name: str, content: dict[str, Any]) -> dict[str, Any]:
    """Odoo's defaults, the implicit dependency on base and the checked version."""
    manifest = {**DEFAULTS, **content}
    if name != "base" and not manifest["depends"]:
        manifest["depends"] = ["base"]
    try:
        manifest["version"] = adapt_version(str(manifest["version"]))
    except ValueError as exc:
        if manifest["installable"]:
            raise ValueError(f"Module {name}: invalid manifest") from exc
    if manifest["installable"] and not check_version(str(manifest["version"])):
        _logger.warning(
            "The module %s has an incompatible version, setting installable=False", name
        )
        manifest["installable"] = False
    return manifest


def discover(paths: list[str]) -> dict[str, Module]:
    """Every module on the addons paths (installable or not), by name; the first path wins."""
    found: dict[str, Module] = {}
    for root in paths:
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name in found or not os.path.isdir(path):
                continue
            content = _read_manifest(path)
            if content is not None:
                found[name] = Module(name, path, _complete(name, content))
    return found


def find(paths: list[str], name: str) -> str | None:
    """The directory of module `name` in the first addons path holding it."""
    found = (os.path.join(root, name) for root in paths)
    return next((path for path in found if os.path.isfile(os.path.join(path, MANIFEST))), None)


class MissingDependency(Exception):
    """An external dependency of a manifest that is not met, and its name."""

    def __init__(self, msg_template: str, dependency: str) -> None:
        self.dependency = dependency
        super().__init__(msg_template.format(dependency=dependency))


def check_python_external_dependency(pydep: str) -> None:
    """Odoo 19's check of one `external_dependencies['python']` entry; raises when unmet."""
    try:
        requirement = Requirement(pydep)
    except InvalidRequirement as e:
        msg = f"{pydep} is an invalid external dependency specification: {e}"
        raise ValueError(msg) from e
    if requirement.marker and not requirement.marker.evaluate():
        _logger.debug(
            "Ignored external dependency %s because environment markers do not match", pydep
        )
        return
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError as e:
        try:
            importlib.import_module(pydep)  # a module name rather than a distribution's
            _logger.warning(
                "python external dependency on '%s' does not appear o be a valid PyPI package."
                " Using a PyPI package name is recommended.",
                pydep,
            )
            return
        except ImportError:
            pass
        msg = f"External dependency {{dependency!r}} not installed: {e}"
        raise MissingDependency(msg, pydep) from e
    if requirement.specifier and not requirement.specifier.contains(version):
        msg = f"External dependency version mismatch: {{dependency}} (installed: {version})"
        raise MissingDependency(msg, pydep)


def check_manifest_dependencies(manifest: dict[str, Any]) -> None:
    """The python and bin entries of `external_dependencies`, in Odoo's order."""
    depends = manifest.get("external_dependencies")
    if not depends:
        return
    for pydep in depends.get("python", []):
        check_python_external_dependency(pydep)
    for binary in depends.get("bin", []):
        if shutil.which(binary) is None:
            raise MissingDependency("Unable to find {dependency!r} in path", binary)


def import_addon(mod: Module) -> ModuleType:
    """The module's Python package as `odoo.addons.<name>`, imported once per process."""
    qualname = f"odoo.addons.{mod.name}"
    if qualname in sys.modules:
        return sys.modules[qualname]
    init = os.path.join(mod.path, "__init__.py")
    spec = importlib.util.spec_from_file_location(
        qualname, init, submodule_search_locations=[mod.path]
    )
    assert spec and spec.loader, f"no package at {init}"
    package = importlib.util.module_from_spec(spec)
    sys.modules[qualname] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        del sys.modules[qualname]
        raise
    return package
