"""Neutralisation of a copied database: what ``odoo neutralize`` does, without starting Odoo.

A staging or dev copy of production must never send a customer an e-mail, charge a card, call
a webhook, ship a parcel, spend IAP credits or get indexed under production's domain. Odoo
makes a copy safe by running the ``data/neutralize.sql`` of every installed module; the daemon
reproduces those effects itself, so it needs no Odoo container for it, can point outgoing mail
at the platform's mail catcher in the same pass, and can report what it did step by step.

Each step belongs to a module and runs only when that module is installed (Odoo's rule: state
``installed``, ``to upgrade`` or ``to remove``) and every table and column it writes exists.
Real Odoo 19 tables carry many more columns than the ones touched here and older or newer
releases rename a few, so each statement is guarded by the catalogue instead of assuming a
schema; a step that cannot run is reported as skipped with the reason, never attempted.

Where Odoo's own scripts are not safe to repeat, the step is written so a second run changes
nothing more: the outgoing server is updated in place rather than inserted again (Odoo inserts
one dummy per run), so there is always exactly one active server.

All steps run in one transaction: a failure leaves the copy exactly as it was, never half
neutralised with ``database.is_neutralized`` set. Run it before Odoo serves the copy: a running
Odoo caches mail servers and parameters until its registry is reloaded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from reconciler.core.errors import DriverError

__all__ = [
    "CATCHER_NAME",
    "MailTarget",
    "NeutralizeReport",
    "is_neutralized",
    "neutralize",
    "reidentify",
]

CATCHER_NAME = "OdooOps mail catcher"
"""Name of the one active outgoing server of a neutralised copy that has a mail catcher."""

_DUMMY_NAME = "neutralization - disable emails"  # Odoo's own dummy when there is no catcher
_DUMMY_HOST, _DUMMY_PORT = "invalid", 1025
_DISABLED_WEBHOOK = "neutralization - disable webhook"
_ROBOTS_DISALLOW_ALL = "User-agent: *\nDisallow: /"

# Odoo's neutralize runs the scripts of modules in these states (odoo/modules/neutralize.py).
_INSTALLED_STATES = ("installed", "to upgrade", "to remove")

# Web push: the VAPID key pair signs notifications to the staff's browsers (and the SFU key
# authenticates to the call server), the queue and the devices are where they would go.
_PUSH_KEYS = (
    "mail.web_push_vapid_private_key",
    "mail.web_push_vapid_public_key",
    "mail.sfu_server_key",
)
# Queue before devices (the queue references devices); Odoo 18+ names first, then Odoo 17's.
_PUSH_TABLES = (
    "mail_push",
    "mail_push_device",
    "mail_notification_web_push",
    "mail_partner_device",
)

# Parameters bound to one database's identity; see ``reidentify``.
_LICENCE_KEYS = (
    "database.enterprise_code",
    "database.expiration_date",
    "database.expiration_reason",
)


@dataclass(frozen=True)
class MailTarget:
    """The SMTP server that receives every e-mail of a neutralised copy (the mail catcher)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class NeutralizeReport:
    """Step names that ran, and those skipped with the reason in parentheses.

    ``applied`` holds names such as ``"base.mail_servers"``; ``skipped`` such as
    ``"payment.providers (module not installed)"``.
    """

    applied: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _Catalog:
    """What the database holds: its tables with their columns, and its installed modules."""

    columns: Mapping[str, frozenset[str]]
    modules: frozenset[str]

    def has(self, table: str, *columns: str) -> bool:
        return table in self.columns and set(columns) <= self.columns[table]

    def missing(self, needs: Mapping[str, tuple[str, ...]]) -> str | None:
        """Why ``needs`` (table -> columns) is not met, or ``None`` when it is."""
        for table, columns in needs.items():
            if table not in self.columns:
                return f"table {table} missing"
            absent = [c for c in columns if c not in self.columns[table]]
            if absent:
                return f"column {table}.{absent[0]} missing"
        return None


_Run = Callable[[psycopg.Cursor[Any], _Catalog, MailTarget | None], None]


@dataclass(frozen=True)
class _Step:
    name: str
    module: str
    needs: Mapping[str, tuple[str, ...]]
    run: _Run


def _catalog(cur: psycopg.Cursor[Any]) -> _Catalog:
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
    )
    columns: dict[str, set[str]] = {}
    for table, column in cur.fetchall():
        columns.setdefault(table, set()).add(column)
    frozen = {table: frozenset(cols) for table, cols in columns.items()}
    modules: frozenset[str] = frozenset()
    if "state" in frozen.get("ir_module_module", ()):
        cur.execute(
            "SELECT name FROM ir_module_module WHERE state = ANY(%s)", (list(_INSTALLED_STATES),)
        )
        modules = frozenset(row[0] for row in cur.fetchall())
    return _Catalog(frozen, modules)


def _now_columns(catalog: _Catalog, table: str) -> list[str]:
    """Odoo's audit dates, set on rows we insert (the ORM would; the columns have no default)."""
    return [c for c in ("create_date", "write_date") if catalog.has(table, c)]


def _insert(
    cur: psycopg.Cursor[Any], catalog: _Catalog, table: str, values: dict[str, Any]
) -> None:
    dates = _now_columns(catalog, table)
    names = [sql.Identifier(c) for c in [*values, *dates]]
    placeholders: list[sql.Composable] = [sql.Placeholder(c) for c in values]
    placeholders += [sql.SQL("now() AT TIME ZONE 'UTC'")] * len(dates)
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(names), sql.SQL(", ").join(placeholders)
        ),
        values,
    )


def _set_param(cur: psycopg.Cursor[Any], catalog: _Catalog, key: str, value: str) -> None:
    """Upsert one ``ir_config_parameter`` without relying on its unique constraint's name."""
    extra = {"type": "str"} if catalog.has("ir_config_parameter", "type") else {}
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in ["value", *extra]
    )
    cur.execute(
        sql.SQL("UPDATE ir_config_parameter SET {} WHERE key = %(key)s").format(assignments),
        {"key": key, "value": value, **extra},
    )
    if cur.rowcount == 0:
        _insert(cur, catalog, "ir_config_parameter", {"key": key, "value": value, **extra})


# ------------------------------------------------------------------------------------ steps


def _mail_servers(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    """Every server off, then exactly one on: the catcher, or Odoo's unreachable dummy.

    The dummy exists so Odoo never falls back to an SMTP server given on its command line.
    The server we own is found by name and rewritten, so a second run adds nothing.
    """
    cur.execute("UPDATE ir_mail_server SET active = false WHERE active")
    if mail is None:
        name, host, port, user, password = _DUMMY_NAME, _DUMMY_HOST, _DUMMY_PORT, "", ""
    else:
        name, host, port = CATCHER_NAME, mail.host, mail.port
        user, password = mail.user, mail.password
    optional = {
        "smtp_user": user or None,
        "smtp_pass": password or None,
        "smtp_encryption": "none",
        "smtp_authentication": "login",
        "from_filter": None,
    }
    values: dict[str, Any] = {"smtp_host": host, "smtp_port": port, "active": True}
    values |= {c: v for c, v in optional.items() if catalog.has("ir_mail_server", c)}
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values
    )
    cur.execute(
        sql.SQL(
            "UPDATE ir_mail_server SET {} WHERE id = "
            "(SELECT min(id) FROM ir_mail_server WHERE name = %(name)s)"
        ).format(assignments),
        {**values, "name": name},
    )
    if cur.rowcount == 0:
        _insert(cur, catalog, "ir_mail_server", {"name": name, **values})


def _crons(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    # NOT EXISTS rather than Odoo's NOT IN: one NULL res_id would make NOT IN match nothing.
    cur.execute(
        "UPDATE ir_cron AS c SET active = false WHERE c.active AND NOT EXISTS ("
        " SELECT 1 FROM ir_model_data AS d WHERE d.res_id = c.id AND d.model = 'ir.cron'"
        " AND d.module = 'base' AND d.name = 'autovacuum_job')"
    )


def _webhooks(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    cur.execute(
        "UPDATE ir_act_server SET webhook_url = %s WHERE state = 'webhook'", (_DISABLED_WEBHOOK,)
    )


def _mail_templates(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    cur.execute("UPDATE mail_template SET mail_server_id = NULL WHERE mail_server_id IS NOT NULL")


def _fetchmail(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    cur.execute("UPDATE fetchmail_server SET active = false WHERE active")


def _web_push(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    cur.execute("DELETE FROM ir_config_parameter WHERE key = ANY(%s)", (list(_PUSH_KEYS),))
    for table in _PUSH_TABLES:
        if table in catalog.columns:
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


def _payment(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    """Live providers are disabled, as Odoo does, rather than switched to test mode.

    Test mode keeps the production credentials, and for providers whose key alone decides
    live or test (Stripe's ``sk_live_``) a "test" provider would still take real payments.
    Releases with an ``is_live`` flag get it cleared as well.
    """
    if catalog.has("payment_provider", "state"):
        cur.execute(
            "UPDATE payment_provider SET state = 'disabled' WHERE state NOT IN ('test', 'disabled')"
        )
    if catalog.has("payment_provider", "is_live"):
        cur.execute("UPDATE payment_provider SET is_live = false WHERE is_live")


def _delivery(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    cur.execute("UPDATE delivery_carrier SET prod_environment = false WHERE prod_environment")


def _iap(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    # Odoo 17+: a token keeps its value with "+disabled" in place of any suffix; longer
    # (pre-17, invalid) tokens are replaced. Both leave an already disabled token as it is.
    cur.execute(
        "UPDATE iap_account SET account_token = regexp_replace(account_token, '(\\+.*)?$',"
        " '+disabled') WHERE length(account_token) <= 33 AND account_token NOT LIKE '%+disabled'"
    )
    cur.execute(
        "UPDATE iap_account SET account_token = 'dummy_value+disabled'"
        " WHERE length(account_token) > 33 AND account_token NOT LIKE '%+disabled'"
    )


def _websites(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    values: dict[str, Any] = {"domain": None}
    if catalog.has("website", "robots_txt"):
        values["robots_txt"] = _ROBOTS_DISALLOW_ALL
    if catalog.has("website", "cdn_activated"):
        values["cdn_activated"] = False
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values
    )
    cur.execute(sql.SQL("UPDATE website SET {}").format(assignments), values)


def _view_activator(module: str, name: str) -> _Run:
    """Activate the view ``module.name``, found by xml id or by its ``key`` like Odoo does."""

    def run(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
        found = [
            sql.SQL(
                "id IN (SELECT res_id FROM ir_model_data WHERE model = 'ir.ui.view'"
                " AND module = %(module)s AND name = %(name)s)"
            )
        ]
        if catalog.has("ir_ui_view", "key"):
            found.append(sql.SQL("key = %(key)s"))
        cur.execute(
            sql.SQL("UPDATE ir_ui_view SET active = true WHERE NOT active AND ({})").format(
                sql.SQL(" OR ").join(found)
            ),
            {"module": module, "name": name, "key": f"{module}.{name}"},
        )

    return run


def _flag(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    _set_param(cur, catalog, "database.is_neutralized", "true")


_XMLID = ("model", "module", "name", "res_id")

_STEPS: tuple[_Step, ...] = (
    _Step(
        "base.mail_servers",
        "base",
        {"ir_mail_server": ("name", "smtp_host", "smtp_port", "active")},
        _mail_servers,
    ),
    _Step("base.crons", "base", {"ir_cron": ("active",), "ir_model_data": _XMLID}, _crons),
    _Step("base.webhooks", "base", {"ir_act_server": ("state", "webhook_url")}, _webhooks),
    _Step("mail.templates", "mail", {"mail_template": ("mail_server_id",)}, _mail_templates),
    _Step("mail.fetchmail_servers", "mail", {"fetchmail_server": ("active",)}, _fetchmail),
    _Step("mail.web_push", "mail", {"ir_config_parameter": ("key",)}, _web_push),
    _Step("payment.providers", "payment", {"payment_provider": ()}, _payment),
    _Step("delivery.carriers", "delivery", {"delivery_carrier": ("prod_environment",)}, _delivery),
    _Step("iap.accounts", "iap", {"iap_account": ("account_token",)}, _iap),
    _Step("website.websites", "website", {"website": ("domain",)}, _websites),
    _Step(
        "website.ribbon",
        "website",
        {"ir_ui_view": ("active",), "ir_model_data": _XMLID},
        _view_activator("website", "neutralize_ribbon"),
    ),
    _Step(
        "web.banner",
        "web",
        {"ir_ui_view": ("active",), "ir_model_data": _XMLID},
        _view_activator("web", "neutralize_banner"),
    ),
    # Last, so the flag is written only together with everything it vouches for.
    _Step("base.is_neutralized", "base", {"ir_config_parameter": ("key", "value")}, _flag),
)
"""The steps in order; a step's ``needs`` (table -> columns) must all exist for it to run."""


def _skip_reason(step: _Step, catalog: _Catalog) -> str | None:
    if step.module not in catalog.modules:
        return "module not installed"
    if step.name == "payment.providers" and not (
        catalog.has("payment_provider", "state") or catalog.has("payment_provider", "is_live")
    ):
        return "column payment_provider.state missing"
    return catalog.missing(step.needs)


def _failure(
    conn: psycopg.Connection[Any], what: str, exc: psycopg.Error, *, code: str
) -> DriverError:
    """A structured error without the server's DETAIL line, which may quote row values."""
    info = conn.info
    reason = exc.diag.message_primary or type(exc).__name__
    return DriverError(
        f"{what} failed on database {info.dbname}: {reason}; nothing was changed",
        code=code,
        retryable=False,
        remediation=f"psql -h {info.host} -p {info.port} -U {info.user} -d {info.dbname}"
        " -c '\\dt'  (check the tables of the copy, then run: odooops reconcile)",
    )


def neutralize(conn: psycopg.Connection[Any], mail: MailTarget | None) -> NeutralizeReport:
    """Neutralise the database of ``conn`` for the installed modules, in one transaction.

    Outgoing mail goes to ``mail`` (the platform's mail catcher), or nowhere when it is None.
    On an idle connection the transaction is committed here; inside a transaction the caller
    already holds, it is a savepoint and the caller commits. Raises ``DriverError`` when the
    database is not an initialised Odoo database or a statement fails (nothing is changed).
    """
    applied: list[str] = []
    skipped: list[str] = []
    step_name = "reading the catalogue"
    try:
        with conn.transaction(), conn.cursor() as cur:
            catalog = _catalog(cur)
            if "base" not in catalog.modules:
                info = conn.info
                raise DriverError(
                    f"database {info.dbname} is not an initialised Odoo database (no installed"
                    " base module); it was not neutralised",
                    code="not_an_odoo_database",
                    retryable=False,
                    remediation=f"psql -h {info.host} -p {info.port} -U {info.user} -d"
                    f" {info.dbname} -c \"SELECT state FROM ir_module_module WHERE name = 'base'\"",
                )
            for step in _STEPS:
                reason = _skip_reason(step, catalog)
                if reason is not None:
                    skipped.append(f"{step.name} ({reason})")
                    continue
                step_name = f"neutralisation step {step.name}"
                step.run(cur, catalog, mail)
                applied.append(step.name)
    except psycopg.Error as exc:
        raise _failure(conn, step_name, exc, code="neutralize_failed") from exc
    return NeutralizeReport(tuple(applied), tuple(skipped))


def is_neutralized(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``database.is_neutralized`` is true (Odoo writes ``true``, older tools ``True``)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ir_config_parameter') IS NOT NULL")
        row = cur.fetchone()
        if not row or not row[0]:
            return False
        cur.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'")
        found = cur.fetchone()
    return found is not None and str(found[0]).strip().lower() == "true"


def reidentify(conn: psycopg.Connection[Any]) -> None:
    """Give a copy its own identity, as Odoo does for a database duplicated or restored as copy.

    - ``database.uuid`` names the database to Odoo's services (IAP credits, the publisher
      warranty, push notification registration, the subscription): two databases with one
      uuid are one customer to them, so a copy would spend or report in production's name.
    - ``database.secret`` keys every HMAC Odoo signs (session tokens, password-reset and
      signup links, portal access hashes): a copy sharing it would accept production's
      signed links and could mint links production accepts.
    - ``database.create_date`` is regenerated with them, like Odoo's
      ``ir.config_parameter.init(force=True)`` does.
    - ``database.enterprise_code`` (with ``expiration_date`` and ``expiration_reason``) binds
      a subscription to production; a copy that kept it would register as a second instance.

    One transaction, like ``neutralize``; ``web.base.url`` is left to the deployment.
    """
    try:
        with conn.transaction(), conn.cursor() as cur:
            catalog = _catalog(cur)
            if not catalog.has("ir_config_parameter", "key", "value"):
                raise DriverError(
                    f"database {conn.info.dbname} has no ir_config_parameter table; it is not an"
                    " Odoo database",
                    code="not_an_odoo_database",
                    retryable=False,
                    remediation=f"psql -h {conn.info.host} -p {conn.info.port} -U"
                    f" {conn.info.user} -d {conn.info.dbname} -c '\\dt'",
                )
            generated = {
                "database.uuid": str(uuid.uuid4()),
                "database.secret": str(uuid.uuid4()),
                "database.create_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
            for key, value in generated.items():
                _set_param(cur, catalog, key, value)
            cur.execute(
                "DELETE FROM ir_config_parameter WHERE key = ANY(%s)", (list(_LICENCE_KEYS),)
            )
    except psycopg.Error as exc:
        raise _failure(
            conn, "giving the copy a new identity", exc, code="reidentify_failed"
        ) from exc
