"""Configuration of the stand-in: Odoo's command line, $ODOO_RC and the PG* variables.

Reproduces odoo/tools/config.py as far as the contract reaches:
- optparse, like Odoo: `--opt=value` and `--opt value` both work, an unknown option or a
  stray positional argument exits 2 with optparse's usage error;
- precedence command line > PGHOST/PGPORT/PGUSER/PGPASSWORD ("read natively on 19.0")
  > the file named by -c, else $ODOO_RC > defaults;
- Odoo 19 loads no demo data unless --with-demo (or `with_demo = True`); --without-demo
  is its deprecated inverse and, as in Odoo, takes a value.
Options the real server accepts but the stand-in has no use for are accepted and ignored.
"""

from __future__ import annotations

import configparser
import optparse
import os
from collections import ChainMap
from typing import Any

from odoo import DESCRIPTION, VERSION
from odoo.modules import CORE_ADDONS, is_addons_dir

LOG_LEVELS = (
    "info debug_rpc warn test critical runbot debug_sql error debug debug_rpc_answer notset"
)
SSL_MODES = "disable allow prefer require verify-ca verify-full"
# (flags, dest, kind, default); kind: str, int, on (store_true), off (store_false),
# or a space-separated string of choices.
OPTIONS: list[tuple[str, str, Any, Any]] = [
    ("-c --config", "config", str, None),
    ("-i --init", "init", str, ""),
    ("-u --update", "update", str, ""),
    ("--with-demo", "with_demo", "on", False),
    ("--without-demo", "without_demo", str, False),
    ("--addons-path", "addons_path", str, ""),
    ("-D --data-dir", "data_dir", str, os.path.expanduser("~/.local/share/Odoo")),
    ("--http-interface", "http_interface", str, ""),
    ("-p --http-port", "http_port", int, 8069),
    ("--gevent-port", "gevent_port", int, 8072),
    ("--no-http", "http_enable", "off", True),
    ("--proxy-mode", "proxy_mode", "on", False),
    ("--db-filter", "dbfilter", str, ""),
    ("--test-enable", "test_enable", "on", False),
    ("--test-tags", "test_tags", str, None),
    ("--logfile", "logfile", str, ""),
    ("--log-level", "log_level", LOG_LEVELS, "info"),
    ("-d --database", "db_name", str, ""),
    ("-r --db_user", "db_user", str, ""),
    ("-w --db_password", "db_password", str, ""),
    ("--db_host", "db_host", str, ""),
    ("--db_port", "db_port", int, None),
    ("--db_sslmode", "db_sslmode", SSL_MODES, "prefer"),
    ("--db-template", "db_template", str, "template0"),
    ("--load-language", "load_language", str, None),
    ("--no-database-list", "list_db", "off", True),
    ("--stop-after-init", "stop_after_init", "on", False),
    ("--max-cron-threads", "max_cron_threads", int, 2),
    ("--workers", "workers", int, 0),
    ("--limit-memory-soft", "limit_memory_soft", int, 2048 * 1024 * 1024),
    ("--limit-memory-hard", "limit_memory_hard", int, 2560 * 1024 * 1024),
    ("--limit-time-cpu", "limit_time_cpu", int, 60),
    ("--limit-time-real", "limit_time_real", int, 120),
    ("--limit-time-real-cron", "limit_time_real_cron", int, -1),
    ("--limit-request", "limit_request", int, 65536),
]
# Other options of Odoo 19, accepted and ignored: with a value, then without.
IGNORED_WITH_VALUE = """--reinit -P|--import-partial --pidfile --upgrade-path --pre-upgrade-scripts
    --load --test-file --screencasts --screenshots --log-handler --log-db --log-db-level
    --email-from --from-filter --smtp --smtp-port --smtp-user --smtp-password
    --smtp-ssl-certificate-filename --smtp-ssl-private-key-filename --pg_path --db_replica_host
    --db_replica_port --db_maxconn --db_maxconn_gevent -l|--language --i18n-export --i18n-import
    --modules --dev --osv-memory-count-limit --transient-age-limit --limit-time-worker-cron
    --geoip-city-db --geoip-country-db --limit-memory-soft-gevent --limit-memory-hard-gevent"""
IGNORED_FLAGS = (
    "-s|--save --x-sendfile --syslog --log-web --log-sql --smtp-ssl --i18n-overwrite --unaccent"
)
OPTIONS += [
    (flags.replace("|", " "), flags.split("|")[-1].lstrip("-").replace("-", "_"), kind, None)
    for names, kind in ((IGNORED_WITH_VALUE, str), (IGNORED_FLAGS, "on"))
    for flags in names.split()
]
# Renamed keys still read from configuration files (Odoo < 17 spellings).
FILE_ALIASES = dict(xmlrpc_port="http_port", xmlrpc_interface="http_interface")
# The PG* variables Odoo 19 reads natively.
ENVIRON = dict(PGHOST="db_host", PGPORT="db_port", PGUSER="db_user", PGPASSWORD="db_password")

Config = ChainMap  # command line, environment, file, defaults: first hit wins


def build_parser(extra: list[tuple[str, str, Any, Any]] = ()) -> optparse.OptionParser:
    """Odoo's parser: usage `odoo [options]`, `--version` prints `Odoo Server 19.0`."""
    parser = optparse.OptionParser(prog="odoo", version=f"{DESCRIPTION} {VERSION}")
    for flags, dest, kind, _default in [*OPTIONS, *extra]:
        attrs: dict[str, Any] = {"dest": dest}
        if kind == "on":
            attrs["action"] = "store_true"
        elif kind == "off":
            attrs["action"] = "store_false"
        elif isinstance(kind, str):
            attrs.update(type="choice", choices=kind.split())
        elif kind in (int, float):
            attrs["type"] = kind.__name__
        parser.add_option(*flags.split(), **attrs)
    parser.set_defaults(**{dest: None for _f, dest, _k, _d in [*OPTIONS, *extra]})
    return parser


def _cast(kind: Any, raw: str) -> Any:
    """A value of the configuration file, read as Odoo does (False/None unset the key)."""
    words = {"true": True, "false": False, "none": None, "": None}
    if raw.lower() in words:
        return words[raw.lower()]
    return kind(raw) if kind in (int, float) else raw


def read_file(path: str) -> dict[str, Any]:
    """The [options] section of a configuration file; a missing file is no error."""
    parser = configparser.RawConfigParser()
    parser.read([path])
    kinds = {dest: kind for _f, dest, kind, _d in OPTIONS}
    values: dict[str, Any] = {}
    if parser.has_section("options"):
        for key, raw in parser.items("options"):
            key = FILE_ALIASES.get(key, key)
            values[key] = _cast(kinds.get(key, str), raw.strip())
    return values


def parse(args: list[str], extra: list[tuple[str, str, Any, Any]] = ()) -> Config:
    """Parse a command line (exit 2 on misuse, as optparse does) into the merged configuration."""
    parser = build_parser(extra)
    opts, rest = parser.parse_args(args)
    if rest:
        parser.error(f"unrecognized parameters: '{' '.join(rest)}'")
    cli = {key: value for key, value in vars(opts).items() if value is not None}
    for path in filter(None, (p.strip() for p in cli.get("addons_path", "").split(","))):
        if not os.path.isdir(path):
            parser.error(f"option --addons-path: no such directory: {path!r}")
        if not is_addons_dir(path):
            parser.error(f"option --addons-path: invalid addons directory: {path!r}")
    environ = {key: os.environ[var] for var, key in ENVIRON.items() if var in os.environ}
    if "db_port" in environ:
        environ["db_port"] = int(environ["db_port"])
    rcfile = os.path.abspath(
        cli.get("config") or os.environ.get("ODOO_RC") or os.path.expanduser("~/.odoorc")
    )
    defaults = {dest: default for _f, dest, _k, default in [*OPTIONS, *extra]}
    defaults["rcfile"] = rcfile
    config = Config(cli, environ, read_file(rcfile), defaults)
    config["with_demo"] = bool(config["with_demo"]) and not config["without_demo"]
    return config


def addons_paths(config: Config) -> list[str]:
    """Where modules are looked up: Odoo's own addons first, then the configured paths."""
    configured = (os.path.abspath(p.strip()) for p in (config["addons_path"] or "").split(","))
    return [CORE_ADDONS, *(p for p in dict.fromkeys(configured) if os.path.isdir(p))]


def names(value: Any) -> list[str]:
    """A comma-separated list of module names, as -i and -u take them."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]
