"""Specification of masking.yaml's reading: built-in rules, refinements and replacements."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from reconciler.core.errors import InvalidState
from reconciler.core.model import SecretRef
from reconciler.core.validation import SCHEMA_DIR
from reconciler.data.database.masking import (
    DEFAULT_RULES,
    IDENTIFIER,
    ColumnMask,
    KeepFrom,
    Kind,
    MaskingRules,
    MaskRule,
    load_rules,
)


def doc(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, **top, "rules": list(rules)}


def kinds(rules: MaskingRules, table: str) -> dict[str, Kind]:
    rule = rules.rule(table)
    assert rule is not None
    return {c.column: c.kind for c in rule.columns}


def test_no_file_means_the_built_in_rules() -> None:
    """Without masking.yaml the defaults apply and the daemon's salt is used."""
    assert load_rules(None) == MaskingRules(DEFAULT_RULES, None)


def test_a_file_without_rules_keeps_the_defaults() -> None:
    """keep_defaults is true unless the file says otherwise."""
    assert load_rules({"version": 1}).rules == DEFAULT_RULES


def test_the_defaults_cover_partners_users_messages_and_bank_accounts() -> None:
    """The personal data every Odoo database has is in the built-in rules."""
    rules = load_rules(None)
    assert kinds(rules, "res_partner")["email"] is Kind.EMAIL
    assert kinds(rules, "res_partner")["phone"] is Kind.PHONE
    assert kinds(rules, "res_partner")["name"] is Kind.NAME
    assert kinds(rules, "res_users")["login"] is Kind.EMAIL
    assert kinds(rules, "mail_message")["email_from"] is Kind.EMAIL
    assert kinds(rules, "res_partner_bank")["acc_number"] is Kind.IBAN
    assert rules.rule("res_company") is None


def test_logins_are_masked_as_unique() -> None:
    """res_users.login has a unique index, so its masks are kept unique."""
    rule = load_rules(None).rule("res_users")
    assert rule is not None
    login = rule.column("login")
    assert login is not None and login.unique


def test_every_default_identifier_is_one_the_schema_accepts() -> None:
    """Built-in rules obey the same identifier rule as the file."""
    for rule in DEFAULT_RULES:
        assert IDENTIFIER.fullmatch(rule.table)
        for column in rule.columns:
            assert IDENTIFIER.fullmatch(column.column), f"{rule.table}.{column.column}"


def test_a_file_column_replaces_the_built_in_one() -> None:
    """Giving a default column again changes only that column."""
    rules = load_rules(doc({"table": "res_partner", "columns": {"city": "null"}}))
    partner = kinds(rules, "res_partner")
    assert partner["city"] is Kind.NULL
    assert partner["email"] is Kind.EMAIL


def test_a_file_column_is_added_to_the_built_in_rule() -> None:
    """A new column of a default table joins its rule."""
    rules = load_rules(doc({"table": "res_partner", "columns": {"x_studio_nickname": "name"}}))
    assert kinds(rules, "res_partner")["x_studio_nickname"] is Kind.NAME
    assert len(kinds(rules, "res_partner")) == len(DEFAULT_RULES[0].columns) + 1


def test_keep_removes_a_built_in_column() -> None:
    """kind keep leaves a column as it is."""
    rules = load_rules(doc({"table": "res_partner", "columns": {"zip": "keep"}}))
    assert "zip" not in kinds(rules, "res_partner")


def test_enabled_false_removes_a_built_in_table() -> None:
    """A whole default table can be left unmasked."""
    rules = load_rules(doc({"table": "mail_message", "enabled": False}))
    assert rules.rule("mail_message") is None
    assert rules.rule("res_partner") is not None


def test_a_rule_whose_columns_are_all_kept_is_dropped() -> None:
    """Nothing left to mask: no rule (and no UPDATE) for the table."""
    rules = load_rules(doc({"table": "mailing_trace", "columns": {"email": "keep"}}))
    assert rules.rule("mailing_trace") is None


def test_without_defaults_only_the_files_rules_apply() -> None:
    """keep_defaults: false starts from nothing."""
    rules = load_rules(
        doc({"table": "x_patient", "columns": {"x_name": "name"}}, keep_defaults=False)
    )
    assert rules.rules == (MaskRule("x_patient", (ColumnMask("x_name", Kind.NAME),)),)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("email", ColumnMask("c", Kind.EMAIL)),
        (None, ColumnMask("c", Kind.NULL)),
        ("null", ColumnMask("c", Kind.NULL)),
        ({"fixed": "redacted"}, ColumnMask("c", Kind.FIXED, value="redacted")),
        ({"kind": "name", "label": "Patient"}, ColumnMask("c", Kind.NAME, label="Patient")),
        ({"kind": "email", "unique": True}, ColumnMask("c", Kind.EMAIL, unique=True)),
    ],
    ids=["kind", "yaml null", "null kind", "fixed", "label", "unique"],
)
def test_column_forms(written: Any, expected: ColumnMask) -> None:
    """A column is a kind, null, or a mapping with kind and its options."""
    rules = load_rules(doc({"table": "t", "columns": {"c": written}}, keep_defaults=False))
    assert rules.rules[0].columns == (expected,)


def test_keep_options_are_read() -> None:
    """keep_ids, keep_where (a value or a list) and keep_ids_from become the rule's keeps."""
    rules = load_rules(
        doc(
            {
                "table": "res_partner",
                "keep_ids": [7, 9],
                "keep_where": {"is_company": True, "country_code": ["BE", "NL"]},
                "keep_ids_from": [
                    {"table": "res_users", "column": "partner_id", "where": {"share": False}},
                    {"table": "res_company", "column": "partner_id", "match": "parent_id"},
                ],
            }
        )
    )
    rule = rules.rule("res_partner")
    assert rule is not None
    assert rule.keep_ids == (7, 9)
    assert rule.keep_where == (("is_company", (True,)), ("country_code", ("BE", "NL")))
    assert rule.keep_ids_from == (
        KeepFrom("res_users", "partner_id", (("share", (False,)),)),
        KeepFrom("res_company", "partner_id", match="parent_id"),
    )
    assert kinds(rules, "res_partner")["email"] is Kind.EMAIL


def test_two_rules_for_one_table_refine_it_in_order() -> None:
    """A later rule for the same table wins column by column; keeps add up."""
    rules = load_rules(
        doc(
            {"table": "t", "columns": {"a": "email", "b": "phone"}, "keep_ids": [1]},
            {"table": "t", "columns": {"a": "text"}, "keep_ids": [2]},
            keep_defaults=False,
        )
    )
    rule = rules.rule("t")
    assert rule is not None
    assert {c.column: c.kind for c in rule.columns} == {"a": Kind.TEXT, "b": Kind.PHONE}
    assert rule.keep_ids == (1, 2)


def test_the_salt_reference_is_kept_for_the_daemon_to_resolve() -> None:
    """salt: {env: NAME} becomes a SecretRef; the value is never read here."""
    rules = load_rules({"version": 1, "salt": {"env": "ODOOOPS_SECRET_MASK_SALT"}})
    assert rules.salt == SecretRef(env="ODOOOPS_SECRET_MASK_SALT")


@pytest.mark.parametrize("table", ["res_partner; DROP TABLE res_users", "ResPartner", "1abc"])
def test_a_bad_identifier_is_refused_even_past_the_schema(table: str) -> None:
    """Defence in depth: load_rules itself refuses a name that is not an identifier."""
    with pytest.raises(InvalidState) as caught:
        load_rules(doc({"table": table, "columns": {"email": "email"}}))
    assert "odooops validate" in caught.value.remediation


# -------------------------------------------------------------------------------- schema


def validator() -> Draft202012Validator:
    resources = []
    for file in SCHEMA_DIR.glob("*.schema.json"):
        contents = json.loads(file.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents, DRAFT202012)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = registry.contents("https://odooops.dev/schemas/masking.schema.json")
    return Draft202012Validator(schema, registry=registry)


def test_the_documented_example_is_valid() -> None:
    """Every option at once, as the schema's descriptions show them."""
    example = {
        "version": 1,
        "salt": {"env": "ODOOOPS_SECRET_MASK_SALT"},
        "keep_defaults": True,
        "rules": [
            {
                "table": "res_partner",
                "columns": {
                    "email": "email",
                    "vat": None,
                    "ref": {"fixed": "REDACTED"},
                    "name": {"kind": "name", "label": "Customer"},
                    "zip": "keep",
                },
                "keep_ids": [42],
                "keep_where": {"is_company": True, "lang": ["fr_BE", "nl_BE"]},
                "keep_ids_from": [
                    {"table": "res_users", "column": "partner_id", "where": {"share": False}}
                ],
            },
            {"table": "mail_message", "enabled": False},
        ],
    }
    assert list(validator().iter_errors(example)) == []


@pytest.mark.parametrize(
    "column",
    [
        {"kind": "fixed"},
        "fixed",
        "hash",
        {"kind": "email", "fixed": "x"},
        {"kind": "name", "label": "1"},
        {"label": "Customer"},
        3,
    ],
    ids=[
        "kind fixed",
        "bare fixed",
        "unknown kind",
        "fixed and kind",
        "bad label",
        "no kind",
        "int",
    ],
)
def test_the_schema_refuses_malformed_columns(column: Any) -> None:
    """Kinds come from the list; a fixed text is {fixed: TEXT} alone."""
    document = doc({"table": "res_partner", "columns": {"email": column}})
    assert list(validator().iter_errors(document)) != []


def test_the_schema_requires_the_version() -> None:
    """version: 1 is required, so a later format can be told apart."""
    assert list(validator().iter_errors({"rules": []})) != []
