"""Opening a database: initialisation, module installation (-i) and update (-u).

Reproduces odoo/modules/loading.py and registry.py of Odoo 19 as seen from outside:
- Opening an initialised database first deletes ir_config_parameter
  `base.partially_updated_database` in a transaction of its own; when it was there, the run
  updates modules as if -i/-u had been given, so the pending ones get loaded.
- A database that is not initialised gets base when -d just created it or when -i/-u is
  given; otherwise Odoo only logs "Database X not initialized, you can force it with `-i base`".
  Initialisation lists every module and marks base and the auto_install modules to install.
- base is loaded first (installed, or upgraded with -u base) and committed on its own, before
  anything below can fail: a failed -i on a new database leaves base installed.
- Then the module list is refreshed ("updating modules list"; modules.py says what a
  manifest makes of a module): a row per module, 'uninstalled', or 'uninstallable' when the
  manifest is not installable (another series); an unparsable manifest gets no row at all.
  A name given to -i/-u without a row is a WARNING "invalid module names, ignored: NAME".
- -i marks the named 'uninstalled' modules 'to install' with their dependencies, then the
  auto_install modules one of whose triggers is being installed (button_install). A
  dependency without a row is a UserError ("You try to install module 'a' that depends on
  module 'b'. But the latter module is not available in your system."); an 'uninstallable'
  dependency is not marked, so the module stays 'to install' and is never loaded.
- -u marks the named installed modules 'to upgrade' with every installed module depending on
  them (`all` or base: every installed module) and installs their new dependencies
  (button_upgrade); a dependency without a row is a UserError too.
- Marking checks each module's manifest `external_dependencies` (modules.py): a module marked
  'to install' (after its dependencies), and each installable module of an upgrade, whose
  python or bin dependency is unmet is the UserError 'Unable to install module "NAME"
  because an external dependency is not met: DEP' ("upgrade" for -u), with "It can be
  installed running: apt install PKG" when the manifest's `apt` entry names DEP (Debian and
  Ubuntu). The run then fails as below, the module not installed (or not upgraded).
- Then module by module in the graph's order (module_graph.py), each module to install or
  upgrade in a transaction of its own, committed at its end: pre-migration scripts
  (upgrade), data/install.sql then data/demo.sql when the database has demo data (install;
  Odoo reloads its idempotent data files on upgrade too, the stand-in's SQL is not
  idempotent and is not run again), post-migration scripts (upgrade; migration.py), the
  manifest's post_init_hook called with `env` (install), then state 'installed' and the
  manifest's version as latest_version. Modules done before a failure stay done.
- At the end: ERROR "Some modules are not loaded, some dependencies or manifest may be
  missing: [...]" for installed modules the graph left out, ERROR "Some modules have
  inconsistent states, some dependencies may be missing: [...]" for modules still 'to
  install'/'to upgrade', and then `base.partially_updated_database` = '1' so that the next
  start goes on with them. The run succeeds all the same (exit 0).
- On an exception (a missing dependency, a failing script or hook, bad SQL) the current
  module's transaction is rolled back and the pending states are reset (reset_modules_state:
  'to upgrade'/'to remove' -> 'installed', 'to install' -> 'uninstalled', WARNING
  "Transient module states were reset"); the exception goes up to the server, which logs
  CRITICAL "Failed to initialize database `DB`." with the traceback and exits 255. Odoo 19
  does not set base.partially_updated_database then: nothing is pending any more.
- base writes the company logo to the content-addressed filestore
  `<data_dir>/filestore/<db>/<sha1[:2]>/<sha1>` (and marks it in `checklist/` for the GC).
- With --test-enable (load_module_graph): right after a module is committed, its at_install
  tests selected by --test-tags run (odoo/tests, in the same process, on the current thread's
  database). When -i or -u is given (or -d just created the database, which Odoo treats as
  `-i base`), only the modules installed or upgraded by this run are tested; otherwise every
  loaded (installed) module is, in the graph's order. A module whose tests fail or err gets
  ERROR "Module MOD: F failures, E errors of N tests"; the run goes on. The load then ends
  with ERROR "At least one test failed when loading the modules." instead of INFO "Modules
  loaded.". A test module that does not import fails the load like any error (loader.py).
  The post_install tests run once every database module is loaded (cli.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2

from odoo import logs, migration, module_graph, sql_db
from odoo.api import Environment
from odoo.config import addons_paths, names
from odoo.exceptions import UserError
from odoo.modules import (
    MissingDependency,
    Module,
    check_manifest_dependencies,
    discover,
    import_addon,
)
from odoo.tests import loader
from odoo.tests.result import OdooTestResult

_logger = logging.getLogger("odoo.modules.loading")

PARTIAL_FLAG = "base.partially_updated_database"
INSTALL_STATES = ("installed", "to install", "to upgrade")
LOAD_STATES = ("installed", "to upgrade", "to remove", "to install")


@dataclass
class Registry:
    """What the server keeps of a loaded database (Odoo's Registry): the modules loaded, in
    order (_init_modules), those installed or upgraded by this run (updated_modules), whether
    the run updates modules (-i, -u, or a database -d created) and, with --test-enable, the
    report of its tests (_assertion_report)."""

    db_name: str
    update_module: bool
    assertion_report: OdooTestResult | None
    modules: dict[str, Module] = field(default_factory=dict)  # loaded, in loading order
    updated_modules: list[str] = field(default_factory=list)


def load(config: Any, dbname: str, created: bool) -> Registry:
    """Open `dbname` as Odoo's Registry.new does, applying -i and -u; raises on any failure."""
    logs.use_database(dbname)
    started = time.time()
    update_module = bool(names(config["init"]) or names(config["update"]) or created)
    report = OdooTestResult() if config["test_enable"] else None
    registry = Registry(dbname, update_module, report)
    conn = sql_db.connect(config, dbname)
    try:
        with conn.cursor() as cr:
            _load(cr, config, registry, created)
        conn.commit()
    except Exception:
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        reset_modules_state(config, dbname)
        raise
    finally:
        conn.close()
    logging.getLogger("odoo.registry").info("Registry loaded in %.3fs", time.time() - started)
    return registry


def _load(cr: Any, config: Any, registry: Registry, created: bool) -> None:
    dbname = registry.db_name
    init, update = names(config["init"]), names(config["update"])
    initialized = sql_db.is_initialized(cr)
    flagged = initialized and _take_partial_flag(cr)
    if not (created or init or update or flagged):
        if not initialized:
            _logger.error("Database %s not initialized, you can force it with `-i base`", dbname)
            return
        cr.execute("SELECT name FROM ir_module_module WHERE state = 'installed'")
        installed = [name for (name,) in cr.fetchall()]
        _logger.info("loading %d modules...", len(installed))
        if config["test_enable"]:
            mods = discover(addons_paths(config))
            for node in module_graph.build(cr, mods, installed, update=False):
                registry.modules[node.name] = node.module
                _test_module(config, registry, node.module)
        _modules_loaded(registry)
        return

    mods = discover(addons_paths(config))
    if not initialized:
        _logger.info("Initializing database %s", dbname)
        _initialize(cr, mods, demo=bool(config["with_demo"]))
    elif "base" in update or "all" in update:
        cr.execute("UPDATE ir_module_module SET state = 'to upgrade' WHERE name = 'base'")
    _load_graph(cr, config, registry, mods, ["base"])  # base first, committed on its own
    _logger.info("updating modules list")
    _update_list(cr, mods)
    _check_module_names(cr, init + update)
    _button_install(cr, mods, init)
    _button_upgrade(cr, mods, update)
    cr.execute("UPDATE ir_module_module SET state = 'installed' WHERE name = 'base'")
    cr.execute("SELECT name FROM ir_module_module WHERE state = ANY(%s)", (list(LOAD_STATES),))
    loaded = _load_graph(cr, config, registry, mods, [name for (name,) in cr.fetchall()])
    _report_leftovers(cr, loaded)
    _modules_loaded(registry)
    _flag_pending(cr)


def _modules_loaded(registry: Registry) -> None:
    """The last line of a load: whether a test failed in it."""
    report = registry.assertion_report
    if not report or report.wasSuccessful():
        _logger.info("Modules loaded.")
    else:
        _logger.error("At least one test failed when loading the modules.")


def _test_module(config: Any, registry: Registry, mod: Module) -> None:
    """Run the module's at_install tests into the database's report."""
    report = registry.assertion_report
    assert report is not None, "Missing report during tests"
    suite = loader.make_suite([mod], config, "at_install")
    if not suite.countTestCases():
        return
    results = loader.run_suite(suite, config, global_report=report)
    report.update(results)
    if not results.wasSuccessful():
        _logger.error(
            "Module %s: %d failures, %d errors of %d tests",
            mod.name, results.failures_count, results.errors_count, results.testsRun,
        )  # fmt: skip


def _take_partial_flag(cr: Any) -> bool:
    """Delete base.partially_updated_database, committed at once; whether it was there."""
    cr.execute("SELECT to_regclass('ir_config_parameter') IS NOT NULL")
    if not cr.fetchone()[0]:
        return False
    cr.execute("DELETE FROM ir_config_parameter WHERE key = %s", (PARTIAL_FLAG,))
    found = cr.rowcount > 0
    cr.connection.commit()
    return found


def _flag_pending(cr: Any) -> None:
    """Set base.partially_updated_database when modules are left in a transient state."""
    cr.execute(
        "INSERT INTO ir_config_parameter (key, value) SELECT %s, '1' WHERE EXISTS"
        " (SELECT FROM ir_module_module WHERE state IN ('to upgrade', 'to install', 'to remove'))"
        " ON CONFLICT DO NOTHING",
        (PARTIAL_FLAG,),
    )


def reset_modules_state(config: Any, dbname: str) -> None:
    """After a failed load, in a transaction of its own: no module stays 'to ...'."""
    conn = sql_db.connect(config, dbname)
    try:
        with conn, conn.cursor() as cr:
            if not sql_db.is_initialized(cr):
                _logger.info("skipping reset_modules_state, ir_module_module table does not exists")
                return
            cr.execute(
                "UPDATE ir_module_module SET state = 'installed'"
                " WHERE state IN ('to remove', 'to upgrade')"
            )
            cr.execute(
                "UPDATE ir_module_module SET state = 'uninstalled' WHERE state = 'to install'"
            )
            _logger.warning("Transient module states were reset")
    finally:
        conn.close()


# --- the module list ---------------------------------------------------------------------------


def _initialize(cr: Any, mods: dict[str, Module], demo: bool) -> None:
    """Create the module registry, list the modules, mark base and the auto_install ones."""
    base_data = mods["base"].data_file("base_data.sql")
    assert base_data, "base/data/base_data.sql is part of the image"
    with open(base_data, encoding="utf-8") as handle:
        cr.execute(handle.read())
    _update_list(cr, mods)
    _mark_install(cr, mods, _initial_auto_installs(mods))
    cr.execute("UPDATE ir_module_module SET demo = %s WHERE name = 'base'", (demo,))


def _initial_auto_installs(mods: dict[str, Module]) -> list[str]:
    """What a new database installs: base (no trigger) and the auto_install modules whose
    triggers are all installed with it, to a fixpoint."""
    chosen: set[str] = set()
    while ready := {
        name
        for name, mod in mods.items()
        if name not in chosen
        and mod.installable
        and (triggers := mod.triggers) is not None
        and triggers <= chosen
    }:
        chosen |= ready
    return sorted(chosen)


def _update_list(cr: Any, mods: dict[str, Module]) -> None:
    """Odoo's update_list: a row per module found, 'uninstalled' or 'uninstallable' when new;
    an 'uninstallable' row whose manifest became installable is 'uninstalled' again."""
    for mod in mods.values():
        man = mod.manifest
        state = "uninstalled" if mod.installable else "uninstallable"
        cr.execute(
            "INSERT INTO ir_module_module (name, author, shortdesc, state, auto_install,"
            " application, license) VALUES (%s, %s, jsonb_build_object('en_US', %s::text),"
            " %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET author = EXCLUDED.author,"
            " shortdesc = EXCLUDED.shortdesc, auto_install = EXCLUDED.auto_install,"
            " state = CASE WHEN ir_module_module.state = 'uninstallable'"
            " AND EXCLUDED.state = 'uninstalled' THEN 'uninstalled'"
            " ELSE ir_module_module.state END RETURNING id",
            (mod.name, man["author"], man.get("name", mod.name), state,
             mod.triggers is not None, bool(man["application"]), man["license"]),
        )  # fmt: skip
        module_id = cr.fetchone()[0]
        cr.execute("DELETE FROM ir_module_module_dependency WHERE module_id = %s", (module_id,))
        cr.execute(
            "INSERT INTO ir_module_module_dependency (name, module_id)"
            " SELECT unnest(%s::varchar[]), %s",
            (mod.depends, module_id),
        )


def _states(cr: Any) -> dict[str, str]:
    cr.execute("SELECT name, state FROM ir_module_module")
    return dict(cr.fetchall())


def _dependencies(cr: Any) -> dict[str, list[str]]:
    """The dependencies each row records (from its manifest at the last update_list)."""
    cr.execute(
        "SELECT m.name, d.name FROM ir_module_module_dependency d"
        " JOIN ir_module_module m ON m.id = d.module_id ORDER BY d.id"
    )
    depends: dict[str, list[str]] = {}
    for module, dependency in cr.fetchall():
        depends.setdefault(module, []).append(dependency)
    return depends


def _check_module_names(cr: Any, given: list[str]) -> None:
    """Odoo's _check_module_names: names without a row are logged and ignored."""
    states = _states(cr)
    if invalid := [name for name in dict.fromkeys(given) if name != "all" and name not in states]:
        _logger.warning("invalid module names, ignored: %s", ", ".join(invalid))


# --- marking: button_install and button_upgrade ------------------------------------------------


def check_external_dependencies(mod: Module | None, newstate: str = "to install") -> None:
    """ir.module.module.check_external_dependencies: an unmet external dependency of the
    module's manifest is a UserError naming both (none to check without a manifest)."""
    if mod is None:
        return
    try:
        check_manifest_dependencies(mod.manifest)
    except MissingDependency as e:
        verb = {"to install": "install", "to upgrade": "upgrade"}.get(newstate, "process")
        msg = (
            f'Unable to {verb} module "{mod.name}" because an external dependency is not met:'
            f" {e.dependency}"
        )
        try:
            distro = platform.freedesktop_os_release()
        except OSError:
            distro = {}
        id_likes = {distro.get("ID", ""), *distro.get("ID_LIKE", "").split()}
        if "debian" in id_likes or "ubuntu" in id_likes:
            apt = mod.manifest["external_dependencies"].get("apt", {})
            if package := apt.get(e.dependency):
                msg += f"\nIt can be installed running: apt install {package}"
        raise UserError(msg) from e


def _state_update(cr: Any, mods: dict[str, Module], name: str, states: dict[str, str],
                  depends: dict[str, list[str]], level: int = 100) -> None:  # fmt: skip
    """Mark an 'uninstalled' module and its 'uninstalled' dependencies 'to install', each
    once its external dependencies are checked."""
    if level < 1:
        raise UserError("Recursion error in modules dependencies!")
    if states.get(name) != "uninstalled":
        return
    for dependency in depends.get(name, []):
        if dependency not in states:
            raise UserError(
                f"You try to install module {name!r} that depends on module {dependency!r}.\n"
                "But the latter module is not available in your system."
            )
        _state_update(cr, mods, dependency, states, depends, level - 1)
    check_external_dependencies(mods.get(name), "to install")
    cr.execute("UPDATE ir_module_module SET state = 'to install' WHERE name = %s", (name,))
    states[name] = "to install"


def _mark_install(cr: Any, mods: dict[str, Module], wanted: list[str]) -> None:
    """button_install: the modules with their dependencies, then the auto_install modules one
    of whose triggers is now being installed, until none is left."""
    depends = _dependencies(cr)
    while wanted:
        states = _states(cr)
        for name in wanted:
            _state_update(cr, mods, name, states, depends)
        chosen = {name for name, state in states.items() if state in INSTALL_STATES}
        new = {name for name, state in states.items() if state == "to install"}
        wanted = sorted(
            name
            for name, state in states.items()
            if state == "uninstalled"
            and name in mods
            and (triggers := mods[name].triggers) is not None
            and triggers <= chosen
            and triggers & new
        )


def _button_install(cr: Any, mods: dict[str, Module], init: list[str]) -> None:
    states = _states(cr)
    wanted = [n for n, s in states.items() if s == "uninstalled" and ("all" in init or n in init)]
    if wanted:
        _mark_install(cr, mods, sorted(wanted))


def _button_upgrade(cr: Any, mods: dict[str, Module], update: list[str]) -> None:
    """Mark the named installed modules and their installed dependents 'to upgrade', then
    install the dependencies they gained."""
    states = _states(cr)
    installed = {name for name, state in states.items() if state in ("installed", "to upgrade")}
    named = installed & set(update)
    if "all" in update or "base" in named:
        named = installed
    if not named:
        return
    depends = _dependencies(cr)
    todo = set(named)
    while more := {n for n in installed - todo if set(depends.get(n, ())) & todo}:
        todo |= more
    for name in sorted(todo):
        if name in mods and mods[name].installable:
            check_external_dependencies(mods[name], "to upgrade")
    cr.execute(
        "UPDATE ir_module_module SET state = 'to upgrade' WHERE name = ANY(%s)", (list(todo),)
    )
    new_dependencies = []
    for name in sorted(todo):
        if name in mods and not mods[name].installable:
            continue
        for dependency in depends.get(name, []):
            if dependency not in states:
                raise UserError(
                    f"You try to upgrade the module {name} that depends on the module:"
                    f" {dependency}.\nBut this module is not available in your system."
                )
            if states[dependency] == "uninstalled":
                new_dependencies.append(dependency)
    if new_dependencies:
        _mark_install(cr, mods, sorted(set(new_dependencies)))


# --- loading the graph -------------------------------------------------------------------------


def _load_graph(
    cr: Any, config: Any, registry: Registry, mods: dict[str, Module], names: list[str]
) -> set[str]:
    """Install and upgrade the marked modules among `names`, each committed on its own, then
    with --test-enable run its at_install tests; the names the graph could load."""
    nodes = module_graph.build(cr, mods, names, update=True)
    cr.execute("SELECT demo FROM ir_module_module WHERE name = 'base'")
    demo = bool(cr.fetchone()[0])
    started = time.time()
    _logger.info("loading %d modules...", len(nodes))
    for index, node in enumerate(nodes, 1):
        if node.name in registry.modules:
            continue  # already loaded by this run (base)
        updated = node.state in ("to install", "to upgrade")
        if updated:
            _logger.info("Loading module %s (%d/%d)", node.name, index, len(nodes))
            _load_module(cr, config, registry.db_name, node, demo)
            registry.updated_modules.append(node.name)
        registry.modules[node.name] = node.module
        if config["test_enable"] and (updated or not registry.update_module):
            _test_module(config, registry, node.module)
    _logger.info("%d modules loaded in %.2fs", len(nodes), time.time() - started)
    return {node.name for node in nodes}


def _load_module(cr: Any, config: Any, dbname: str, node: module_graph.Node, demo: bool) -> None:
    """Install or upgrade one module in its own transaction, committed at the end."""
    mod = node.module
    script_cr = sql_db.Cursor(cr.connection, dbname)
    if node.state == "to upgrade":
        for stage in ("pre", "post"):  # the stand-in reloads no data in between
            migration.migrate_module(
                script_cr, mod.name, mod.path, stage, node.installed_version, mod.version
            )
    else:
        _install_data(cr, config, dbname, mod, demo)
        if hook := mod.manifest["post_init_hook"]:
            getattr(import_addon(mod), hook)(Environment(script_cr))
        cr.execute("UPDATE ir_module_module SET demo = %s WHERE name = %s", (demo, mod.name))
    cr.execute(
        "UPDATE ir_module_module SET state = 'installed', latest_version = %s,"
        " write_date = now() AT TIME ZONE 'UTC' WHERE name = %s",
        (mod.version, mod.name),
    )
    cr.connection.commit()


def _report_leftovers(cr: Any, loaded: set[str]) -> None:
    """Odoo's two ERROR lines for modules the run could not load or finish."""
    cr.execute(
        "SELECT name FROM ir_module_module"
        " WHERE state IN ('installed', 'to upgrade', 'to remove') ORDER BY name"
    )
    if missing := [name for (name,) in cr.fetchall() if name not in loaded]:
        msg = "Some modules are not loaded, some dependencies or manifest may be missing: %s"
        _logger.error(msg, missing)
    cr.execute(
        "SELECT name FROM ir_module_module"
        " WHERE state IN ('to install', 'to upgrade') ORDER BY name"
    )
    if pending := [name for (name,) in cr.fetchall()]:
        msg = "Some modules have inconsistent states, some dependencies may be missing: %s"
        _logger.error(msg, pending)


# --- data of a module being installed ----------------------------------------------------------


def _install_data(cr: Any, config: Any, dbname: str, mod: Module, demo: bool) -> None:
    for data in ("install.sql", "demo.sql") if demo else ("install.sql",):
        path = mod.data_file(data)
        if path:
            with open(path, encoding="utf-8") as handle:
                cr.execute(handle.read())
        if mod.name == "base" and data == "install.sql":
            _init_base(cr, config, dbname, mod)


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
