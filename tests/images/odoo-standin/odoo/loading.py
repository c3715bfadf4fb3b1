"""Opening a database: initialisation, module installation (-i) and update (-u).

Reproduces odoo/modules/loading.py as seen from outside:
- a database that is not initialised gets base when -d just created it or when -i/-u is
  given; otherwise Odoo only logs "Database X not initialized, you can force it with `-i base`";
- initialisation lists every module of the addons paths in ir_module_module and installs
  the auto_install ones whose dependencies are met (base, then web);
- with -i/-u the module list is refreshed first ("updating modules list"), which reads every
  manifest; -i installs the named modules with their `depends`, recursively, then every
  auto_install module now satisfied; a name that is not on the addons paths is a WARNING
  "invalid module names, ignored" and the run still succeeds;
- -u (`all` for every installed module) refreshes latest_version from the manifests of the
  named installed modules and of every installed module that depends on them;
- installing a module runs its data/install.sql, then data/demo.sql when the database has
  demo data: Odoo 19 loads demo data only for databases created with --with-demo;
- base writes the company logo to the content-addressed filestore
  `<data_dir>/filestore/<db>/<sha1[:2]>/<sha1>` (and marks it in `checklist/` for the GC).
The stand-in does it all in one transaction, committed at the end.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from odoo import logs, sql_db
from odoo.config import addons_paths, names
from odoo.modules import Module, available

_logger = logging.getLogger("odoo.modules.loading")


class MissingDependency(Exception):
    """A module to install depends on a module that is not on the addons paths."""


def load(config: Any, dbname: str, created: bool) -> None:
    """Open `dbname` as Odoo's registry does, applying -i and -u; raises on any failure."""
    logs.use_database(dbname)
    started = time.time()
    conn = sql_db.connect(config, dbname)
    try:
        with conn, conn.cursor() as cr:
            _load(cr, config, dbname, created)
    finally:
        conn.close()
    logging.getLogger("odoo.registry").info("Registry loaded in %.3fs", time.time() - started)


def _load(cr: Any, config: Any, dbname: str, created: bool) -> None:
    init, update = names(config["init"]), names(config["update"])
    if not sql_db.is_initialized(cr):
        if not (created or init or update):
            _logger.error("Database %s not initialized, you can force it with `-i base`", dbname)
            return
        _logger.info("init db")
        mods = available(addons_paths(config))
        _initialize(cr, mods, demo=bool(config["with_demo"]))
    elif init or update:
        _logger.info("updating modules list")
        mods = available(addons_paths(config))
        _update_list(cr, mods)
    else:
        cr.execute("SELECT count(*) FROM ir_module_module WHERE state = 'installed'")
        _logger.info("loading %d modules...", cr.fetchone()[0])
        _logger.info("Modules loaded.")
        return

    cr.execute("SELECT name, state FROM ir_module_module")
    states = dict(cr.fetchall())
    if invalid := [name for name in init + update if name != "all" and name not in states]:
        _logger.warning("invalid module names, ignored: %s", ", ".join(invalid))
    installed = {name for name, state in states.items() if state == "installed"}
    if missing := sorted(installed - set(mods)):
        msg = "Some modules are not loaded, some dependencies or manifest may be missing: %s"
        _logger.error(msg, missing)

    wanted = {n for n, s in states.items() if s == "to install"}
    wanted |= {n for n in states if states[n] == "uninstalled" and ("all" in init or n in init)}
    to_install = _with_depends(mods, wanted) - installed
    to_install |= _with_depends(mods, _auto_install(mods, installed | to_install)) - installed
    to_update = _dependents(mods, installed, installed if "all" in update else set(update))

    cr.execute("SELECT demo FROM ir_module_module WHERE name = 'base'")
    demo = bool(cr.fetchone()[0])
    started = time.time()
    order = _order(mods, to_install)
    _logger.info("loading %d modules...", len(installed | to_install))
    for index, name in enumerate(order, 1):
        _logger.info("Loading module %s (%d/%d)", name, index, len(order))
        _install(cr, config, dbname, mods[name], demo)
    for index, name in enumerate(_order(mods, to_update - set(missing)), 1):
        _logger.info("Loading module %s (%d/%d)", name, index, len(to_update))
        cr.execute(
            "UPDATE ir_module_module SET latest_version = %s, "
            "write_date = now() AT TIME ZONE 'UTC' WHERE name = %s",
            (mods[name].version, name),
        )
    _logger.info("%d modules loaded in %.2fs", len(order) + len(to_update), time.time() - started)
    _logger.info("Modules loaded.")


def _initialize(cr: Any, mods: dict[str, Module], demo: bool) -> None:
    """Create the module registry, list the modules, mark the auto_install ones to install."""
    base_data = mods["base"].data_file("base_data.sql")
    assert base_data, "base/data/base_data.sql is part of the image"
    with open(base_data, encoding="utf-8") as handle:
        cr.execute(handle.read())
    _update_list(cr, mods)
    for name in _with_depends(mods, _auto_install(mods, set())):
        cr.execute("UPDATE ir_module_module SET state = 'to install' WHERE name = %s", (name,))
    cr.execute("UPDATE ir_module_module SET demo = %s WHERE name = 'base'", (demo,))


def _update_list(cr: Any, mods: dict[str, Module]) -> None:
    """Odoo's update_list: a row per available module, new ones 'uninstalled'."""
    for mod in mods.values():
        man = mod.manifest
        cr.execute(
            "INSERT INTO ir_module_module (name, author, shortdesc, state, auto_install,"
            " application, license) VALUES (%s, %s, jsonb_build_object('en_US', %s::text),"
            " 'uninstalled', %s, %s, %s) ON CONFLICT (name) DO UPDATE SET author = EXCLUDED.author,"
            " shortdesc = EXCLUDED.shortdesc, auto_install = EXCLUDED.auto_install RETURNING id",
            (mod.name, man["author"], man.get("name", mod.name), bool(man["auto_install"]),
             bool(man["application"]), man["license"]),
        )  # fmt: skip
        module_id = cr.fetchone()[0]
        cr.execute("DELETE FROM ir_module_module_dependency WHERE module_id = %s", (module_id,))
        cr.execute(
            "INSERT INTO ir_module_module_dependency (name, module_id)"
            " SELECT unnest(%s::varchar[]), %s",
            (mod.depends, module_id),
        )


def _with_depends(mods: dict[str, Module], wanted: set[str]) -> set[str]:
    """The modules and their dependencies, recursively."""
    result: set[str] = set()
    stack = [(name, name) for name in wanted]
    while stack:
        name, requester = stack.pop()
        if name in result:
            continue
        if name not in mods:
            raise MissingDependency(
                f"You try to install module {requester!r} that depends on module {name!r}.\n"
                "But the latter module is not available in your system."
            )
        result.add(name)
        stack.extend((dep, name) for dep in mods[name].depends)
    return result


def _auto_install(mods: dict[str, Module], chosen: set[str]) -> set[str]:
    """auto_install modules whose trigger is met by the chosen ones, to a fixpoint."""
    chosen, added = set(chosen), set()
    while ready := {n for n, mod in mods.items() if n not in chosen and mod.auto_installs(chosen)}:
        chosen |= _with_depends(mods, ready)
        added |= ready
    return added


def _dependents(mods: dict[str, Module], installed: set[str], roots: set[str]) -> set[str]:
    """Installed modules among `roots` and every installed module depending on them."""
    result = roots & installed
    while more := {n for n in installed & set(mods) if set(mods[n].depends) & result} - result:
        result |= more
    return result


def _order(mods: dict[str, Module], selected: set[str]) -> list[str]:
    """Dependencies before dependents; ties by name."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in mods[name].depends:
            if dep in selected:
                visit(dep)
        order.append(name)

    for name in sorted(selected):
        visit(name)
    return order


def _install(cr: Any, config: Any, dbname: str, mod: Module, demo: bool) -> None:
    for data in ("install.sql", "demo.sql") if demo else ("install.sql",):
        path = mod.data_file(data)
        if path:
            with open(path, encoding="utf-8") as handle:
                cr.execute(handle.read())
        if mod.name == "base" and data == "install.sql":
            _init_base(cr, config, dbname, mod)
    cr.execute(
        "UPDATE ir_module_module SET state = 'installed', latest_version = %s, demo = %s,"
        " write_date = now() AT TIME ZONE 'UTC' WHERE name = %s",
        (mod.version, demo, mod.name),
    )


def _init_base(cr: Any, config: Any, dbname: str, base: Module) -> None:
    """ir_config_parameter's generated keys and the company logo, in the filestore."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    generated = {"database.secret": uuid.uuid4(), "database.uuid": uuid.uuid1(),
                 "database.create_date": now}  # fmt: skip
    cr.execute(
        "INSERT INTO ir_config_parameter (key, value)"
        " SELECT * FROM unnest(%s::varchar[], %s::text[])",
        (list(generated), [str(value) for value in generated.values()]),
    )
    with open(os.path.join(base.path, "static", "img", "res_company_logo.png"), "rb") as handle:
        logo = handle.read()
    store_fname, checksum = write_filestore(config["data_dir"], dbname, logo)
    cr.execute(
        "INSERT INTO ir_attachment (name, res_model, res_field, res_id, company_id, type,"
        " store_fname, file_size, checksum, mimetype)"
        " VALUES ('logo', 'res.partner', 'image_1920', 1, 1, 'binary', %s, %s, %s, 'image/png')",
        (store_fname, len(logo), checksum),
    )


def write_filestore(data_dir: str, dbname: str, content: bytes) -> tuple[str, str]:
    """Store content as Odoo does: named by its sha1, never rewritten; (store_fname, sha1)."""
    checksum = hashlib.sha1(content).hexdigest()
    store_fname = f"{checksum[:2]}/{checksum}"
    root = os.path.join(data_dir, "filestore", dbname)
    full = os.path.join(root, store_fname)
    if not os.path.exists(full):
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(content)
    marker = os.path.join(root, "checklist", store_fname)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    open(marker, "ab").close()
    return store_fname, checksum
