"""Configuration of the stand-in: Odoo's command line, environment and $ODOO_RC.

Reproduces odoo/tools/config.py of Odoo 19 as far as the contract reaches:
- optparse, like Odoo: `--opt=value` and `--opt value` both work, an unknown option or a
  stray positional argument exits 2 with optparse's usage error;
- precedence command line > environment > the file named by -c, else $ODOO_RC > defaults.
  The environment is ODOO_<OPTION> for every option the file may hold (ODOO_WORKERS=2,
  ODOO_PROXY_MODE=1, booleans as 1/0/true/false/yes/no/on/off) and the PG* variables of
  libpq for the database options: PGDATABASE (-d), PGHOST, PGPORT, PGUSER, PGPASSWORD,
  PGSSLMODE, PGAPPNAME (db_app_name, `{pid}` replaced) and PGDATABASE_TEMPLATE. -i, -u,
  --stop-after-init and the test options are never read from the environment;
- an addons path entry that is no directory, or holds no module, is skipped with a WARNING
  ("option --addons-path, no such directory '/x', skipped"; from the file or the
  environment the option reads `addons_path`);
- Odoo 19 loads no demo data unless --with-demo (or `with_demo = True`); --without-demo
  is its inverse and takes a boolean: any other value ('all') is a WARNING "invalid boolean
  value" and means no demo data, the default anyway;
- --test-enable and --test-tags imply --stop-after-init (a WARNING when no -d is given);
  --test-enable alone means `--test-tags +standard`, and a --test-tags turns the tests on;
- without --http-interface (or with an empty `http_interface` in the file) every command
  logs the WARNING of Odoo 19: the default 0.0.0.0 becomes 127.0.0.1 in 20.0.
Messages raised while parsing wait in config["log_entries"] until logs.setup() has a
handler for them, as Odoo keeps them until its logging is configured.
Options the real server accepts but the stand-in has no use for are accepted and ignored.
"""

from __future__ import annotations

import configparser
import logging
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
    ("--db_app_name", "db_app_name", str, "odoo-{pid}"),
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
# Variables named otherwise than ODOO_<OPTION>: libpq's, read natively by Odoo 19.
ENVIRON = dict(
    db_name="PGDATABASE", db_host="PGHOST", db_port="PGPORT", db_user="PGUSER",
    db_password="PGPASSWORD", db_sslmode="PGSSLMODE", db_app_name="PGAPPNAME",
    db_template="PGDATABASE_TEMPLATE", pg_path="PGPATH",
)  # fmt: skip
# Options Odoo reads from the command line only (file_loadable=False): no ODOO_ variable.
CLI_ONLY = {"config", "save", "init", "update", "reinit", "import_partial", "test_file",
            "test_enable", "test_tags", "stop_after_init"}  # fmt: skip
BOOLEANS = {"1": True, "yes": True, "true": True, "on": True,
            "0": False, "no": False, "false": False, "off": False}  # fmt: skip
MISSING_INTERFACE = (
    "missing --http-interface/http_interface, using 0.0.0.0 by default, "
    "will change to 127.0.0.1 in 20.0"
)

Config = ChainMap  # runtime, command line, environment, file, defaults: first hit wins
LogEntries = list[tuple[int, str, tuple[Any, ...]]]


def _without_demo(raw: str, opt: str, entries: LogEntries) -> bool:
    """with_demo from a --without-demo value: its inverse, or False for a non-boolean."""
    value = BOOLEANS.get(raw.lower())
    if value is None:
        message = "option %s: since 19.0, invalid boolean value: %r, assume %s"
        entries.append((logging.WARNING, message, (opt, raw, raw != "None")))
        return raw == "None"
    return not value


def build_parser(
    extra: list[tuple[str, str, Any, Any]], entries: LogEntries
) -> optparse.OptionParser:
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

    def without_demo(_option: Any, opt: str, value: str, parser: Any) -> None:
        parser.values.with_demo = _without_demo(value, opt, entries)

    parser.add_option(
        "--without-demo", action="callback", callback=without_demo, type="string", nargs=1
    )
    parser.set_defaults(**{dest: None for _f, dest, _k, _d in [*OPTIONS, *extra]})
    return parser


def _bare_without_demo(args: list[str]) -> list[str]:
    """`--without-demo` alone means True, as Odoo's nargs='?' option does."""
    return [
        "--without-demo=True"
        if arg == "--without-demo" and (i + 1 == len(args) or args[i + 1].startswith("-"))
        else arg
        for i, arg in enumerate(args)
    ]


def _cast(kind: Any, raw: str) -> Any:
    """A value of the configuration file, read as Odoo does (False/None unset the key)."""
    words = {"true": True, "false": False, "none": None, "": None}
    if raw.lower() in words:
        return words[raw.lower()]
    return kind(raw) if kind in (int, float) else raw


def read_file(path: str, entries: LogEntries) -> dict[str, Any]:
    """The [options] section of a configuration file; a missing file is no error."""
    parser = configparser.RawConfigParser()
    parser.read([path])
    kinds = {dest: kind for _f, dest, kind, _d in OPTIONS}
    values: dict[str, Any] = {}
    if parser.has_section("options"):
        for key, raw in parser.items("options"):
            if key == "without_demo":
                values["with_demo"] = _without_demo(raw.strip(), key, entries)
                continue
            key = FILE_ALIASES.get(key, key)
            values[key] = _cast(kinds.get(key, str), raw.strip())
    return values


def _env_value(parser: optparse.OptionParser, dest: str, kind: Any, var: str) -> Any:
    """An environment variable read as Odoo parses it: by the option's type."""
    raw = os.environ[var]
    if raw == "None":
        return None
    if kind in ("on", "off"):
        if raw.lower() not in BOOLEANS:
            parser.error(f"option {dest}: invalid boolean value: {raw!r}")
        return BOOLEANS[raw.lower()]
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            parser.error(f"option {dest}: invalid {kind.__name__} value: {raw!r}")
    if isinstance(kind, str) and raw not in kind.split():
        parser.error(f"option {dest}: invalid choice: {raw!r}")
    return raw


def read_environ(parser: optparse.OptionParser) -> dict[str, Any]:
    """ODOO_<OPTION> and the PG* variables that are set."""
    values: dict[str, Any] = {}
    for _flags, dest, kind, _default in OPTIONS:
        if dest in CLI_ONLY:
            continue
        var = ENVIRON.get(dest, f"ODOO_{dest.upper()}")
        if var in os.environ:
            values[dest] = _env_value(parser, dest, kind, var)
    return values


def _normalize(path: str) -> str:
    """Odoo's spelling of a path: variables and ~ expanded, absolute, symlinks resolved."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.path.expandvars(path))))


def _checked_addons_path(value: Any, opt: str, entries: LogEntries) -> str:
    """The entries of an addons_path that exist and hold a module; others are a WARNING."""
    kept: list[str] = []
    for path in (_normalize(p.strip()) for p in str(value).split(",") if p.strip()):
        if not os.path.isdir(path):
            message = "option %s, no such directory %r, skipped"
        elif not is_addons_dir(path):
            message = "option %s, invalid addons directory %r, skipped"
        else:
            kept.append(path)
            continue
        entries.append((logging.WARNING, message, (opt, path)))
    return ",".join(kept)


def _postprocess(config: Config, entries: LogEntries) -> None:
    """What Odoo derives after reading every source: test runs stop after init."""
    runtime = config.maps[0]
    if config["test_enable"] and not config["test_tags"]:
        runtime["test_tags"] = "+standard"
    if config["test_tags"]:
        runtime["test_enable"] = runtime["stop_after_init"] = True
        if not config["db_name"]:
            entries.append(
                (logging.WARNING, "Empty %s, tests won't run", ("-d/--database/db_name",))
            )
    if config["http_enable"] and not config["http_interface"]:
        entries.append((logging.WARNING, MISSING_INTERFACE, ()))
    runtime["log_entries"] = entries


def parse(args: list[str], extra: list[tuple[str, str, Any, Any]] = ()) -> Config:
    """Parse a command line (exit 2 on misuse, as optparse does) into the merged configuration."""
    entries: LogEntries = []
    parser = build_parser(extra, entries)
    opts, rest = parser.parse_args(_bare_without_demo(args))
    if rest:
        parser.error(f"unrecognized parameters: '{' '.join(rest)}'")
    cli = {key: value for key, value in vars(opts).items() if value is not None}
    environ = read_environ(parser)
    rcfile = os.path.abspath(
        cli.get("config") or os.environ.get("ODOO_RC") or os.path.expanduser("~/.odoorc")
    )
    from_file = read_file(rcfile, entries)
    for opt, source in (
        ("addons_path", from_file),
        ("addons_path", environ),
        ("--addons-path", cli),
    ):
        if source.get("addons_path"):
            source["addons_path"] = _checked_addons_path(source["addons_path"], opt, entries)
    defaults = {dest: default for _f, dest, _k, default in [*OPTIONS, *extra]}
    defaults["rcfile"] = rcfile
    config = Config({}, cli, environ, from_file, defaults)
    _postprocess(config, entries)
    return config


def addons_paths(config: Config) -> list[str]:
    """Where modules are looked up: Odoo's own addons first, then the configured paths."""
    configured = (p for p in (config["addons_path"] or "").split(",") if p)
    return [CORE_ADDONS, *dict.fromkeys(configured)]


def names(value: Any) -> list[str]:
    """A comma-separated list of module names, as -i and -u take them."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]
