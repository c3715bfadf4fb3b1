"""Odoo databases for tests, built from the stand-in image's module SQL without running Odoo.

``build`` does what the stand-in's ``odoo/loading.py`` does when it initialises a database
with ``-i``: ``base_data.sql`` creates the module registry and ``ir_model_data``, every module
of the addons directory is listed as ``uninstalled``, then the requested modules, their
dependencies and the auto-install modules they trigger run their ``install.sql`` in dependency
order; ``base`` also gets its generated ``ir_config_parameter`` keys and logo attachment, and
each module is marked ``installed``. The tables are the stand-in's (a subset of real Odoo's
columns), so a test that needs more of real Odoo adds those columns itself, visibly.
"""

from __future__ import annotations

import ast
import hashlib
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ADDONS = Path(__file__).resolve().parents[1] / "images" / "odoo-standin" / "odoo" / "addons"
SERIES = "19.0"
HOST, PORT, USER = "127.0.0.1", 5432, "postgres"


def manifests() -> dict[str, dict[str, Any]]:
    """Every stand-in module's manifest, with Odoo's defaults (``depends`` defaults to base)."""
    found = {}
    for path in sorted(ADDONS.glob("*/__manifest__.py")):
        name = path.parent.name
        manifest = {"depends": [], "auto_install": False, "application": False, "version": "1.0"}
        manifest |= {"author": "Odoo S.A.", "license": "LGPL-3"}
        manifest |= ast.literal_eval(path.read_text(encoding="utf-8"))
        if name != "base" and not manifest["depends"]:
            manifest["depends"] = ["base"]
        found[name] = manifest
    return found


def install_order(modules: Iterable[str]) -> list[str]:
    """The modules with their dependencies and triggered auto-installs, dependencies first."""
    mans = manifests()
    chosen: set[str] = set()
    stack = list(modules)
    while True:
        while stack:
            name = stack.pop()
            if name not in chosen:
                chosen.add(name)
                stack.extend(mans[name]["depends"])
        ready = [
            name
            for name, man in mans.items()
            if name not in chosen and man["auto_install"] and set(man["depends"]) <= chosen
        ]
        if not ready:
            break
        stack.extend(ready)
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dep in mans[name]["depends"]:
                visit(dep)
            order.append(name)

    for name in sorted(chosen):
        visit(name)
    return order


def _version(version: str) -> str:
    return version if version.startswith(SERIES + ".") else f"{SERIES}.{version}"


def build(conn: psycopg.Connection[Any], modules: Iterable[str]) -> list[str]:
    """Initialise the database of ``conn`` with ``modules`` installed; the installed order."""
    mans = manifests()
    order = install_order(modules)
    with conn.transaction():
        conn.execute((ADDONS / "base" / "data" / "base_data.sql").read_text(encoding="utf-8"))
        for name, man in mans.items():
            row = conn.execute(
                "INSERT INTO ir_module_module (name, author, shortdesc, state, auto_install,"
                " application, license) VALUES (%s, %s, jsonb_build_object('en_US', %s::text),"
                " 'uninstalled', %s, %s, %s) RETURNING id",
                (name, man["author"], man.get("name", name), bool(man["auto_install"]),
                 bool(man["application"]), man["license"]),
            ).fetchone()  # fmt: skip
            assert row is not None
            conn.execute(
                "INSERT INTO ir_module_module_dependency (name, module_id)"
                " SELECT unnest(%s::varchar[]), %s",
                (man["depends"], row[0]),
            )
        for name in order:
            install = ADDONS / name / "data" / "install.sql"
            if install.is_file():
                conn.execute(install.read_text(encoding="utf-8"))
            if name == "base":
                _init_base(conn)
            conn.execute(
                "UPDATE ir_module_module SET state = 'installed', latest_version = %s"
                " WHERE name = %s",
                (_version(str(mans[name]["version"])), name),
            )
    return order


def _init_base(conn: psycopg.Connection[Any]) -> None:
    """The generated parameters and the logo's attachment row (the file itself is not needed)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    generated = {"database.secret": str(uuid.uuid4()), "database.uuid": str(uuid.uuid1()),
                 "database.create_date": now}  # fmt: skip
    conn.execute(
        "INSERT INTO ir_config_parameter (key, value)"
        " SELECT * FROM unnest(%s::varchar[], %s::text[])",
        (list(generated), list(generated.values())),
    )
    logo = (ADDONS / "base" / "static" / "img" / "res_company_logo.png").read_bytes()
    checksum = hashlib.sha1(logo).hexdigest()
    conn.execute(
        "INSERT INTO ir_attachment (name, res_model, res_field, res_id, company_id, type,"
        " store_fname, file_size, checksum, mimetype)"
        " VALUES ('logo', 'res.partner', 'image_1920', 1, 1, 'binary', %s, %s, %s, 'image/png')",
        (f"{checksum[:2]}/{checksum}", len(logo), checksum),
    )


def connect(dbname: str, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        host=HOST, port=PORT, user=USER, dbname=dbname, autocommit=autocommit, connect_timeout=5
    )


@contextmanager
def scratch_database(prefix: str = "odooops_test") -> Iterator[str]:
    """A new, empty, uniquely named database, dropped (connections and all) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with connect("postgres") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
