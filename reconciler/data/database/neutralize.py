"""Neutralisation of a copied database: Odoo's own scripts, then the platform's steps, checked.

A staging or dev copy of production must never send a customer an e-mail, charge a card, call
a webhook, ship a parcel, spend IAP credits or get indexed under production's domain. Odoo
makes a copy safe by running the ``data/neutralize.sql`` of every installed module, custom
addons included, and Odoo 19 ships such scripts in many modules no fixed list could follow
(e-invoicing, payment providers, POS terminals...). So the scripts themselves are run: the
caller reads them with ``odoo neutralize -d DB --stdout`` in a one-off container of the
environment's own image, and ``neutralize`` runs them first, in its one transaction. The
platform's own steps follow: they repeat the effects of Odoo's core scripts idempotently (a
database copied without an image, in tests, is still safe), point outgoing mail at the
platform's mail catcher, remove credentials, and report what they did step by step; last, the
result is checked fail-closed before the commit.

Each step belongs to a module and runs only when that module is installed (Odoo's rule: state
``installed``, ``to upgrade`` or ``to remove``) and every table and column it writes exists.
Real Odoo 19 tables carry many more columns than the ones touched here and older or newer
releases rename a few, so each statement is guarded by the catalogue instead of assuming a
schema; a step that cannot run is reported as skipped with the reason, never attempted.

Where Odoo's own scripts are not safe to repeat, the step is written so a second run changes
nothing more: the outgoing server is updated in place rather than inserted again (Odoo inserts
one dummy per run), so there is always exactly one active server.

Odoo's scripts stop a copy from acting in production's name, but leave it holding what logs
in as production's users or acts for them elsewhere. The credential steps remove that too, on
every non-production copy, masked or not: API keys, passkeys, TOTP secrets and trusted
browsers, OAuth access tokens (Odoo accepts one as the user's password), the refresh tokens
that reach users' Gmail, Outlook and calendars, mail server passwords, the OAuth clients'
secrets and the payment providers' keys. A provider in test mode loses its keys as well: for
providers whose key alone decides live or test, "test" may still hold a live key. OAuth user
ids stay: they say who someone is, not that they are. Password hashes are one-way and open
only the copy itself, so an unmasked copy keeps them (its team logs in with its own
accounts); a copy that will be masked loses every one of them, the administrator's included,
so it holds no trace of production's passwords. The report counts what each removed.

All steps run in one transaction: a failure leaves the copy exactly as it was, never half
neutralised with ``database.is_neutralized`` set. Run it before Odoo serves the copy: a running
Odoo caches mail servers and parameters until its registry is reloaded.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from reconciler.core.errors import DriverError
from reconciler.data.database import plainsql

__all__ = [
    "CATCHER_NAME",
    "MailTarget",
    "NeutralizeReport",
    "is_neutralized",
    "neutralize",
    "point_mail",
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
    """The SMTP server that receives every e-mail of a neutralised copy (the mail catcher),
    reached with STARTTLS (``smtp_encryption = 'starttls'``, Odoo's TLS without certificate
    verification: the catcher's certificate is self-signed)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class NeutralizeReport:
    """Step names that ran, those skipped with the reason in parentheses, and what went.

    ``applied`` holds names such as ``"base.mail_servers"``; ``skipped`` such as
    ``"payment.providers (module not installed)"``. ``removed`` counts the credentials the
    copy lost: rows deleted per table (``"auth_passkey_key": 3``) and values cleared per
    column (``"res_users.totp_secret": 2``); only what was there is listed, never a value.
    """

    applied: tuple[str, ...]
    skipped: tuple[str, ...]
    removed: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Catalog:
    """What the database holds: its tables with their columns, and its installed modules.

    ``texts`` and ``required`` name the ``(table, column)`` pairs of text type and those
    declared NOT NULL: a credential column is cleared to NULL, or to '' where NULL is refused.
    """

    columns: Mapping[str, frozenset[str]]
    modules: frozenset[str]
    texts: frozenset[tuple[str, str]] = frozenset()
    required: frozenset[tuple[str, str]] = frozenset()

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


_Run = Callable[[psycopg.Cursor[Any], _Catalog, MailTarget | None], Mapping[str, int] | None]
"""A step's statements; a credential step returns what it removed (see ``NeutralizeReport``)."""

_Needs = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class _Step:
    """One step: it runs when its module is installed and the tables it writes exist.

    Every table and column of ``needs`` must exist, and at least one of ``any_of`` when it
    is given (a step that writes whichever of several places a release has). A
    ``masked_only`` step runs only on a copy that will be masked.
    """

    name: str
    module: str
    needs: _Needs
    run: _Run
    any_of: tuple[_Needs, ...] = ()
    masked_only: bool = False


_TEXT_TYPES = frozenset({"character varying", "text", "character"})


def _catalog(cur: psycopg.Cursor[Any]) -> _Catalog:
    cur.execute(
        "SELECT table_name, column_name, data_type, is_nullable = 'NO'"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
    )
    columns: dict[str, set[str]] = {}
    texts: set[tuple[str, str]] = set()
    required: set[tuple[str, str]] = set()
    for table, column, data_type, not_null in cur.fetchall():
        columns.setdefault(table, set()).add(column)
        if data_type in _TEXT_TYPES:
            texts.add((table, column))
        if not_null:
            required.add((table, column))
    frozen = {table: frozenset(cols) for table, cols in columns.items()}
    modules: frozenset[str] = frozenset()
    if "state" in frozen.get("ir_module_module", ()):
        cur.execute(
            "SELECT name FROM ir_module_module WHERE state = ANY(%s)", (list(_INSTALLED_STATES),)
        )
        modules = frozenset(row[0] for row in cur.fetchall())
    return _Catalog(frozen, modules, frozenset(texts), frozenset(required))


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
        encryption = "none"
    else:
        name, host, port = CATCHER_NAME, mail.host, mail.port
        user, password = mail.user, mail.password
        encryption = "starttls"  # the catcher offers AUTH only once the session is encrypted
    optional = {
        "smtp_user": user or None,
        "smtp_pass": password or None,
        "smtp_encryption": encryption,
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


# ------------------------------------------------------------------------------ credentials


@dataclass(frozen=True)
class _Place:
    """One table where production keeps a credential, and what of it a copy loses.

    With neither ``columns`` nor ``matching`` the rows go. Otherwise the values of the
    ``columns`` that exist, or of the text columns whose name ``matching`` finds, are
    cleared. ``only`` limits the rows to those whose column holds one of the values;
    ``spare`` leaves such rows alone.
    """

    table: str
    columns: tuple[str, ...] = ()
    matching: re.Pattern[str] | None = None
    only: tuple[str, tuple[str, ...]] | None = None
    spare: tuple[str, tuple[str, ...]] | None = None

    def needs(self) -> tuple[_Needs, ...]:
        """Any one of these makes the place present: the table, and one column to clear."""
        scope = tuple(limit[0] for limit in (self.only, self.spare) if limit)
        return tuple({self.table: (c, *scope)} for c in self.columns) or ({self.table: scope},)


@dataclass(frozen=True)
class _Credential:
    """A kind of credential: the step that removes it, its module and where it lives."""

    step: str
    module: str
    places: tuple[_Place, ...]
    masked_only: bool = False


def _clearable(place: _Place, catalog: _Catalog) -> list[str]:
    """The columns of ``place`` to clear in this database, in a stable order."""
    present = catalog.columns.get(place.table, frozenset())
    if place.matching is None:
        return [c for c in place.columns if c in present]
    return sorted(
        c
        for c in present
        if (place.table, c) in catalog.texts and place.matching.search(c) is not None
    )


def _wipe(cur: psycopg.Cursor[Any], catalog: _Catalog, place: _Place) -> dict[str, int]:
    """Remove the credential held at ``place``; rows deleted or values cleared, by target."""
    table = sql.Identifier(place.table)
    params: dict[str, Any] = {}
    scope: list[sql.Composable] = []
    if place.only:
        scope.append(sql.SQL("{} = ANY(%(only)s)").format(sql.Identifier(place.only[0])))
        params["only"] = list(place.only[1])
    if place.spare:
        spared = sql.Identifier(place.spare[0])
        scope.append(sql.SQL("({0} IS NULL OR {0} <> ALL(%(spare)s))").format(spared))
        params["spare"] = list(place.spare[1])
    if not place.columns and place.matching is None:
        where = sql.SQL(" AND ").join(scope) if scope else sql.SQL("true")
        cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(table, where), params)
        return {place.table: cur.rowcount}
    removed: dict[str, int] = {}
    for column in _clearable(place, catalog):
        col = sql.Identifier(column)
        empty = sql.Literal("") if (place.table, column) in catalog.required else sql.NULL
        held = sql.SQL("{0} IS NOT NULL AND {0}::text <> ''").format(col)
        cur.execute(
            sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
                table, col, empty, sql.SQL(" AND ").join([*scope, held])
            ),
            params,
        )
        removed[f"{place.table}.{column}"] = cur.rowcount
    return removed


def _remover(credential: _Credential) -> _Run:
    def run(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> dict[str, int]:
        removed: dict[str, int] = {}
        for place in credential.places:
            if any(catalog.missing(needs) is None for needs in place.needs()):
                removed |= _wipe(cur, catalog, place)
        return removed

    return run


def _credential_step(credential: _Credential) -> _Step:
    return _Step(
        credential.step,
        credential.module,
        {},
        _remover(credential),
        any_of=tuple(needs for place in credential.places for needs in place.needs()),
        masked_only=credential.masked_only,
    )


_GMAIL_TOKENS = (
    "google_gmail_authorization_code",
    "google_gmail_refresh_token",
    "google_gmail_access_token",
)
_OUTLOOK_TOKENS = ("microsoft_outlook_refresh_token", "microsoft_outlook_access_token")
_GOOGLE_CALENDAR_TOKENS = ("google_calendar_rtoken", "google_calendar_token")
_MICROSOFT_CALENDAR_TOKENS = ("microsoft_calendar_rtoken", "microsoft_calendar_token")
# The secrets of the OAuth clients (apps) through which Odoo reaches Google and Microsoft.
_OAUTH_CLIENT_SECRETS = (
    "google_gmail_client_secret",
    "google_calendar_client_secret",
    "microsoft_outlook_client_secret",
    "microsoft_calendar_client_secret",
)
# Key columns of the payment providers' modules (stripe_secret_key, adyen_hmac_key,
# paypal_client_secret, mercado_pago_access_token, aps_sha_request, ...), and of custom ones.
_PAYMENT_SECRET = re.compile(r"secret|key|token|passw|hmac|sha|hash|signature|access_code")

_CREDENTIALS: tuple[_Credential, ...] = (
    _Credential("base.api_keys", "base", (_Place("res_users_apikeys"),)),
    _Credential(
        "base.mail_server_passwords",
        "base",
        # the server the platform owns keeps the catcher's login it was just given
        (_Place("ir_mail_server", ("smtp_pass",), spare=("name", (CATCHER_NAME,))),),
    ),
    _Credential(
        "base.oauth_client_secrets",
        "base",
        (_Place("ir_config_parameter", only=("key", _OAUTH_CLIENT_SECRETS)),),
    ),
    _Credential("mail.fetchmail_passwords", "mail", (_Place("fetchmail_server", ("password",)),)),
    _Credential("auth_totp.secrets", "auth_totp", (_Place("res_users", ("totp_secret",)),)),
    _Credential("auth_totp.trusted_devices", "auth_totp", (_Place("auth_totp_device"),)),
    _Credential("auth_passkey.passkeys", "auth_passkey", (_Place("auth_passkey_key"),)),
    _Credential(
        "auth_oauth.access_tokens", "auth_oauth", (_Place("res_users", ("oauth_access_token",)),)
    ),
    # Odoo's own providers have no secret (implicit flow); OpenID Connect add-ons add one.
    _Credential(
        "auth_oauth.provider_secrets",
        "auth_oauth",
        (_Place("auth_oauth_provider", ("client_secret",)),),
    ),
    _Credential(
        "google_gmail.tokens",
        "google_gmail",
        tuple(
            _Place(table, _GMAIL_TOKENS)
            for table in ("ir_mail_server", "fetchmail_server", "google_gmail_token")
        ),
    ),
    _Credential(
        "microsoft_outlook.tokens",
        "microsoft_outlook",
        tuple(
            _Place(table, _OUTLOOK_TOKENS)
            for table in ("ir_mail_server", "fetchmail_server", "microsoft_outlook_token")
        ),
    ),
    # Odoo 17+ keeps users' calendar tokens in res_users_settings, older releases in res_users.
    _Credential(
        "google_calendar.tokens",
        "google_calendar",
        tuple(
            _Place(table, _GOOGLE_CALENDAR_TOKENS) for table in ("res_users_settings", "res_users")
        ),
    ),
    _Credential(
        "microsoft_account.tokens",
        "microsoft_account",
        tuple(
            _Place(table, _MICROSOFT_CALENDAR_TOKENS)
            for table in ("res_users_settings", "res_users")
        ),
    ),
    _Credential(
        "payment.provider_keys",
        "payment",
        (_Place("payment_provider", matching=_PAYMENT_SECRET),),
    ),
    _Credential("base.passwords", "base", (_Place("res_users", ("password",)),), masked_only=True),
)
"""Credentials removed from every copy (``base.passwords`` only from a masked one)."""


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
    _Step(
        "payment.providers",
        "payment",
        {"payment_provider": ()},
        _payment,
        any_of=({"payment_provider": ("state",)}, {"payment_provider": ("is_live",)}),
    ),
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
    *(_credential_step(credential) for credential in _CREDENTIALS),
    # Last, so the flag is written only together with everything it vouches for.
    _Step("base.is_neutralized", "base", {"ir_config_parameter": ("key", "value")}, _flag),
)
"""The steps in order; a step's ``needs`` (table -> columns) must all exist for it to run."""


def _skip_reason(step: _Step, catalog: _Catalog, masked: bool) -> str | None:
    if step.module not in catalog.modules:
        return "module not installed"
    if step.masked_only and not masked:
        return "copy not masked"
    reason = catalog.missing(step.needs)
    if reason is None and step.any_of:
        reasons = [catalog.missing(needs) for needs in step.any_of]
        reason = None if None in reasons else reasons[0]
    return reason


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


def odoo_script(printed: str) -> str:
    """The statements ``odoo neutralize --stdout`` printed, without its ``BEGIN;``/``COMMIT;``
    wrapper (``neutralize`` runs them inside its own transaction).

    The scripts come from the environment's image, so from its addons: they run as the
    environment's role, like its Odoo, after the same check an uploaded dump gets (no psql
    meta-command, no role change); a script that ends the transaction itself is caught by
    ``neutralize`` and the whole neutralisation refused.
    """
    lines = printed.strip().splitlines()
    if lines and lines[0].strip().upper() == "BEGIN;":
        lines = lines[1:]
    if lines and lines[-1].strip().upper() == "COMMIT;":
        lines = lines[:-1]
    script = "\n".join(lines).strip()
    if script:
        plainsql.check([script.encode() + b"\n"], "the output of odoo neutralize --stdout")
    return script


def neutralize(
    conn: psycopg.Connection[Any],
    mail: MailTarget | None,
    *,
    masked: bool = False,
    odoo_sql: str = "",
) -> NeutralizeReport:
    """Neutralise the database of ``conn`` for the installed modules, in one transaction.

    ``odoo_sql`` is what ``odoo neutralize -d DB --stdout`` printed in the environment's own
    image: every installed module's ``data/neutralize.sql``, custom addons included. It runs
    first; the platform's own steps follow (mail to the catcher, credentials removed, each
    idempotent), and the result is verified before the commit, fail-closed: no active
    scheduled action but the ones Odoo keeps, no active outgoing server but ours, and the
    ``database.is_neutralized`` flag. Outgoing mail goes to ``mail`` (the platform's mail
    catcher), or nowhere when it is None. ``masked`` says the copy is masked next, so its
    password hashes go too (masking leaves them to this step). On an idle connection the
    transaction is committed here; inside a transaction the caller already holds, it is a
    savepoint and the caller commits. Raises ``DriverError`` when the database is not an
    initialised Odoo database, a statement fails or the check fails (nothing is changed).
    """
    applied: list[str] = []
    skipped: list[str] = []
    removed: dict[str, int] = {}
    step_name = "reading the catalogue"
    script = odoo_script(odoo_sql)
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
            if script:
                step_name = "the modules' neutralize.sql (odoo neutralize --stdout)"
                _run_odoo_script(cur, script)
                applied.append("odoo.neutralize")
            for step in _STEPS:
                reason = _skip_reason(step, catalog, masked)
                if reason is not None:
                    skipped.append(f"{step.name} ({reason})")
                    continue
                step_name = f"neutralisation step {step.name}"
                found = step.run(cur, catalog, mail) or {}
                removed |= {target: count for target, count in found.items() if count}
                applied.append(step.name)
            step_name = "checking the neutralisation"
            _verify(cur, catalog, mail)
    except psycopg.Error as exc:
        raise _failure(conn, step_name, exc, code="neutralize_failed") from exc
    return NeutralizeReport(tuple(applied), tuple(skipped), removed)


_MARK = "odooops.neutralizing"


def _run_odoo_script(cur: psycopg.Cursor[Any], script: str) -> None:
    """Run the modules' scripts (several statements, no parameters: the simple protocol)
    and make sure they left the transaction open: a ``COMMIT`` in a script would commit half
    a neutralisation. A transaction-local setting made before is gone if it ended."""
    token = uuid.uuid4().hex
    cur.execute("SELECT set_config(%s, %s, true)", (_MARK, token))
    cur.execute(script.encode())
    cur.execute("SELECT current_setting(%s, true)", (_MARK,))
    row = cur.fetchone()
    if row is None or row[0] != token:
        raise DriverError(
            "a module's data/neutralize.sql ends the transaction (COMMIT, ROLLBACK or END): "
            "the neutralisation was refused and the copy is not used",
            code="neutralize_script_refused",
            retryable=False,
            remediation="grep -rniE '^(commit|rollback|end)' */data/neutralize.sql in the "
            "app repository; remove the statement, push, then: odooops reconcile",
        )


def _verify(cur: psycopg.Cursor[Any], catalog: _Catalog, mail: MailTarget | None) -> None:
    """Fail closed: what a neutralised copy must not have, checked inside the transaction."""
    left: list[str] = []
    if catalog.has("ir_cron", "active") and catalog.has("ir_model_data", "res_id", "model"):
        cur.execute(
            "SELECT count(*) FROM ir_cron AS c WHERE c.active AND NOT EXISTS ("
            " SELECT 1 FROM ir_model_data AS d WHERE d.res_id = c.id AND d.model = 'ir.cron'"
            " AND d.module = 'base' AND d.name = 'autovacuum_job')"
        )
        if count := _count(cur):
            left.append(f"{count} active scheduled action(s) besides base.autovacuum_job")
    if catalog.has("ir_mail_server", "active", "name"):
        ours = _DUMMY_NAME if mail is None else CATCHER_NAME
        cur.execute("SELECT count(*) FROM ir_mail_server WHERE active AND name <> %s", (ours,))
        if count := _count(cur):
            left.append(f"{count} active outgoing mail server(s) besides {ours!r}")
    if catalog.has("ir_config_parameter", "key", "value"):
        cur.execute(
            "SELECT 1 FROM ir_config_parameter WHERE key = 'database.is_neutralized'"
            " AND lower(value) = 'true'"
        )
        if cur.fetchone() is None:
            left.append("database.is_neutralized is not set")
    if left:
        raise DriverError(
            "the copy is not neutralised after every step: " + "; ".join(left) + "; nothing "
            "was changed",
            code="neutralize_unverified",
            retryable=False,
            remediation="a module's data/neutralize.sql or a trigger re-enables what the steps "
            "turned off: odooops logs ENV, fix it in the app repository, push, then: "
            "odooops reconcile",
        )


def _count(cur: psycopg.Cursor[Any]) -> int:
    row = cur.fetchone()
    return int(row[0]) if row else 0


def point_mail(conn: psycopg.Connection[Any], mail: MailTarget) -> None:
    """Point the outgoing mail of a copy of a golden copy at its own environment's catcher.

    The golden copy was neutralised once, without a catcher (Odoo's unreachable dummy is its
    one active server); the catcher's login is per environment, so this one step is redone
    on each copy, in one transaction, and checked like the neutralisation is."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            catalog = _catalog(cur)
            if catalog.has("ir_mail_server", "active", "name", "smtp_host", "smtp_port"):
                _mail_servers(cur, catalog, mail)
                _verify(cur, catalog, mail)
    except psycopg.Error as exc:
        raise _failure(conn, "pointing mail at the catcher", exc, code="neutralize_failed") from exc


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
