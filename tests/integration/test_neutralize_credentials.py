"""A non-production copy keeps no credential of production's users, on a real PostgreSQL.

Each test builds a database with the modules that own one kind of credential (the stand-in's
``install.sql`` where it has the module, otherwise the Odoo 19 columns added here, visibly),
puts production's credentials in, neutralises it and looks for them. Every statement is
guarded by the catalogue, so a database without those modules is neutralised all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
import pytest

from reconciler.core.errors import DriverError
from reconciler.data.database.masking import load_rules, mask
from reconciler.data.database.neutralize import (
    CATCHER_NAME,
    MailTarget,
    is_neutralized,
    neutralize,
)
from tests.integration.odoo_schema import build, connect, scratch_database

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[Any, ...]]
CATCHER = MailTarget("mailcatcher.internal", 2525, "catcher", "catcher-password")
HASH = "$pbkdf2-sha512$600000$c2FsdA$aGFzaA"


@pytest.fixture
def conn(postgres_server: None) -> Iterator[Conn]:
    """A new empty database, dropped after the test."""
    with scratch_database() as name, connect(name) as c:
        yield c


def one(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def rows(conn: Conn, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def add_users(conn: Conn, *logins: str) -> list[int]:
    """Users with production password hashes, each with a partner of their own."""
    ids = []
    for login in logins:
        ids.append(
            one(
                conn,
                "WITH p AS (INSERT INTO res_partner (name, email) VALUES (%s, %s) RETURNING id)"
                " INSERT INTO res_users (login, password, partner_id, company_id)"
                " SELECT %s, %s, id, 1 FROM p RETURNING id",
                (login, login, login, HASH),
            )
        )
    return ids


def install(conn: Conn, module: str, ddl: str) -> None:
    """A module the stand-in lacks: Odoo 19's columns for it, and the module marked installed."""
    conn.execute(ddl)
    conn.execute(
        "INSERT INTO ir_module_module (name, state, shortdesc) VALUES"
        " (%s, 'installed', jsonb_build_object('en_US', %s::text))",
        (module, module),
    )


def api_key(user_id: int, scope: str = "rpc") -> tuple[Any, ...]:
    """A key row as Odoo writes it: a name, the owner, a scope, the lookup index and a hash."""
    return ("Integration", user_id, scope, "0123abcd", HASH)


def insert_keys(conn: Conn, table: str, keys: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (name, user_id, scope, index, key) VALUES (%s, %s, %s, %s, %s)",
            list(keys),
        )


# ------------------------------------------------------------------------------- per table


def test_api_keys_are_deleted(conn: Conn) -> None:
    """res_users_apikeys (base): every key goes, the administrator's too; users stay."""
    build(conn, ["base"])
    users = add_users(conn, "integrations@acme.example")
    insert_keys(conn, "res_users_apikeys", [api_key(2), api_key(users[0])])
    report = neutralize(conn, CATCHER)
    assert one(conn, "SELECT count(*) FROM res_users_apikeys") == 0
    assert one(conn, "SELECT count(*) FROM res_users WHERE id = %s", (users[0],)) == 1
    assert report.removed["res_users_apikeys"] == 2
    assert "base.api_keys" in report.applied


def test_passkeys_are_deleted(conn: Conn) -> None:
    """auth_passkey_key (auth_passkey): a passkey is a login, so none survives."""
    build(conn, ["auth_passkey"])
    users = add_users(conn, "ceo@acme.example")
    conn.execute(
        "INSERT INTO auth_passkey_key (name, credential_identifier, public_key, sign_count,"
        " create_uid, write_uid) VALUES"
        " ('YubiKey', 'a1b2c3', 'pQECAyYgASFYIJ', 4, 2, 2),"
        " ('iPhone', 'd4e5f6', 'pQECAyYgASFYIK', 9, %(u)s, %(u)s)",
        {"u": users[0]},
    )
    report = neutralize(conn, CATCHER)
    assert one(conn, "SELECT count(*) FROM auth_passkey_key") == 0
    assert report.removed["auth_passkey_key"] == 2


def test_totp_secrets_are_cleared_and_trusted_browsers_deleted(conn: Conn) -> None:
    """res_users.totp_secret and auth_totp_device (auth_totp): no code can be generated."""
    build(conn, ["auth_totp"])
    users = add_users(conn, "accountant@acme.example", "no2fa@acme.example")
    conn.execute(
        "UPDATE res_users SET totp_secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' WHERE id IN (2, %s)",
        (users[0],),
    )
    insert_keys(conn, "auth_totp_device", [api_key(users[0], scope="browser")])
    report = neutralize(conn, CATCHER)
    assert one(conn, "SELECT count(*) FROM res_users WHERE totp_secret IS NOT NULL") == 0
    assert one(conn, "SELECT count(*) FROM auth_totp_device") == 0
    assert report.removed["res_users.totp_secret"] == 2
    assert report.removed["auth_totp_device"] == 1


def test_oauth_access_tokens_are_cleared_and_the_user_ids_kept(conn: Conn) -> None:
    """res_users.oauth_access_token (auth_oauth) logs in like a password; oauth_uid does not."""
    build(conn, ["auth_oauth"])
    provider = one(
        conn,
        "INSERT INTO auth_oauth_provider (name, client_id, auth_endpoint, validation_endpoint,"
        " enabled, body) VALUES ('Google', '1234.apps.googleusercontent.com',"
        " 'https://accounts.google.com/o/oauth2/auth',"
        " 'https://www.googleapis.com/oauth2/v3/tokeninfo', true,"
        ' \'{"en_US": "Sign in with Google"}\') RETURNING id',
    )
    users = add_users(conn, "sales@acme.example")
    conn.execute(
        "UPDATE res_users SET oauth_provider_id = %s, oauth_uid = '1098765',"
        " oauth_access_token = 'ya29.a0AfH6SM' WHERE id = %s",
        (provider, users[0]),
    )
    report = neutralize(conn, CATCHER)
    assert rows(
        conn,
        "SELECT oauth_provider_id, oauth_uid, oauth_access_token FROM res_users WHERE id = %s",
        (users[0],),
    ) == [(provider, "1098765", None)]
    assert report.removed == {"res_users.oauth_access_token": 1}
    assert "auth_oauth.provider_secrets (column auth_oauth_provider.client_secret missing)" in (
        report.skipped
    )


def test_an_oauth_providers_client_secret_is_cleared_where_an_add_on_stores_one(
    conn: Conn,
) -> None:
    """auth_oauth_provider.client_secret (OpenID Connect add-ons): cleared, client id kept."""
    build(conn, ["auth_oauth"])
    conn.execute(
        "ALTER TABLE auth_oauth_provider ADD COLUMN client_secret varchar;"
        "INSERT INTO auth_oauth_provider (name, client_id, client_secret, auth_endpoint,"
        " validation_endpoint, body) VALUES ('Keycloak', 'odoo', 's3cr3t-oidc',"
        " 'https://sso.acme.example/auth', 'https://sso.acme.example/userinfo',"
        ' \'{"en_US": "Sign in with Keycloak"}\')'
    )
    report = neutralize(conn, CATCHER)
    assert rows(conn, "SELECT client_id, client_secret FROM auth_oauth_provider") == [
        ("odoo", None)
    ]
    assert report.removed == {"auth_oauth_provider.client_secret": 1}


def test_mail_server_passwords_go_and_the_catchers_login_stays(conn: Conn) -> None:
    """ir_mail_server.smtp_pass (base) and fetchmail_server.password (mail) are cleared."""
    build(conn, ["mail"])
    conn.execute(
        "INSERT INTO ir_mail_server (name, smtp_host, smtp_user, smtp_pass) VALUES"
        " ('Office 365', 'smtp.office365.com', 'erp@acme.example', 'o365-pass');"
        'INSERT INTO fetchmail_server (name, server, "user", password) VALUES'
        " ('Support', 'imap.acme.example', 'support@acme.example', 'imap-pass')"
    )
    report = neutralize(conn, CATCHER)
    assert rows(conn, "SELECT name, smtp_user, smtp_pass FROM ir_mail_server ORDER BY id") == [
        ("Office 365", "erp@acme.example", None),
        (CATCHER_NAME, "catcher", "catcher-password"),
    ]
    assert rows(conn, 'SELECT "user", password FROM fetchmail_server') == [
        ("support@acme.example", None)
    ]
    assert report.removed == {"ir_mail_server.smtp_pass": 1, "fetchmail_server.password": 1}


GMAIL = (
    "ADD COLUMN google_gmail_refresh_token varchar, ADD COLUMN google_gmail_access_token varchar,"
    " ADD COLUMN google_gmail_access_token_expiration integer"
)
OUTLOOK = (
    "ADD COLUMN microsoft_outlook_refresh_token varchar,"
    " ADD COLUMN microsoft_outlook_access_token varchar,"
    " ADD COLUMN microsoft_outlook_access_token_expiration integer"
)


def test_gmail_and_outlook_tokens_of_mail_servers_are_cleared(conn: Conn) -> None:
    """google_gmail and microsoft_outlook tokens on ir_mail_server and fetchmail_server."""
    build(conn, ["mail"])
    for module, columns in (("google_gmail", GMAIL), ("microsoft_outlook", OUTLOOK)):
        install(
            conn,
            module,
            f"ALTER TABLE ir_mail_server {columns}; ALTER TABLE fetchmail_server {columns}",
        )
    conn.execute(
        "INSERT INTO ir_mail_server (name, smtp_host, smtp_authentication,"
        " google_gmail_refresh_token, google_gmail_access_token,"
        " google_gmail_access_token_expiration) VALUES"
        " ('Gmail', 'smtp.gmail.com', 'gmail', '1//0gRefresh', 'ya29.Access', 1900000000);"
        "INSERT INTO fetchmail_server (name, server, microsoft_outlook_refresh_token,"
        " microsoft_outlook_access_token) VALUES"
        " ('Outlook', 'outlook.office365.com', 'M.R3_BAY.refresh', 'EwBwA8l6access')"
    )
    report = neutralize(conn, CATCHER)
    assert rows(
        conn,
        "SELECT google_gmail_refresh_token, google_gmail_access_token,"
        " google_gmail_access_token_expiration FROM ir_mail_server WHERE name = 'Gmail'",
    ) == [(None, None, 1900000000)]
    assert rows(
        conn,
        "SELECT microsoft_outlook_refresh_token, microsoft_outlook_access_token"
        " FROM fetchmail_server",
    ) == [(None, None)]
    assert report.removed == {
        "ir_mail_server.google_gmail_refresh_token": 1,
        "ir_mail_server.google_gmail_access_token": 1,
        "fetchmail_server.microsoft_outlook_refresh_token": 1,
        "fetchmail_server.microsoft_outlook_access_token": 1,
    }


def test_a_token_column_that_refuses_null_is_emptied(conn: Conn) -> None:
    """A release keeping Gmail tokens in their own table, refresh token NOT NULL: set to ''."""
    build(conn, ["mail"])
    install(
        conn,
        "google_gmail",
        "CREATE TABLE google_gmail_token (id serial PRIMARY KEY, email varchar NOT NULL UNIQUE,"
        " google_gmail_refresh_token varchar NOT NULL, google_gmail_access_token varchar,"
        " google_gmail_access_token_expiration integer)",
    )
    conn.execute(
        "INSERT INTO google_gmail_token (email, google_gmail_refresh_token,"
        " google_gmail_access_token) VALUES ('erp@acme.example', '1//0gRefresh', 'ya29.Access')"
    )
    report = neutralize(conn, CATCHER)
    assert rows(
        conn, "SELECT email, google_gmail_refresh_token, google_gmail_access_token"
        " FROM google_gmail_token",
    ) == [("erp@acme.example", "", None)]  # fmt: skip
    assert report.removed == {
        "google_gmail_token.google_gmail_refresh_token": 1,
        "google_gmail_token.google_gmail_access_token": 1,
    }


def test_calendar_refresh_tokens_are_cleared(conn: Conn) -> None:
    """res_users_settings.google_calendar_* and res_users.microsoft_calendar_* tokens go."""
    build(conn, ["mail"])
    users = add_users(conn, "planner@acme.example")
    # res_users_settings belongs to mail in Odoo 19; the stand-in's mail does not have it.
    conn.execute(
        "CREATE TABLE res_users_settings (id serial PRIMARY KEY,"
        " user_id integer NOT NULL UNIQUE REFERENCES res_users ON DELETE CASCADE)"
    )
    install(
        conn,
        "google_calendar",
        "ALTER TABLE res_users_settings ADD COLUMN google_calendar_rtoken varchar,"
        " ADD COLUMN google_calendar_token varchar,"
        " ADD COLUMN google_calendar_token_validity timestamp,"
        " ADD COLUMN google_calendar_cal_id varchar",
    )
    install(
        conn,
        "microsoft_account",
        "ALTER TABLE res_users ADD COLUMN microsoft_calendar_rtoken varchar,"
        " ADD COLUMN microsoft_calendar_token varchar,"
        " ADD COLUMN microsoft_calendar_token_validity timestamp",
    )
    conn.execute(
        "INSERT INTO res_users_settings (user_id, google_calendar_rtoken, google_calendar_token,"
        " google_calendar_cal_id) VALUES (%s, '1//0eRefresh', 'ya29.Calendar',"
        " 'planner@acme.example')",
        (users[0],),
    )
    conn.execute(
        "UPDATE res_users SET microsoft_calendar_rtoken = 'M.C105_refresh',"
        " microsoft_calendar_token = 'EwCAccess' WHERE id = %s",
        (users[0],),
    )
    report = neutralize(conn, CATCHER)
    assert rows(
        conn,
        "SELECT google_calendar_rtoken, google_calendar_token, google_calendar_cal_id"
        " FROM res_users_settings",
    ) == [(None, None, "planner@acme.example")]
    assert rows(
        conn,
        "SELECT microsoft_calendar_rtoken, microsoft_calendar_token FROM res_users WHERE id = %s",
        (users[0],),
    ) == [(None, None)]
    assert report.removed == {
        "res_users_settings.google_calendar_rtoken": 1,
        "res_users_settings.google_calendar_token": 1,
        "res_users.microsoft_calendar_rtoken": 1,
        "res_users.microsoft_calendar_token": 1,
    }


def test_payment_provider_keys_are_blanked_in_test_mode_too(conn: Conn) -> None:
    """payment_provider key columns of provider modules; a 'test' provider may hold live keys."""
    build(conn, ["payment"])
    conn.execute(
        "ALTER TABLE payment_provider ADD COLUMN stripe_secret_key varchar,"
        " ADD COLUMN stripe_publishable_key varchar, ADD COLUMN stripe_webhook_secret varchar,"
        " ADD COLUMN adyen_hmac_key varchar, ADD COLUMN adyen_merchant_account varchar,"
        " ADD COLUMN paypal_email_account varchar;"
        "INSERT INTO payment_provider (name, code, state, stripe_secret_key,"
        " stripe_publishable_key, stripe_webhook_secret) VALUES"
        " ('{\"en_US\": \"Stripe\"}', 'stripe', 'test', 'sk_live_51Hxyz', 'pk_live_51Hxyz',"
        "  'whsec_abc');"
        "INSERT INTO payment_provider (name, code, state, adyen_hmac_key, adyen_merchant_account)"
        " VALUES ('{\"en_US\": \"Adyen\"}', 'adyen', 'enabled', 'A1B2C3', 'AcmeECOM');"
        "INSERT INTO payment_provider (name, code, state, paypal_email_account) VALUES"
        " ('{\"en_US\": \"PayPal\"}', 'paypal', 'enabled', 'pay@acme.example')"
    )
    report = neutralize(conn, CATCHER)
    assert rows(
        conn,
        "SELECT code, state, stripe_secret_key, stripe_publishable_key, stripe_webhook_secret,"
        " adyen_hmac_key, adyen_merchant_account, paypal_email_account FROM payment_provider"
        " WHERE code IN ('stripe', 'adyen', 'paypal') ORDER BY code",
    ) == [
        ("adyen", "disabled", None, None, None, None, "AcmeECOM", None),
        ("paypal", "disabled", None, None, None, None, None, "pay@acme.example"),
        ("stripe", "test", None, None, None, None, None, None),
    ]
    assert report.removed == {
        "payment_provider.adyen_hmac_key": 1,
        "payment_provider.stripe_publishable_key": 1,
        "payment_provider.stripe_secret_key": 1,
        "payment_provider.stripe_webhook_secret": 1,
    }


def test_oauth_client_secrets_are_deleted_and_client_ids_kept(conn: Conn) -> None:
    """ir_config_parameter: Google's and Microsoft's client secrets go, the ids stay."""
    build(conn, ["base"])
    conn.execute(
        "INSERT INTO ir_config_parameter (key, value) VALUES"
        " ('google_gmail_client_id', '1234.apps.googleusercontent.com'),"
        " ('google_gmail_client_secret', 'GOCSPX-secret'),"
        " ('microsoft_calendar_client_secret', 'ms~secret')"
    )
    report = neutralize(conn, CATCHER)
    params = dict(rows(conn, "SELECT key, value FROM ir_config_parameter"))
    assert "google_gmail_client_secret" not in params
    assert "microsoft_calendar_client_secret" not in params
    assert params["google_gmail_client_id"] == "1234.apps.googleusercontent.com"
    assert report.removed == {"ir_config_parameter": 2}


# ------------------------------------------------------------------------------- passwords


def test_an_unmasked_copy_keeps_password_hashes(conn: Conn) -> None:
    """Masking off: hashes are one-way and open only the copy; its team logs in as usual."""
    build(conn, ["base"])
    add_users(conn, "alice@acme.example")
    report = neutralize(conn, CATCHER)
    assert one(conn, "SELECT count(*) FROM res_users WHERE password IS NOT NULL") == 2
    assert "base.passwords (copy not masked)" in report.skipped


def test_a_masked_copy_keeps_no_password_hash_not_even_the_admins(conn: Conn) -> None:
    """Masking on: every hash goes, the kept administrator's too; masking still does logins."""
    build(conn, ["base"])
    add_users(conn, "alice@acme.example", "bob@acme.example")
    report = neutralize(conn, CATCHER, masked=True)
    mask(conn, load_rules(None), "a-salt")
    assert one(conn, "SELECT count(*) FROM res_users WHERE password IS NOT NULL") == 0
    assert report.removed["res_users.password"] == 3
    assert one(conn, "SELECT login FROM res_users WHERE id = 2") == "admin"
    assert one(conn, "SELECT count(*) FROM res_users WHERE login LIKE '%%@acme.example'") == 0


# -------------------------------------------------------------------------- every database


def test_a_database_without_those_modules_is_neutralised_without_error(conn: Conn) -> None:
    """Base alone, and even base without its API key table: missing places are skipped."""
    build(conn, ["base"])
    conn.execute("DROP TABLE res_users_apikeys")
    report = neutralize(conn, CATCHER)
    assert is_neutralized(conn)
    assert report.removed == {}
    for reason in (
        "base.api_keys (table res_users_apikeys missing)",
        "auth_passkey.passkeys (module not installed)",
        "auth_totp.secrets (module not installed)",
        "auth_oauth.access_tokens (module not installed)",
        "mail.fetchmail_passwords (module not installed)",
        "google_calendar.tokens (module not installed)",
        "payment.provider_keys (module not installed)",
    ):
        assert reason in report.skipped


def test_every_credential_is_removed_in_one_pass_and_a_second_finds_none(conn: Conn) -> None:
    """All credential modules at once; a rerun removes nothing more and reports nothing."""
    build(conn, ["mail", "payment", "auth_totp", "auth_passkey", "auth_oauth"])
    users = add_users(conn, "alice@acme.example")
    insert_keys(conn, "res_users_apikeys", [api_key(users[0])])
    insert_keys(conn, "auth_totp_device", [api_key(users[0], scope="browser")])
    conn.execute(
        "UPDATE res_users SET totp_secret = 'JBSWY3DPEHPK3PXP', oauth_access_token = 'tok'"
        " WHERE id = %s",
        (users[0],),
    )
    conn.execute(
        "INSERT INTO auth_passkey_key (name, credential_identifier, create_uid)"
        " VALUES ('key', 'id-1', %s)",
        (users[0],),
    )
    first = neutralize(conn, CATCHER, masked=True)
    assert first.removed == {
        "res_users_apikeys": 1,
        "res_users.totp_secret": 1,
        "auth_totp_device": 1,
        "auth_passkey_key": 1,
        "res_users.oauth_access_token": 1,
        "res_users.password": 2,
    }
    second = neutralize(conn, CATCHER, masked=True)
    assert second.removed == {}
    assert second.applied == first.applied


def test_a_failure_keeps_every_credential_and_quotes_none(conn: Conn) -> None:
    """One transaction: a failing credential step leaves the copy as it was, secrets unquoted."""
    build(conn, ["auth_totp", "auth_passkey"])
    conn.execute(
        "UPDATE res_users SET totp_secret = 'JBSWY3DPEHPK3PXP' WHERE id = 2;"
        "INSERT INTO auth_passkey_key (name, credential_identifier, create_uid)"
        " VALUES ('key', 'id-1', 2);"
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'passkeys are read-only'; END$$;"
        "CREATE TRIGGER refuse BEFORE DELETE ON auth_passkey_key FOR EACH ROW"
        " EXECUTE FUNCTION refuse()"
    )
    with pytest.raises(DriverError) as caught:
        neutralize(conn, CATCHER)
    assert caught.value.code == "neutralize_failed"
    assert "auth_passkey.passkeys" in caught.value.message
    assert "JBSWY3DPEHPK3PXP" not in caught.value.render()
    assert one(conn, "SELECT totp_secret FROM res_users WHERE id = 2") == "JBSWY3DPEHPK3PXP"
    assert one(conn, "SELECT count(*) FROM auth_passkey_key") == 1
    assert not is_neutralized(conn)
