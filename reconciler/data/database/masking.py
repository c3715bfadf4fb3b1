"""Masking of personal data in a non-production copy, by rules from ``masking.yaml``.

A copy of production handed to developers keeps its structure and volumes but must not carry
the names, addresses, phone numbers and e-mails of real people. Masking replaces each such
value by a plausible fake derived from a keyed hash of the original:

- deterministic: the same value with the same salt always gives the same mask, in every
  table, so an address masked in ``res_partner.email`` equals the same address masked in
  ``mail_message.email_from`` or ``res_users.login``, and searches and joins on it still work;
- keyed: the hash covers a key derived from the salt (an HMAC of it, so the salt itself never
  reaches the server), so nobody can confirm a guess ("is this jane@acme.com?") by hashing it
  without the salt. PostgreSQL's built-in ``sha256()`` does the hashing, so no extension
  (pgcrypto) is needed or created;
- set-based: one ``UPDATE`` per table, evaluated by the server, never a row through Python;
- all or nothing: one transaction, so a failure leaves the copy as it was.

NULL and empty values stay as they are. Rows kept unmasked: the users created by ``base`` (the
administrator, ``__system__``, the public and template users) with their partners, and the
partners of the companies (``res_company.partner_id``), so one can still log in as admin and
documents still show the company; rules may keep more rows, never by free SQL (see
``schemas/masking.schema.json``). Keep conditions are read before any table is masked, so
they see the original data whatever the order of the rules. Credentials are not masking's:
neutralisation removes them from every user of a masked copy, the admin's password too, and
the copy then gets its environment's own administrator password (``reconciler.data.credentials``).

Columns and tables that do not exist are skipped (the rules name columns of several Odoo
releases and of optional modules). Odoo defines no triggers on its tables, so none need to
be disabled; foreign keys are untouched because only text columns change.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from reconciler.core.errors import DriverError, InvalidState, OdooOpsError
from reconciler.core.model import SecretRef

__all__ = [
    "DEFAULT_RULES",
    "ColumnMask",
    "KeepFrom",
    "Kind",
    "MaskReport",
    "MaskRule",
    "MaskingRules",
    "load_rules",
    "mask",
]

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
"""Table and column names accepted in rules (``schemas/masking.schema.json`` uses the same)."""

EMAIL_DOMAIN = "example.invalid"  # RFC 2606: can never deliver anywhere
_TEXT_TYPES = frozenset({"character varying", "text", "character"})
_KEY_CONTEXT = b"odooops masking v1"

Scalar = str | int | bool | None
"""A value a keep condition compares a column with."""


class Kind(StrEnum):
    """How a column is masked (the values of ``masking.yaml``)."""

    EMAIL = "email"  # user.<16 hex>@example.invalid; "Name <addr>" masks as addr alone
    PHONE = "phone"  # +1 NXX 555 01DD: a fictional North American number
    NAME = "name"  # "<label> 3f2a9c"
    STREET = "street"  # "Street 3f2a9c 42"
    CITY = "city"  # "City 3f2a9c"
    ZIP = "zip"  # five digits
    TEXT = "text"  # "Masked text 3f2a9c1d" (valid as plain text and as HTML)
    VAT = "vat"  # the original two-letter country prefix, if any, and nine digits
    IBAN = "iban"  # a German IBAN with valid check digits
    NULL = "null"  # NULL (skipped on NOT NULL columns)
    FIXED = "fixed"  # the rule's text, written {fixed: TEXT}
    KEEP = "keep"  # not masked: removes a column of a built-in rule


@dataclass(frozen=True)
class ColumnMask:
    """One column of a rule: its kind, and the options some kinds take."""

    column: str
    kind: Kind
    value: str | None = None  # the text of a FIXED column
    label: str | None = None  # the word of a NAME mask; "Name" when unset
    unique: bool = False  # the column has a unique index: duplicate masks get "-<id>"


@dataclass(frozen=True)
class KeepFrom:
    """Rows whose ``match`` column is among the values of ``table.column`` are kept."""

    table: str
    column: str
    where: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()
    match: str = "id"


@dataclass(frozen=True)
class MaskRule:
    """How one table is masked, and which of its rows are kept as they are."""

    table: str
    columns: tuple[ColumnMask, ...]
    keep_ids: tuple[int, ...] = ()
    keep_where: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()  # column -> any of values
    keep_ids_from: tuple[KeepFrom, ...] = ()

    def column(self, name: str) -> ColumnMask | None:
        return next((c for c in self.columns if c.column == name), None)


@dataclass(frozen=True)
class MaskingRules:
    """Every rule to apply, in order, and where the salt comes from (``None``: the daemon's)."""

    rules: tuple[MaskRule, ...]
    salt: SecretRef | None = None

    def rule(self, table: str) -> MaskRule | None:
        return next((r for r in self.rules if r.table == table), None)


@dataclass(frozen=True)
class MaskReport:
    """Rows changed per table, the time it took, and what was skipped and why."""

    rows: Mapping[str, int]
    seconds: float
    skipped: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- built-in rules


def _rule(
    table: str,
    columns: Mapping[str, Kind | tuple[Kind, str]],
    *,
    unique: Iterable[str] = (),
    keep_ids_from: tuple[KeepFrom, ...] = (),
) -> MaskRule:
    """A built-in rule; ``(Kind.NAME, "Partner")`` gives a name its label."""
    unique = set(unique)
    masks = []
    for name, spec in columns.items():
        kind, label = spec if isinstance(spec, tuple) else (spec, None)
        masks.append(ColumnMask(name, kind, label=label, unique=name in unique))
    return MaskRule(table, tuple(masks), keep_ids_from=keep_ids_from)


_E, _P, _N, _T = Kind.EMAIL, Kind.PHONE, Kind.NULL, Kind.TEXT  # short, for the table below

DEFAULT_RULES: tuple[MaskRule, ...] = (
    _rule(
        "res_partner",
        {
            "name": (Kind.NAME, "Partner"),
            "display_name": (Kind.NAME, "Partner"),
            "complete_name": (Kind.NAME, "Partner"),
            "commercial_company_name": (Kind.NAME, "Partner"),
            "email": _E,
            "email_normalized": _E,
            "phone": _P,
            "mobile": _P,
            "phone_sanitized": _N,
            "street": Kind.STREET,
            "street2": Kind.STREET,
            "city": Kind.CITY,
            "zip": Kind.ZIP,
            "vat": Kind.VAT,
            "comment": _T,
            "website": _N,
            "contact_address_complete": _N,
            "signup_token": _N,
            "partner_latitude": _N,
            "partner_longitude": _N,
        },
    ),
    # Passwords, TOTP secrets and OAuth tokens are credentials: neutralisation removes them
    # from every user of the copy, kept ones included (see neutralize.py).
    _rule("res_users", {"login": _E, "signature": _N, "oauth_uid": _N}, unique=("login",)),
    _rule(
        "res_partner_bank",
        {
            "acc_number": Kind.IBAN,
            "sanitized_acc_number": Kind.IBAN,
            "acc_holder_name": (Kind.NAME, "Holder"),
        },
        # the companies' own accounts are printed on invoices: not personal data
        keep_ids_from=(KeepFrom("res_company", "partner_id", match="partner_id"),),
    ),
    _rule(
        "mail_message",
        {
            "subject": _T,
            "body": _T,
            "email_from": _E,
            "reply_to": _E,
            "record_name": (Kind.NAME, "Record"),
        },
    ),
    _rule(
        "mail_mail",
        {"body_html": _T, "email_to": _E, "email_cc": _E, "headers": _N},
    ),
    _rule(
        "mail_tracking_value",
        {"old_value_char": _T, "new_value_char": _T, "old_value_text": _T, "new_value_text": _T},
    ),
    _rule("account_move", {"invoice_partner_display_name": (Kind.NAME, "Partner")}),
    _rule(
        "hr_employee",
        {
            "name": (Kind.NAME, "Employee"),
            "work_email": _E,
            "work_phone": _P,
            "mobile_phone": _P,
            "private_email": _E,
            "private_phone": _P,
            "private_street": Kind.STREET,
            "private_street2": Kind.STREET,
            "private_city": Kind.CITY,
            "private_zip": Kind.ZIP,
            "place_of_birth": Kind.CITY,
            "emergency_contact": (Kind.NAME, "Contact"),
            "emergency_phone": _P,
            "spouse_complete_name": (Kind.NAME, "Spouse"),
            "identification_id": _N,
            "passport_id": _N,
            "ssnid": _N,
            "sinid": _N,
            "permit_no": _N,
            "visa_no": _N,
            "private_car_plate": _N,
            "birthday": _N,
            "spouse_birthdate": _N,
            "pin": _N,
        },
    ),
    _rule("resource_resource", {"name": (Kind.NAME, "Employee")}),
    _rule(
        "crm_lead",
        {
            "name": _T,
            "contact_name": (Kind.NAME, "Contact"),
            "partner_name": (Kind.NAME, "Partner"),
            "email_from": _E,
            "email_normalized": _E,
            "email_cc": _E,
            "phone": _P,
            "mobile": _P,
            "phone_sanitized": _N,
            "street": Kind.STREET,
            "street2": Kind.STREET,
            "city": Kind.CITY,
            "zip": Kind.ZIP,
            "website": _N,
            "description": _T,
        },
    ),
    *(
        _rule(
            table,
            {
                "partner_name": (Kind.NAME, "Applicant"),
                "email_from": _E,
                "email_normalized": _E,
                "partner_phone": _P,
                "partner_phone_sanitized": _N,
                "linkedin_profile": _N,
            },
        )
        for table in ("hr_applicant", "hr_candidate")
    ),
    _rule("calendar_attendee", {"email": _E, "common_name": (Kind.NAME, "Partner")}),
    _rule("mailing_contact", {"name": (Kind.NAME, "Contact"), "email": _E}),
    _rule("mailing_trace", {"email": _E}),
)
"""What is masked when ``masking.yaml`` is absent, or says ``keep_defaults: true``."""


# ------------------------------------------------------------------------------ load_rules


def _identifier(name: Any, where: str) -> str:
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name) or len(name) > 63:
        raise InvalidState(
            f"masking.yaml: {where} {name!r} is not a table or column name",
            code="invalid_masking_rule",
            remediation="use lowercase letters, digits and underscores in masking.yaml,"
            " then run: odooops validate .",
        )
    return name


def _values(raw: Any) -> tuple[Scalar, ...]:
    return tuple(raw) if isinstance(raw, list) else (raw,)


def _conditions(
    raw: Mapping[str, Any] | None, where: str
) -> tuple[tuple[str, tuple[Scalar, ...]], ...]:
    return tuple((_identifier(k, where), _values(v)) for k, v in (raw or {}).items())


def _column(table: str, name: str, raw: Any) -> ColumnMask:
    """A column written as a kind, as null, as {kind, label, unique} or as {fixed: TEXT}."""
    _identifier(name, f"column of {table}")
    if raw is None or isinstance(raw, str):
        return ColumnMask(name, Kind(raw or "null"))
    if "fixed" in raw:
        return ColumnMask(name, Kind.FIXED, value=str(raw["fixed"]))
    return ColumnMask(
        name, Kind(raw["kind"]), label=raw.get("label"), unique=bool(raw.get("unique", False))
    )


def _merge(base: MaskRule | None, raw: Mapping[str, Any]) -> MaskRule:
    """``raw`` over ``base``: columns replace columns by name, keep options add up."""
    table = _identifier(raw["table"], "table")
    columns = {c.column: c for c in (base.columns if base else ())}
    for name, spec in (raw.get("columns") or {}).items():
        columns[name] = _column(table, name, spec)
    keep_from = tuple(
        KeepFrom(
            _identifier(ref["table"], "keep_ids_from table"),
            _identifier(ref["column"], "keep_ids_from column"),
            _conditions(ref.get("where"), "keep_ids_from where column"),
            _identifier(ref.get("match", "id"), "keep_ids_from match"),
        )
        for ref in raw.get("keep_ids_from") or ()
    )
    return MaskRule(
        table,
        tuple(c for c in columns.values() if c.kind is not Kind.KEEP),
        keep_ids=(base.keep_ids if base else ()) + tuple(raw.get("keep_ids") or ()),
        keep_where=(base.keep_where if base else ())
        + _conditions(raw.get("keep_where"), "keep_where column"),
        keep_ids_from=(base.keep_ids_from if base else ()) + keep_from,
    )


def load_rules(doc: Mapping[str, Any] | None) -> MaskingRules:
    """The rules of a schema-valid ``masking.yaml`` (``None``: the built-in rules alone).

    With ``keep_defaults`` (the default) the file's rules refine ``DEFAULT_RULES`` table by
    table: a column given again replaces the built-in one, ``keep`` removes it, and
    ``enabled: false`` removes the whole table. Without it only the file's rules apply.
    """
    if doc is None:
        return MaskingRules(DEFAULT_RULES)
    keep_defaults = bool(doc.get("keep_defaults", True))
    rules: dict[str, MaskRule] = {r.table: r for r in DEFAULT_RULES} if keep_defaults else {}
    for raw in doc.get("rules") or ():
        table = _identifier(raw.get("table"), "table")
        if raw.get("enabled", True) is False:
            rules.pop(table, None)
            continue
        rules[table] = _merge(rules.get(table), raw)
    salt = SecretRef.parse(doc.get("salt"))
    return MaskingRules(tuple(r for r in rules.values() if r.columns), salt)


# ---------------------------------------------------------------------------------- mask


@dataclass(frozen=True)
class _Col:
    type: str
    nullable: bool
    max_length: int | None


def _catalog(cur: psycopg.Cursor[Any], tables: Sequence[str]) -> dict[str, dict[str, _Col]]:
    """Base tables (never views: Odoo's reports are views) with their columns."""
    cur.execute(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES',"
        " c.character_maximum_length"
        " FROM information_schema.columns AS c JOIN information_schema.tables AS t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " AND c.table_name = ANY(%s)",
        (list(tables),),
    )
    out: dict[str, dict[str, _Col]] = {}
    for table, column, type_, nullable, length in cur.fetchall():
        out.setdefault(table, {})[column] = _Col(type_, bool(nullable), length)
    return out


def _digest(kind: Kind, norm: sql.Composable) -> sql.Composable:
    """64 hex digits: SHA-256 of the key, the kind and the normalised value."""
    return sql.SQL("encode(sha256(convert_to({} || {} || {}, 'UTF8')), 'hex')").format(
        sql.Placeholder("key"), sql.Literal(f"|{kind.value}|"), norm
    )


def _number(digest: sql.Composable, start: int) -> sql.Composable:
    """A number 0..2**32-1 from eight hex digits of ``digest`` starting at ``start`` (1-based)."""
    return sql.SQL("(('x' || substr({}, {}, 8))::bit(32)::bigint)").format(
        digest, sql.Literal(start)
    )


def _mask_expr(col: sql.Composable, mask: ColumnMask) -> sql.Composable:
    """The masked value of a non-empty ``col`` (NULL and '' are left alone by the caller)."""
    f = sql.SQL
    trimmed = f("lower(btrim({}))").format(col)
    alnum = f("upper(regexp_replace({}, '[^A-Za-z0-9]', '', 'g'))").format(col)
    kind = mask.kind
    if kind is Kind.EMAIL:
        address = f("lower(btrim(coalesce(substring({} from '<([^<>]*)>'), {})))").format(col, col)
        return f("'user.' || substr({}, 1, 16) || {}").format(
            _digest(kind, address), sql.Literal(f"@{EMAIL_DOMAIN}")
        )
    if kind is Kind.PHONE:
        digits = f("coalesce(nullif(regexp_replace({}, '[^0-9]', '', 'g'), ''), {})").format(
            col, trimmed
        )
        h = _digest(kind, digits)
        return f(
            "'+1 ' || (200 + {} %% 800) || ' 555 01' || lpad(({} %% 100)::text, 2, '0')"
        ).format(_number(h, 1), _number(h, 9))
    if kind in (Kind.NAME, Kind.STREET, Kind.CITY):
        h = _digest(kind, f("regexp_replace({}, '\\s+', ' ', 'g')").format(trimmed))
        if kind is Kind.NAME:
            return f("{} || substr({}, 1, 6)").format(sql.Literal(f"{mask.label or 'Name'} "), h)
        if kind is Kind.CITY:
            return f("'City ' || substr({}, 1, 6)").format(h)
        return f("'Street ' || substr({}, 1, 6) || ' ' || (1 + {} %% 999)").format(h, _number(h, 9))
    if kind is Kind.ZIP:
        return f("lpad(({} %% 100000)::text, 5, '0')").format(_number(_digest(kind, alnum), 1))
    if kind is Kind.TEXT:
        return f("'Masked text ' || substr({}, 1, 8)").format(_digest(kind, col))
    if kind is Kind.VAT:
        prefix = f("coalesce(substring(upper(btrim({})) from '^[A-Z]{{2}}'), '')").format(col)
        return f("{} || lpad(({} %% 1000000000)::text, 9, '0')").format(
            prefix, _number(_digest(kind, alnum), 1)
        )
    if kind is Kind.IBAN:
        h = _digest(kind, alnum)
        bban = f(
            "(lpad(({} %% 1000000000)::text, 9, '0') || lpad(({} %% 1000000000)::text, 9, '0'))"
        ).format(_number(h, 1), _number(h, 9))
        # ISO 13616: check digits make (BBAN || "DE00" as digits) mod 97 equal 1; D=13, E=14.
        return f(
            "'DE' || lpad((98 - (({} || '131400')::numeric %% 97))::text, 2, '0') || {}"
        ).format(bban, bban)
    if kind is Kind.FIXED:
        return sql.Literal(mask.value or "")
    raise AssertionError(f"no expression for {kind}")  # NULL and KEEP never get here


@dataclass(frozen=True)
class _Plan:
    """One table's UPDATE, or why there is none."""

    table: str
    columns: tuple[tuple[ColumnMask, _Col], ...] = ()
    skipped: tuple[str, ...] = ()


def _plan(rule: MaskRule, catalog: Mapping[str, Mapping[str, _Col]]) -> _Plan:
    table = catalog.get(rule.table)
    if table is None:
        return _Plan(rule.table, skipped=(f"{rule.table} (table missing)",))
    usable: list[tuple[ColumnMask, _Col]] = []
    skipped: list[str] = []
    for mask in rule.columns:
        where = f"{rule.table}.{mask.column}"
        col = table.get(mask.column)
        if col is None:
            skipped.append(f"{where} (column missing)")
        elif mask.kind is Kind.NULL and not col.nullable:
            skipped.append(f"{where} (NOT NULL: cannot be set to null)")
        elif mask.kind is not Kind.NULL and col.type not in _TEXT_TYPES:
            skipped.append(f"{where} ({col.type}: only text columns take a {mask.kind} mask)")
        else:
            usable.append((mask, col))
    if usable and "id" not in table and _keeps(rule):
        return _Plan(rule.table, skipped=(f"{rule.table} (no id column to keep rows by)",))
    return _Plan(rule.table, tuple(usable), tuple(skipped))


def _keeps(rule: MaskRule) -> bool:
    return bool(
        rule.keep_ids or rule.keep_where or rule.keep_ids_from or rule.table in _BUILTIN_KEEP_TABLES
    )


# Rows never masked whatever the rules say: see the module docstring.
_BUILTIN_KEEP_TABLES = frozenset({"res_users", "res_partner"})
_ADMIN_IDS = (1, 2)  # __system__ and admin, also when ir_model_data does not name them


def _base_records(model: str, catalog: Mapping[str, Mapping[str, _Col]]) -> sql.Composable:
    """Ids of the records of ``model`` created by the ``base`` module (an empty set if unknown)."""
    if not {"model", "module", "res_id"} <= set(catalog.get("ir_model_data", {})):
        return sql.SQL("SELECT NULL::integer WHERE false")
    return sql.SQL(
        "SELECT res_id FROM ir_model_data WHERE model = {} AND module = 'base'"
        " AND res_id IS NOT NULL"
    ).format(sql.Literal(model))


def _builtin_keep(table: str, catalog: Mapping[str, Mapping[str, _Col]]) -> list[sql.Composable]:
    """Conditions on alias ``t`` for the rows kept by definition (admin, companies)."""

    def admins(alias: str) -> sql.Composed:
        return sql.SQL("{0}.id IN ({1}) OR {0}.id IN ({2})").format(
            sql.Identifier(alias),
            sql.SQL(", ").join(map(sql.Literal, _ADMIN_IDS)),
            _base_records("res.users", catalog),
        )

    if table == "res_users":
        return [admins("t")]
    if table != "res_partner":
        return []
    found: list[sql.Composable] = [
        sql.SQL("t.id IN ({})").format(_base_records("res.partner", catalog))
    ]
    if "partner_id" in catalog.get("res_company", {}):
        found.append(sql.SQL("t.id IN (SELECT partner_id FROM res_company)"))
    if "partner_id" in catalog.get("res_users", {}):
        found.append(
            sql.SQL("t.id IN (SELECT u.partner_id FROM res_users AS u WHERE {})").format(
                admins("u")
            )
        )
    return found


def _condition(
    alias: str,
    conditions: Iterable[tuple[str, tuple[Scalar, ...]]],
    columns: Mapping[str, _Col],
    params: list[Any],
) -> sql.Composable | None:
    """``alias.col`` equals one of the values, for every condition; None if a column is absent."""
    parts: list[sql.Composable] = []
    for column, values in conditions:
        if column not in columns:
            return None
        alts = []
        for value in values:
            params.append(value)
            alts.append(
                sql.SQL("{}.{} IS NOT DISTINCT FROM %s").format(
                    sql.Identifier(alias), sql.Identifier(column)
                )
            )
        parts.append(sql.SQL("({})").format(sql.SQL(" OR ").join(alts)))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def _kept_ids(
    cur: psycopg.Cursor[Any],
    rule: MaskRule,
    catalog: Mapping[str, Mapping[str, _Col]],
    notes: list[str],
) -> list[int]:
    """Ids of the rows of ``rule.table`` to keep, read from the data as it is now."""
    own = catalog[rule.table]
    params: list[Any] = []
    found = _builtin_keep(rule.table, catalog)
    if rule.keep_ids:
        params.append(list(rule.keep_ids))
        found.append(sql.SQL("t.id = ANY(%s)"))
    if rule.keep_where:
        cond = _condition("t", rule.keep_where, own, params)
        if cond is None:
            notes.append(f"{rule.table} keep_where (a column is missing: it keeps nothing)")
        else:
            found.append(cond)
    for ref in rule.keep_ids_from:
        other = catalog.get(ref.table, {})
        where = _condition("r", ref.where, other, params) if ref.column in other else None
        if where is None or ref.match not in own:
            notes.append(
                f"{rule.table} keep_ids_from {ref.table}.{ref.column}"
                " (a table or column is missing: it keeps nothing)"
            )
            continue
        found.append(
            sql.SQL("t.{} IN (SELECT r.{} FROM {} AS r WHERE r.{} IS NOT NULL AND {})").format(
                sql.Identifier(ref.match),
                sql.Identifier(ref.column),
                sql.Identifier(ref.table),
                sql.Identifier(ref.column),
                where,
            )
        )
    if not found:
        return []
    cur.execute(
        sql.SQL("SELECT t.id FROM {} AS t WHERE {}").format(
            sql.Identifier(rule.table), sql.SQL(" OR ").join(found)
        ),
        params,
    )
    return [row[0] for row in cur.fetchall()]


def _update(plan: _Plan, kept: list[int], has_id: bool, params: dict[str, Any]) -> sql.Composed:
    """One UPDATE for the whole table; unique columns go through a window to stay unique."""
    values: list[tuple[ColumnMask, sql.Composable]] = []
    touched: list[sql.Composable] = []
    for mask, col in plan.columns:
        ref = sql.SQL("t.{}").format(sql.Identifier(mask.column))
        if mask.kind is Kind.NULL:
            values.append((mask, sql.NULL))
            touched.append(sql.SQL("{} IS NOT NULL").format(ref))
            continue
        expr = _mask_expr(ref, mask)
        if col.max_length is not None:
            expr = sql.SQL("left({}, {})").format(expr, sql.Literal(col.max_length))
        values.append(
            (
                mask,
                sql.SQL("CASE WHEN {0} IS NULL OR {0} = '' THEN {0} ELSE {1} END").format(
                    ref, expr
                ),
            )
        )
        touched.append(sql.SQL("({0} IS NOT NULL AND {0} <> '')").format(ref))
    where = sql.SQL("({})").format(sql.SQL(" OR ").join(touched))
    if kept:
        params["kept"] = kept
        where = sql.SQL("{} AND NOT (t.id = ANY(%(kept)s))").format(where)
    table = sql.Identifier(plan.table)
    unique = [m for m, _ in values if m.unique and m.kind is not Kind.NULL]
    if not unique or not has_id:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(m.column), v) for m, v in values
        )
        return sql.SQL("UPDATE {} AS t SET {} WHERE {}").format(table, assignments, where)
    # Two values may mask alike (addresses differing only in case): the later row gets its
    # id appended to the local part, so a unique index never sees a duplicate.
    selected = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(v, sql.Identifier(m.column)) for m, v in values
    )
    outer = []
    for mask, _ in values:
        m = sql.SQL("m.{}").format(sql.Identifier(mask.column))
        if mask in unique:
            m = sql.SQL(
                "CASE WHEN {0} IS NULL OR {0} = '' OR row_number() OVER (PARTITION BY {0}"
                " ORDER BY m.id) = 1 THEN {0} WHEN position('@' in {0}) > 0 THEN"
                " regexp_replace({0}, '@', '-' || m.id || '@') ELSE {0} || '-' || m.id END"
            ).format(m)
        outer.append(sql.SQL("{} AS {}").format(m, sql.Identifier(mask.column)))
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = s.{0}").format(sql.Identifier(m.column)) for m, _ in values
    )
    return sql.SQL(
        "UPDATE {table} AS t SET {assignments} FROM (SELECT m.id, {outer} FROM"
        " (SELECT t.id, {selected} FROM {table} AS t WHERE {where}) AS m) AS s WHERE t.id = s.id"
    ).format(
        table=table,
        assignments=assignments,
        outer=sql.SQL(", ").join(outer),
        selected=selected,
        where=where,
    )


def _key(salt: str) -> str:
    """The hashing key: an HMAC of the salt, so the salt never travels to the server."""
    return hmac.new(salt.encode(), _KEY_CONTEXT, hashlib.sha256).hexdigest()


def mask(conn: psycopg.Connection[Any], rules: MaskingRules, salt: str) -> MaskReport:
    """Mask the database of ``conn`` by ``rules``, keyed by ``salt``, in one transaction.

    On an idle connection the transaction is committed here; inside one the caller holds,
    it is a savepoint. Raises ``DriverError`` when a statement fails (nothing is changed);
    the error never quotes a row, since the server's detail line may hold personal data.
    """
    if not salt:
        raise OdooOpsError(
            "masking needs a salt: without one, anybody could confirm a guessed e-mail address"
            " by hashing it",
            code="masking_salt_missing",
            remediation="set salt: {env: ODOOOPS_SECRET_MASK_SALT} in masking.yaml and export"
            " ODOOOPS_SECRET_MASK_SALT=$(openssl rand -hex 32) for the daemon",
        )
    started = time.monotonic()
    params: dict[str, Any] = {"key": _key(salt)}
    rows: dict[str, int] = {}
    notes: list[str] = []
    table = "the catalogue"
    try:
        with conn.transaction(), conn.cursor() as cur:
            wanted = {"ir_model_data", "res_users", "res_company"}
            for rule in rules.rules:
                wanted |= {rule.table, *(ref.table for ref in rule.keep_ids_from)}
            catalog = _catalog(cur, sorted(wanted))
            plans = [_plan(rule, catalog) for rule in rules.rules]
            # Every keep set is read before the first UPDATE: conditions see original data.
            kept: list[list[int]] = []
            for rule, plan in zip(rules.rules, plans, strict=True):
                notes.extend(plan.skipped)
                needs_keep = plan.columns and "id" in catalog[rule.table] and _keeps(rule)
                kept.append(_kept_ids(cur, rule, catalog, notes) if needs_keep else [])
            for plan, ids in zip(plans, kept, strict=True):
                if not plan.columns:
                    continue
                table = plan.table
                statement_params = dict(params)
                cur.execute(
                    _update(plan, ids, "id" in catalog[plan.table], statement_params),
                    statement_params,
                )
                rows[plan.table] = cur.rowcount
    except psycopg.Error as exc:
        info = conn.info
        reason = exc.diag.message_primary or str(exc).splitlines()[0]
        raise DriverError(
            f"masking {table} failed on database {info.dbname}: {reason}; nothing was changed",
            code="mask_failed",
            retryable=False,
            remediation=f"psql -h {info.host} -p {info.port} -U {info.user} -d {info.dbname}"
            f" -c '\\d {table}'  (compare with masking.yaml, then run: odooops reconcile)",
        ) from exc
    return MaskReport(rows, time.monotonic() - started, tuple(notes))
