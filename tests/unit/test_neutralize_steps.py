"""Specification of the neutralisation step list: which step runs on which database, and why not.

The steps are data (module, tables, columns); these tests read the data against hand-made
catalogues, without a database. What each step does to real tables is tested on PostgreSQL
in tests/integration/test_neutralize_credentials.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.data.database import neutralize
from reconciler.data.database.neutralize import (
    _CREDENTIALS,
    _PAYMENT_SECRET,
    _STEPS,
    _Catalog,
    _clearable,
    _Place,
    _skip_reason,
    _Step,
)

TEXT = "text"


def catalog(modules: set[str], tables: Mapping[str, Mapping[str, str]]) -> _Catalog:
    """A catalogue from ``{table: {column: type}}``, every column nullable."""
    return _Catalog(
        {table: frozenset(cols) for table, cols in tables.items()},
        frozenset(modules),
        frozenset((t, c) for t, cols in tables.items() for c, kind in cols.items() if kind == TEXT),
    )


def step(name: str) -> _Step:
    return next(s for s in _STEPS if s.name == name)


def test_step_names_are_unique_and_named_for_their_module() -> None:
    """A report names each step once, as <module>.<what>."""
    names = [s.name for s in _STEPS]
    assert len(names) == len(set(names))
    for s in _STEPS:
        assert s.name.startswith(f"{s.module}."), s.name


def test_the_flag_comes_last_after_every_credential() -> None:
    """database.is_neutralized is written only together with everything it vouches for."""
    names = [s.name for s in _STEPS]
    assert names[-1] == "base.is_neutralized"
    assert {c.step for c in _CREDENTIALS} <= set(names)


def test_only_passwords_wait_for_masking() -> None:
    """Every credential goes from every copy; password hashes only from a masked one."""
    assert [c.step for c in _CREDENTIALS if c.masked_only] == ["base.passwords"]


USERS = {"id": "integer", "login": TEXT, "password": TEXT}
PARAMS = {"id": "integer", "key": TEXT, "value": TEXT}


@pytest.mark.parametrize(
    ("name", "modules", "tables", "masked", "reason"),
    [
        ("auth_passkey.passkeys", {"base"}, {"auth_passkey_key": {"id": "integer"}}, False,
         "module not installed"),
        ("auth_passkey.passkeys", {"base", "auth_passkey"}, {}, False,
         "table auth_passkey_key missing"),
        ("auth_passkey.passkeys", {"base", "auth_passkey"}, {"auth_passkey_key": {}}, False, None),
        ("auth_totp.secrets", {"base", "auth_totp"}, {"res_users": USERS}, False,
         "column res_users.totp_secret missing"),
        ("base.passwords", {"base"}, {"res_users": USERS}, False, "copy not masked"),
        ("base.passwords", {"base"}, {"res_users": USERS}, True, None),
        ("base.oauth_client_secrets", {"base"}, {"ir_config_parameter": PARAMS}, False, None),
        ("auth_oauth.provider_secrets", {"base", "auth_oauth"},
         {"auth_oauth_provider": {"client_id": TEXT}}, False,
         "column auth_oauth_provider.client_secret missing"),
        # One release keeps calendar tokens on the user, another on the user's settings.
        ("google_calendar.tokens", {"base", "google_calendar"},
         {"res_users_settings": {"google_calendar_rtoken": TEXT}}, False, None),
        ("google_calendar.tokens", {"base", "google_calendar"},
         {"res_users": {**USERS, "google_calendar_token": TEXT}}, False, None),
        ("google_calendar.tokens", {"base", "google_calendar"},
         {"res_users": USERS, "res_users_settings": {"id": "integer"}}, False,
         "column res_users_settings.google_calendar_rtoken missing"),
        ("microsoft_outlook.tokens", {"base", "microsoft_outlook"},
         {"fetchmail_server": {"microsoft_outlook_refresh_token": TEXT}}, False, None),
        ("payment.provider_keys", {"base", "payment"}, {"payment_provider": {"code": TEXT}},
         False, None),
        ("payment.providers", {"base", "payment"}, {"payment_provider": {"is_live": "boolean"}},
         False, None),
        ("payment.providers", {"base", "payment"}, {"payment_provider": {"code": TEXT}}, False,
         "column payment_provider.state missing"),
    ],
)  # fmt: skip
def test_a_step_runs_only_where_its_module_and_one_of_its_places_are(
    name: str,
    modules: set[str],
    tables: Mapping[str, Mapping[str, str]],
    masked: bool,
    reason: str | None,
) -> None:
    """The reason a step is skipped, or None when it runs."""
    assert _skip_reason(step(name), catalog(modules, tables), masked) == reason


@pytest.mark.parametrize(
    "column",
    [
        "stripe_secret_key", "stripe_publishable_key", "stripe_webhook_secret", "adyen_api_key",
        "adyen_hmac_key", "paypal_client_secret", "mercado_pago_access_token",
        "razorpay_key_secret", "authorize_transaction_key", "aps_access_code",
        "aps_sha_request", "asiapay_secure_hash_secret", "ogone_password", "xendit_webhook_token",
    ],
)  # fmt: skip
def test_payment_key_columns_are_recognised(column: str) -> None:
    """The providers' key, secret, token and signature columns are all found by name."""
    assert _PAYMENT_SECRET.search(column)


@pytest.mark.parametrize(
    "column", ["name", "code", "state", "paypal_email_account", "so_reference_type", "custom_mode"]
)
def test_payment_columns_that_are_no_secret_stay(column: str) -> None:
    """The provider's own description is not taken for a key."""
    assert not _PAYMENT_SECRET.search(column)


def test_only_text_columns_are_cleared_by_name() -> None:
    """A many2one named like a token (token_inline_form_view_id) is not a key."""
    place = _Place("payment_provider", matching=_PAYMENT_SECRET)
    found = catalog(
        {"payment"},
        {
            "payment_provider": {
                "code": TEXT,
                "stripe_secret_key": TEXT,
                "adyen_hmac_key": TEXT,
                "token_inline_form_view_id": "integer",
            }
        },
    )
    assert _clearable(place, found) == ["adyen_hmac_key", "stripe_secret_key"]


def test_named_columns_are_cleared_where_they_exist() -> None:
    """A release without one of the token columns still loses the others."""
    place = _Place(
        "ir_mail_server", ("google_gmail_authorization_code", "google_gmail_refresh_token")
    )
    found = catalog({"base"}, {"ir_mail_server": {"google_gmail_refresh_token": TEXT}})
    assert _clearable(place, found) == ["google_gmail_refresh_token"]


def test_odoos_printed_script_loses_its_wrapper_and_is_checked() -> None:
    """``odoo neutralize --stdout`` wraps its statements in BEGIN/COMMIT; the platform runs
    them inside its own transaction, after the same check an uploaded dump gets."""
    printed = "BEGIN;\nUPDATE ir_cron SET active = false;\nCOMMIT;\n"
    assert neutralize.odoo_script(printed) == "UPDATE ir_cron SET active = false;"
    assert neutralize.odoo_script("") == ""
    with pytest.raises(OdooOpsError) as caught:
        neutralize.odoo_script("BEGIN;\n\\! id\nCOMMIT;\n")
    assert caught.value.code == "dump_forbidden"
