"""Neutralisation and masking of a production-like Odoo database on a real PostgreSQL.

Each test builds its own database from the stand-in image's module SQL (``odoo_schema``),
adds the real Odoo 19 columns and tables the stand-in leaves out where a test needs them,
and fills it with production-like data: thousands of people with distinct names, e-mails
and phones, users, live mail servers, active crons, enabled payment providers, websites on
real domains and IAP tokens.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from reconciler.core.errors import DriverError, OdooOpsError
from reconciler.core.validation import SCHEMA_DIR
from reconciler.data.database.masking import MaskingRules, load_rules, mask
from reconciler.data.database.neutralize import (
    CATCHER_NAME,
    MailTarget,
    is_neutralized,
    neutralize,
    reidentify,
)
from tests.integration.odoo_schema import build, connect, scratch_database

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[Any, ...]]
SALT = "s3cret-salt-for-tests"
CATCHER = MailTarget("mailcatcher.internal", 2525, "catcher", "catcher-password")
ALL_MODULES = ["sale_management", "delivery", "website", "iap", "contacts"]

FIRST = [
    "Aaliyah",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elif",
    "Farid",
    "Greta",
    "Hiroshi",
    "Ines",
    "Jonas",
    "Kavya",
    "Lars",
    "Mei",
    "Nadia",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tariq",
    "Ursula",
    "Viktor",
    "Wanda",
    "Xavier",
    "Yara",
    "Zoltan",
    "Amara",
    "Bastien",
    "Carmen",
    "Dario",
    "Esther",
    "Felix",
    "Gloria",
    "Hamza",
    "Ingrid",
    "Julien",
    "Katarina",
    "Lorenzo",
    "Marisol",
    "Nikolai",
    "Olivia",
    "Pedro",
    "Rania",
    "Stefan",
    "Teodora",
    "Umar",
    "Valentina",
    "William",
    "Ximena",
    "Yusuf",
    "Zainab",
    "Anselm",
    "Beatrix",
    "Cosmin",
    "Delphine",
    "Emeka",
    "Fiona",
    "Gunnar",
    "Helga",
    "Ivo",
]
LAST = [
    "Keller",
    "Nakamura",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Castillo",
    "Novak",
    "Horvath",
    "Fischer",
    "Rossi",
    "Dubois",
    "Jansen",
    "Kowalski",
    "Silva",
    "Andersen",
    "Papadopoulos",
    "Yilmaz",
    "Ivanova",
    "Murphy",
    "Schneider",
    "Bianchi",
    "Laurent",
    "Petrov",
    "Hansen",
    "Costa",
    "Weber",
    "Nielsen",
    "Garcia",
    "Fernandes",
    "Schmidt",
    "Bauer",
    "Leclerc",
    "Romano",
    "Vasquez",
    "Berg",
    "Haddad",
    "Tanaka",
    "Mensah",
    "Oliveira",
    "Kruger",
    "Lambert",
    "Marchetti",
    "Svoboda",
    "Varga",
    "Eriksson",
    "Wagner",
    "Richter",
    "Gallo",
    "Brennan",
    "Sato",
]
DOMAINS = ["gmail.com", "outlook.com", "proton.me", "acme-logistics.be", "globex.de", "web.fr"]
CITIES = ["Brussels", "Ghent", "Lyon", "Hamburg", "Utrecht", "Porto", "Krakow", "Malmo"]
STREETS = ["Rue de la Loi", "Hauptstrasse", "Kerkstraat", "Via Roma", "Avenida da Liberdade"]


# ----------------------------------------------------------------------------- databases


@pytest.fixture
def db(postgres_server: None) -> Iterator[str]:
    """A new empty database, dropped after the test."""
    with scratch_database() as name:
        yield name


@pytest.fixture
def conn(db: str) -> Iterator[Conn]:
    with connect(db) as c:
        yield c


@pytest.fixture
def production(conn: Conn) -> Conn:
    """Every stand-in module installed, with production's live settings and its people."""
    build(conn, ALL_MODULES)
    add_live_settings(conn)
    add_people(conn)
    return conn


def add_live_settings(conn: Conn) -> None:
    """What a production database has switched on, plus real Odoo tables the stand-in lacks."""
    conn.execute(
        "INSERT INTO ir_mail_server (name, smtp_host, smtp_port, smtp_user, smtp_pass,"
        " smtp_encryption, sequence) VALUES"
        " ('Office 365', 'smtp.office365.com', 587, 'erp@acme.example', 'o365-pass', 'starttls',"
        "  1),"
        " ('Mailgun', 'smtp.mailgun.org', 465, 'postmaster@mg.acme.example', 'mg-pass', 'ssl', 2)"
    )
    conn.execute("UPDATE mail_template SET mail_server_id = (SELECT min(id) FROM ir_mail_server)")
    conn.execute(
        'INSERT INTO fetchmail_server (name, server, port, "user", password, state) VALUES'
        " ('Support inbox', 'imap.acme.example', 993, 'support@acme.example', 'imap', 'done')"
    )
    for name in ("Sales: Quotation expiry", "Website: Sitemap", "IAP: Credits sync"):
        conn.execute(
            "WITH a AS (INSERT INTO ir_act_server (name, state, usage) VALUES"
            " (jsonb_build_object('en_US', %s::text), 'code', 'ir_cron') RETURNING id)"
            " INSERT INTO ir_cron (ir_actions_server_id, cron_name, user_id)"
            " SELECT id, %s, 1 FROM a",
            (name, name),
        )
    conn.execute(
        "INSERT INTO ir_act_server (name, state, webhook_url) VALUES"
        " ('{\"en_US\": \"Notify ERP\"}', 'webhook', 'https://hooks.acme.example/erp'),"
        " ('{\"en_US\": \"Archive\"}', 'object_write', NULL)"
    )
    conn.execute(
        "INSERT INTO ir_config_parameter (key, value) VALUES"
        " ('mail.web_push_vapid_private_key', 'private-vapid'),"
        " ('mail.web_push_vapid_public_key', 'public-vapid'),"
        " ('database.enterprise_code', 'M2301234567890'),"
        " ('database.expiration_date', '2030-01-01 00:00:00'),"
        " ('database.expiration_reason', 'renewal')"
    )
    # Odoo 18+ web push tables (mail module), absent from the stand-in.
    conn.execute(
        "CREATE TABLE mail_push_device (id serial PRIMARY KEY, partner_id integer,"
        " endpoint varchar NOT NULL, keys varchar NOT NULL);"
        "CREATE TABLE mail_push (id serial PRIMARY KEY, mail_push_device_id integer NOT NULL"
        " REFERENCES mail_push_device ON DELETE CASCADE, payload text);"
        "INSERT INTO mail_push_device (partner_id, endpoint, keys)"
        " VALUES (3, 'https://fcm.googleapis.com/fcm/send/abc', '{}');"
        "INSERT INTO mail_push (mail_push_device_id, payload) SELECT id, '{}' FROM mail_push_device"
    )
    conn.execute(
        "UPDATE payment_provider SET state = 'enabled' WHERE code = 'demo';"
        "INSERT INTO payment_provider (name, code, state) VALUES"
        " ('{\"en_US\": \"Stripe\"}', 'stripe', 'enabled'),"
        " ('{\"en_US\": \"Adyen\"}', 'adyen', 'test')"
    )
    conn.execute(
        "UPDATE delivery_carrier SET prod_environment = true;"
        "INSERT INTO delivery_carrier (name, delivery_type, prod_environment)"
        " VALUES ('{\"en_US\": \"DHL Express\"}', 'dhl', true)"
    )
    conn.execute(
        "INSERT INTO iap_account (service_name, account_token) VALUES"
        " ('sms', 'f4c2a8d05b7e4f4e9a1c3d2e1f0a9b8c'),"
        " ('partner_autocomplete', 'a1b2c3d4e5f6+legacy'),"
        " ('reveal', 'already+disabled'),"
        " ('invoice_ocr', repeat('x', 40))"
    )
    conn.execute(
        "UPDATE website SET domain = 'https://www.acme.example',"
        " robots_txt = 'User-agent: *\nAllow: /';"
        "INSERT INTO website (name, domain) VALUES ('Shop', 'shop.acme.example')"
    )


def add_people(conn: Conn, seed: int = 7) -> None:
    """3,000 people, 120 customer companies, 300 users, 2,000 messages and 400 bank accounts.

    Adds the real Odoo 19 columns of res_partner the stand-in lacks, and the mail_message and
    res_partner_bank tables with the real columns masking touches.
    """
    rng = random.Random(seed)
    conn.execute(
        "ALTER TABLE res_partner ADD COLUMN complete_name varchar, ADD COLUMN email_normalized"
        " varchar, ADD COLUMN mobile varchar, ADD COLUMN street varchar, ADD COLUMN street2"
        " varchar, ADD COLUMN city varchar, ADD COLUMN zip varchar, ADD COLUMN vat varchar,"
        " ADD COLUMN comment text, ADD COLUMN website varchar, ADD COLUMN parent_id integer;"
        "CREATE TABLE mail_message (id serial PRIMARY KEY, subject varchar, body text,"
        " email_from varchar, reply_to varchar, author_id integer REFERENCES res_partner,"
        " model varchar, res_id integer, record_name varchar,"
        " message_type varchar NOT NULL DEFAULT 'comment');"
        "CREATE TABLE res_partner_bank (id serial PRIMARY KEY, acc_number varchar NOT NULL,"
        " sanitized_acc_number varchar, acc_holder_name varchar,"
        " partner_id integer NOT NULL REFERENCES res_partner,"
        " UNIQUE (sanitized_acc_number, partner_id))"
    )
    names = [f"{f} {last}" for f in FIRST for last in LAST]
    rng.shuffle(names)
    people = names[:3000]
    phones: set[str] = set()
    while len(phones) < 6200:
        cc = rng.choice(["32 4", "33 6", "49 15", "31 6", "44 7"])
        phones.add(
            f"+{cc}{rng.randrange(10, 99)} {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}"
        )
    phone_list = sorted(phones)
    rng.shuffle(phone_list)
    rows = []
    for i, name in enumerate(people):
        first, last = name.split(" ")
        email = f"{first}.{last}@{rng.choice(DOMAINS)}".lower()
        rows.append(
            (
                name,
                name,
                email,
                email,
                phone_list[2 * i],
                phone_list[2 * i + 1] if i % 3 else None,
                f"{rng.randrange(1, 250)} {rng.choice(STREETS)}",
                f"Apt {rng.randrange(1, 40)}" if i % 4 == 0 else "",
                rng.choice(CITIES),
                f"{rng.randrange(1000, 99999)}",
                f"BE0{rng.randrange(100000000, 999999999)}" if i % 5 == 0 else None,
                f"<p>Met {name} at the fair; prefers calls after 5pm.</p>",
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO res_partner (name, complete_name, email, email_normalized, phone,"
            " mobile, street, street2, city, zip, vat, comment, company_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
            rows,
        )
        companies = [f"{last} {kind}" for last in LAST for kind in ("Logistics", "& Sons", "GmbH")]
        cur.executemany(
            "INSERT INTO res_partner (name, complete_name, email, phone, is_company, company_id)"
            " VALUES (%s, %s, %s, %s, true, 1)",
            [
                (c, c, f"info@{c.split(' ')[0].lower()}-{i}.example", phone_list[-1 - i])
                for i, c in enumerate(companies[:120])
            ],
        )
    # Empty and missing values stay as they are.
    conn.execute(
        "INSERT INTO res_partner (name, email, phone, company_id) VALUES"
        " ('Nobody Known', NULL, '', 1)"
    )
    # Users: the first 300 people log in with their e-mail, two of them differing only in case,
    # and a few with a plain user name.
    conn.execute(
        "INSERT INTO res_users (login, password, partner_id, company_id, share)"
        " SELECT CASE WHEN n % 50 = 0 THEN 'user' || n ELSE email END, '$pbkdf2-sha512$hash',"
        " id, 1, n % 3 = 0"
        " FROM (SELECT id, email, row_number() OVER (ORDER BY id) AS n FROM res_partner"
        "       WHERE id > 3 AND NOT is_company AND email IS NOT NULL ORDER BY id LIMIT 300) p"
    )
    conn.execute(
        "INSERT INTO res_users (login, partner_id, company_id)"
        " SELECT upper(substr(login, 1, 1)) || substr(login, 2), partner_id, 1"
        " FROM res_users WHERE id = (SELECT min(id) FROM res_users WHERE id > 2)"
    )
    # Messages quoting partners' addresses, plain and as "Name <address>", with their names.
    conn.execute(
        "INSERT INTO mail_message (subject, body, email_from, reply_to, author_id, model, res_id,"
        " record_name)"
        " SELECT 'Re: order for ' || name, '<p>Dear ' || name || ', your parcel left.</p>',"
        " CASE WHEN id % 2 = 0 THEN email ELSE '\"' || name || '\" <' || email || '>' END,"
        " email, id, 'res.partner', id, name"
        " FROM res_partner WHERE id > 3 AND email IS NOT NULL ORDER BY id LIMIT 2000"
    )
    conn.execute(
        "INSERT INTO res_partner_bank (acc_number, sanitized_acc_number, acc_holder_name,"
        " partner_id)"
        " SELECT 'BE' || lpad((id % 97)::text, 2, '0') || ' ' || lpad(id::text, 4, '0')"
        " || ' 1234 5678', 'BE' || lpad((id % 97)::text, 2, '0') || lpad(id::text, 4, '0')"
        " || '12345678', name, id"
        " FROM res_partner WHERE id > 3 AND NOT is_company ORDER BY id LIMIT 400;"
        "INSERT INTO res_partner_bank (acc_number, sanitized_acc_number, acc_holder_name,"
        " partner_id) VALUES ('BE71 0961 2345 6769', 'BE71096123456769', 'YourCompany', 1)"
    )


def one(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def rows(conn: Conn, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


# --------------------------------------------------------------------------- neutralize


def test_mail_servers_are_replaced_by_the_one_catcher(production: Conn) -> None:
    """Production servers go inactive; the only active server is the catcher, with its login,
    reached with STARTTLS (the catcher takes no AUTH in clear)."""
    neutralize(production, CATCHER)
    active = rows(
        production,
        "SELECT name, smtp_host, smtp_port, smtp_user, smtp_pass, smtp_encryption,"
        " smtp_authentication, from_filter FROM ir_mail_server WHERE active",
    )
    assert active == [
        (CATCHER_NAME, "mailcatcher.internal", 2525, "catcher", "catcher-password", "starttls",
         "login", None),
    ]  # fmt: skip
    assert one(production, "SELECT count(*) FROM ir_mail_server WHERE NOT active") == 2


def test_without_a_catcher_odoos_unreachable_dummy_is_the_active_server(production: Conn) -> None:
    """No mail target: Odoo's own dummy (host 'invalid', port 1025) so nothing is sent."""
    neutralize(production, None)
    assert rows(
        production, "SELECT name, smtp_host, smtp_port FROM ir_mail_server WHERE active"
    ) == [("neutralization - disable emails", "invalid", 1025)]


def test_every_cron_but_the_autovacuum_stops(production: Conn) -> None:
    """Only base.autovacuum_job stays active."""
    assert one(production, "SELECT count(*) FROM ir_cron WHERE active") > 3
    neutralize(production, CATCHER)
    assert rows(production, "SELECT cron_name FROM ir_cron WHERE active") == [
        ("Base: Auto-vacuum internal data",)
    ]


def test_webhook_actions_lose_their_url(production: Conn) -> None:
    """Webhooks point nowhere (Odoo 17+'s marker); other server actions are untouched."""
    neutralize(production, CATCHER)
    assert rows(production, "SELECT webhook_url FROM ir_act_server WHERE state = 'webhook'") == [
        ("neutralization - disable webhook",)
    ]
    assert one(production, "SELECT count(*) FROM ir_act_server WHERE state = 'object_write'") == 1


def test_mail_templates_and_incoming_servers_are_detached(production: Conn) -> None:
    """Templates forget their server; fetchmail servers go inactive."""
    neutralize(production, CATCHER)
    assert (
        one(production, "SELECT count(*) FROM mail_template WHERE mail_server_id IS NOT NULL") == 0
    )
    assert one(production, "SELECT count(*) FROM fetchmail_server WHERE active") == 0


def test_web_push_keys_queue_and_devices_are_removed(production: Conn) -> None:
    """The VAPID keys, pending pushes and registered browsers go; other parameters stay."""
    neutralize(production, CATCHER)
    keys = rows(production, "SELECT key FROM ir_config_parameter WHERE key LIKE 'mail.web_push%'")
    assert keys == []
    assert one(production, "SELECT count(*) FROM mail_push") == 0
    assert one(production, "SELECT count(*) FROM mail_push_device") == 0
    assert one(production, "SELECT value FROM ir_config_parameter WHERE key = 'web.base.url'")


def test_live_payment_providers_are_disabled_and_test_ones_kept(production: Conn) -> None:
    """Enabled providers become disabled (as Odoo does); a provider in test mode stays."""
    neutralize(production, CATCHER)
    states = dict(rows(production, "SELECT code, state FROM payment_provider"))
    assert states == {
        "demo": "disabled",
        "custom": "disabled",
        "stripe": "disabled",
        "adyen": "test",
    }


def test_carriers_leave_production_mode(production: Conn) -> None:
    """Every carrier's prod_environment becomes false."""
    neutralize(production, CATCHER)
    assert one(production, "SELECT count(*) FROM delivery_carrier WHERE prod_environment") == 0


def test_iap_tokens_are_disabled_once(production: Conn) -> None:
    """Tokens end in '+disabled' (replacing a suffix); legacy long ones become a dummy."""
    neutralize(production, CATCHER)
    tokens = dict(rows(production, "SELECT service_name, account_token FROM iap_account"))
    assert tokens == {
        "sms": "f4c2a8d05b7e4f4e9a1c3d2e1f0a9b8c+disabled",
        "partner_autocomplete": "a1b2c3d4e5f6+disabled",
        "reveal": "already+disabled",
        "invoice_ocr": "dummy_value+disabled",
    }


def test_websites_lose_their_domains_and_forbid_crawlers(production: Conn) -> None:
    """Domains are cleared and robots.txt disallows everything."""
    neutralize(production, CATCHER)
    assert rows(production, "SELECT DISTINCT domain, robots_txt FROM website") == [
        (None, "User-agent: *\nDisallow: /")
    ]


def test_the_neutralized_banner_is_activated(production: Conn) -> None:
    """web.neutralize_banner becomes active."""
    neutralize(production, CATCHER)
    assert one(production, "SELECT active FROM ir_ui_view WHERE key = 'web.neutralize_banner'")


def test_the_database_is_flagged_as_neutralized(production: Conn) -> None:
    """is_neutralized is false before and true after."""
    assert not is_neutralized(production)
    neutralize(production, CATCHER)
    assert (
        one(
            production,
            "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'",
        )
        == "true"
    )
    assert is_neutralized(production)


@pytest.mark.parametrize(("value", "expected"), [("True", True), ("true", True), ("False", False)])
def test_is_neutralized_reads_the_flag_in_either_spelling(
    production: Conn, value: str, expected: bool
) -> None:
    """Older tools wrote 'True'; both spellings count."""
    production.execute(
        "INSERT INTO ir_config_parameter (key, value) VALUES ('database.is_neutralized', %s)",
        (value,),
    )
    assert is_neutralized(production) is expected


def test_is_neutralized_is_false_on_a_database_without_odoo(conn: Conn) -> None:
    """An empty database is not neutralised (and reading it is no error)."""
    assert is_neutralized(conn) is False


def test_the_report_lists_every_step_applied(production: Conn) -> None:
    """Every step of an installed module runs; only other modules' steps are skipped."""
    report = neutralize(production, CATCHER, masked=True)
    assert all(s.endswith("(module not installed)") for s in report.skipped), report.skipped
    assert report.applied == (
        "base.mail_servers", "base.crons", "base.webhooks", "mail.templates",
        "mail.fetchmail_servers", "mail.web_push", "payment.providers", "delivery.carriers",
        "iap.accounts", "website.websites", "website.ribbon", "web.banner", "base.api_keys",
        "base.mail_server_passwords", "base.oauth_client_secrets", "mail.fetchmail_passwords",
        "payment.provider_keys", "base.passwords", "base.is_neutralized",
    )  # fmt: skip


def test_steps_of_modules_not_installed_are_skipped(conn: Conn) -> None:
    """A base-only database has no payment, mail or website tables: their steps are skipped."""
    build(conn, ["base"])
    report = neutralize(conn, CATCHER)
    assert "payment.providers (module not installed)" in report.skipped
    assert "website.websites (module not installed)" in report.skipped
    assert "mail.templates (module not installed)" in report.skipped
    assert report.applied == (
        "base.mail_servers", "base.crons", "base.webhooks", "web.banner", "base.api_keys",
        "base.mail_server_passwords", "base.oauth_client_secrets", "base.is_neutralized",
    )  # fmt: skip
    assert is_neutralized(conn)


def test_a_step_whose_column_is_missing_is_skipped(production: Conn) -> None:
    """Another Odoo release may lack a column: its step is skipped and named, the rest runs."""
    production.execute("ALTER TABLE delivery_carrier DROP COLUMN prod_environment")
    report = neutralize(production, CATCHER)
    assert "delivery.carriers (column delivery_carrier.prod_environment missing)" in report.skipped
    assert "payment.providers" in report.applied


def test_a_second_run_changes_nothing_and_keeps_one_catcher(production: Conn) -> None:
    """Idempotent: exactly one catcher row and the same state after running twice."""
    neutralize(production, CATCHER)
    before = rows(production, "SELECT id, name, smtp_host, active FROM ir_mail_server ORDER BY id")
    neutralize(production, MailTarget("mailcatcher.internal", 2525, "catcher", "rotated"))
    after = rows(production, "SELECT id, name, smtp_host, active FROM ir_mail_server ORDER BY id")
    assert after == before
    assert (
        one(production, "SELECT count(*) FROM ir_mail_server WHERE name = %s", (CATCHER_NAME,)) == 1
    )
    assert one(production, "SELECT smtp_pass FROM ir_mail_server WHERE active") == "rotated"


def test_a_failing_step_leaves_the_database_untouched(production: Conn) -> None:
    """One transaction: when a late step fails, the mail servers are still live and no flag."""
    production.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'website is read-only'; END$$;"
        "CREATE TRIGGER refuse BEFORE UPDATE ON website FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    with pytest.raises(DriverError) as caught:
        neutralize(production, CATCHER)
    assert caught.value.code == "neutralize_failed"
    assert "website.websites" in caught.value.message
    assert "catcher-password" not in caught.value.render()
    assert one(production, "SELECT count(*) FROM ir_mail_server WHERE active") == 2
    assert not is_neutralized(production)


def test_a_database_without_odoo_is_refused(conn: Conn) -> None:
    """No installed base module: a structured error with a command, nothing changed."""
    with pytest.raises(DriverError) as caught:
        neutralize(conn, CATCHER)
    assert caught.value.code == "not_an_odoo_database"
    assert "psql" in caught.value.remediation


def test_the_catcher_password_never_shows_in_a_repr() -> None:
    """MailTarget hides its password from logs."""
    assert "catcher-password" not in repr(CATCHER)


# --------------------------------------------------------------------------- reidentify


def test_reidentify_gives_a_new_identity_and_drops_the_subscription(production: Conn) -> None:
    """New uuid (v4) and secret; enterprise code and expiration are gone; base URL kept."""

    def params() -> dict[str, str]:
        return dict(rows(production, "SELECT key, value FROM ir_config_parameter"))

    before = params()
    reidentify(production)
    after = params()
    assert after["database.uuid"] != before["database.uuid"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        after["database.uuid"])  # fmt: skip
    assert after["database.secret"] != before["database.secret"]
    for key in (
        "database.enterprise_code",
        "database.expiration_date",
        "database.expiration_reason",
    ):
        assert key not in after
    assert after["web.base.url"] == before["web.base.url"]


# ------------------------------------------------------------------------------- masking

MASKED_COLUMNS = {
    "res_partner": ["name", "complete_name", "email", "email_normalized", "phone", "mobile",
                    "street", "street2", "city", "zip", "vat", "comment"],
    "res_users": ["login", "password"],
    "mail_message": ["subject", "body", "email_from", "reply_to", "record_name"],
    "res_partner_bank": ["acc_number", "sanitized_acc_number", "acc_holder_name"],
}  # fmt: skip


def originals(conn: Conn) -> set[str]:
    """Every e-mail, phone, name and login of the people and customers that must be masked."""
    found: set[str] = set()
    for row in rows(
        conn,
        "SELECT name, email, phone, mobile FROM res_partner WHERE id > 3"
        " AND id NOT IN (SELECT partner_id FROM res_company)",
    ):
        found |= {value for value in row if value}
    found |= {login for (login,) in rows(conn, "SELECT login FROM res_users WHERE id > 2")}
    return found


def dump(conn: Conn, tables: Mapping[str, list[str]] = MASKED_COLUMNS) -> dict[str, list[Any]]:
    """Every row of the masked tables, whole (all columns), in id order."""
    return {t: rows(conn, f"SELECT {t}::text FROM {t} ORDER BY id") for t in tables}


def masked_columns(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: rows(conn, f"SELECT id, {', '.join(cols)} FROM {t} ORDER BY id")
        for t, cols in MASKED_COLUMNS.items()
    }


def test_no_original_email_phone_or_name_survives_in_the_masked_tables(production: Conn) -> None:
    """Whole rows of every masked table are searched for every original value."""
    secrets = originals(production)
    assert len(secrets) > 8000
    mask(production, load_rules(None), SALT)
    text = "\n".join(str(r) for table in dump(production).values() for r in table).lower()
    survivors = sorted(s for s in secrets if s.lower() in text)
    assert survivors == []


def test_one_address_masks_alike_in_every_table(production: Conn) -> None:
    """A partner's e-mail, its user's login and messages from it ("Name <addr>" too) agree."""
    partner_id, email = rows(
        production,
        "SELECT p.id, p.email FROM res_partner p JOIN res_users u ON u.partner_id = p.id"
        " WHERE u.login = p.email AND p.id % 2 = 1 ORDER BY p.id LIMIT 1",
    )[0]
    assert one(production, "SELECT email_from FROM mail_message WHERE author_id = %s",
               (partner_id,)).endswith(f"<{email}>")  # fmt: skip
    mask(production, load_rules(None), SALT)
    masked = one(production, "SELECT email FROM res_partner WHERE id = %s", (partner_id,))
    assert masked != email
    assert one(production, "SELECT login FROM res_users WHERE partner_id = %s ORDER BY id LIMIT 1",
               (partner_id,)) == masked  # fmt: skip
    assert rows(
        production, "SELECT DISTINCT email_from, reply_to FROM mail_message WHERE author_id = %s",
        (partner_id,),
    ) == [(masked, masked)]  # fmt: skip
    assert one(production, "SELECT email_normalized FROM res_partner WHERE id = %s",
               (partner_id,)) == masked  # fmt: skip


def test_two_copies_masked_with_one_salt_are_identical(
    production: Conn, postgres_server: None
) -> None:
    """Determinism: the same data and salt give the same masked data in another database."""
    mask(production, load_rules(None), SALT)
    with scratch_database() as other_name, connect(other_name) as other:
        build(other, ALL_MODULES)
        add_live_settings(other)
        add_people(other)
        mask(other, load_rules(None), SALT)
        assert masked_columns(other) == masked_columns(production)


def test_another_salt_gives_other_masks(production: Conn, postgres_server: None) -> None:
    """The salt keys the masks: no masked e-mail is shared between two salts."""
    with scratch_database() as other_name, connect(other_name) as other:
        build(other, ALL_MODULES)
        add_people(other)
        mask(other, load_rules(None), "another salt")
        mask(production, load_rules(None), SALT)
        query = "SELECT email FROM res_partner WHERE id > 3 AND email LIKE '%%example.invalid'"
        first = {e for (e,) in rows(production, query)}
        second = {e for (e,) in rows(other, query)}
        assert len(first) > 3000
        assert first.isdisjoint(second)


def test_the_admin_its_partner_and_the_company_partners_are_kept(production: Conn) -> None:
    """admin, __system__, their partners and res_company.partner_id stay as they were."""
    query = (
        "SELECT id, name, email, phone FROM res_partner WHERE id IN (1, 2, 3)"
        " OR id IN (SELECT partner_id FROM res_company) ORDER BY id"
    )
    partners = rows(production, query)
    users = rows(production, "SELECT id, login, password FROM res_users WHERE id IN (1, 2)")
    company_account = rows(production, "SELECT * FROM res_partner_bank WHERE partner_id = 1")
    mask(production, load_rules(None), SALT)
    assert rows(production, query) == partners
    assert rows(production, "SELECT id, login, password FROM res_users WHERE id IN (1, 2)") == users
    assert (
        rows(production, "SELECT * FROM res_partner_bank WHERE partner_id = 1") == company_account
    )
    assert users[1][1] == "admin"


def test_logins_stay_unique_even_when_two_differ_only_in_case(production: Conn) -> None:
    """Addresses equal but for case mask alike; the second login gets its id appended."""
    variants = rows(
        production,
        "SELECT id FROM res_users WHERE lower(login) IN"
        " (SELECT lower(login) FROM res_users GROUP BY 1 HAVING count(*) > 1) ORDER BY id",
    )
    assert len(variants) == 2
    mask(production, load_rules(None), SALT)
    (a,), (b,) = (
        rows(production, "SELECT login FROM res_users WHERE id = %s", (i,))[0] for (i,) in variants
    )
    assert a != b
    assert b == a.replace("@", f"-{variants[1][0]}@")
    assert one(production, "SELECT count(DISTINCT login) = count(*) FROM res_users")


def test_masked_values_look_valid_for_odoo(production: Conn) -> None:
    """E-mails, phones, names, zips, VATs and IBANs have plausible, valid shapes."""
    mask(production, load_rules(None), SALT)
    people = rows(
        production,
        "SELECT name, email, phone, zip, vat, street, city FROM res_partner"
        " WHERE id > 3 AND email IS NOT NULL AND NOT is_company",
    )
    assert len(people) >= 3000
    for name, email, phone, zip_code, vat, street, city in people:
        assert re.fullmatch(r"Partner [0-9a-f]{6}", name)
        assert re.fullmatch(r"user\.[0-9a-f]{16}@example\.invalid", email)
        assert re.fullmatch(r"\+1 [2-9]\d\d 555 01\d\d", phone)
        assert re.fullmatch(r"\d{5}", zip_code)
        assert vat is None or re.fullmatch(r"BE\d{9}", vat)
        assert re.fullmatch(r"Street [0-9a-f]{6} \d{1,3}", street)
        assert re.fullmatch(r"City [0-9a-f]{6}", city)
    for acc_number, sanitized in rows(
        production,
        "SELECT acc_number, sanitized_acc_number FROM res_partner_bank WHERE partner_id <> 1",
    ):
        assert acc_number == sanitized
        assert re.fullmatch(r"DE\d{20}", acc_number)
        rearranged = acc_number[4:] + "1314" + acc_number[2:4]
        assert int(rearranged) % 97 == 1


def test_null_and_empty_values_stay_as_they_are(production: Conn) -> None:
    """A NULL e-mail stays NULL and an empty phone stays empty."""
    mask(production, load_rules(None), SALT)
    assert rows(production, "SELECT email, phone FROM res_partner WHERE name LIKE 'Partner %%'"
                " AND email IS NULL") == [(None, "")]  # fmt: skip


def test_missing_tables_and_columns_are_skipped_and_reported(production: Conn) -> None:
    """Rules for other releases and modules do not fail: they are listed as skipped."""
    report = mask(production, load_rules(None), SALT)
    assert "hr_employee (table missing)" in report.skipped
    assert "res_partner.signup_token (column missing)" in report.skipped
    assert report.rows["res_partner"] >= 3120
    assert report.rows["mail_message"] == 2000
    assert report.seconds > 0


def test_file_rules_keep_rows_by_condition_and_by_reference(production: Conn) -> None:
    """keep_where keeps customer companies; keep_ids_from keeps internal users' partners."""
    companies = rows(production, "SELECT id, name FROM res_partner WHERE is_company ORDER BY id")
    internal = rows(
        production,
        "SELECT p.id, p.email FROM res_partner p JOIN res_users u ON u.partner_id = p.id"
        " WHERE NOT u.share ORDER BY p.id",
    )
    rules = load_rules(
        {
            "version": 1,
            "rules": [
                {
                    "table": "res_partner",
                    "keep_where": {"is_company": True},
                    "keep_ids_from": [
                        {"table": "res_users", "column": "partner_id", "where": {"share": False}}
                    ],
                }
            ],
        }
    )
    mask(production, rules, SALT)
    assert (
        rows(production, "SELECT id, name FROM res_partner WHERE is_company ORDER BY id")
        == companies
    )
    assert rows(
        production,
        "SELECT p.id, p.email FROM res_partner p JOIN res_users u ON u.partner_id = p.id"
        " WHERE NOT u.share ORDER BY p.id",
    ) == internal  # fmt: skip
    assert one(production, "SELECT count(*) FROM res_partner WHERE name LIKE 'Partner %%'") > 2000


def test_without_defaults_only_the_files_columns_change(production: Conn) -> None:
    """keep_defaults: false masks exactly what the file names."""
    before = rows(production, "SELECT id, name, phone FROM res_partner ORDER BY id")
    logins = rows(production, "SELECT id, login FROM res_users ORDER BY id")
    rules = load_rules(
        {
            "version": 1,
            "keep_defaults": False,
            "rules": [{"table": "res_partner", "columns": {"email": "email"}}],
        }
    )
    report = mask(production, rules, SALT)
    assert set(report.rows) == {"res_partner"}
    assert rows(production, "SELECT id, name, phone FROM res_partner ORDER BY id") == before
    assert rows(production, "SELECT id, login FROM res_users ORDER BY id") == logins


def test_a_failure_changes_nothing_and_quotes_no_personal_data(production: Conn) -> None:
    """A unique index the masks collide on: structured error, no value in it, no change."""
    production.execute(
        "UPDATE res_partner SET email = upper(email) WHERE id = 5;"
        "UPDATE res_partner SET email = (SELECT lower(email) FROM res_partner WHERE id = 5)"
        " WHERE id = 6;"
        "CREATE UNIQUE INDEX partner_email ON res_partner (email)"
    )
    before = masked_columns(production)
    with pytest.raises(DriverError) as caught:
        mask(production, load_rules(None), SALT)
    assert caught.value.code == "mask_failed"
    assert "@" not in caught.value.message
    assert masked_columns(production) == before


def test_an_empty_salt_is_refused(production: Conn) -> None:
    """Without a salt masks could be confirmed by hashing guesses: refuse."""
    with pytest.raises(OdooOpsError) as caught:
        mask(production, MaskingRules(()), "")
    assert caught.value.code == "masking_salt_missing"


def masking_validator() -> Draft202012Validator:
    """The repository's masking schema, with common.schema.json resolvable by its id."""
    resources = []
    for file in SCHEMA_DIR.glob("*.schema.json"):
        contents = json.loads(file.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents, DRAFT202012)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = registry.contents("https://odooops.dev/schemas/masking.schema.json")
    return Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize(
    "rule",
    [
        {"table": "res_partner; DROP TABLE res_users", "columns": {"email": "email"}},
        {"table": "res_partner", "columns": {"Email": "email"}},
        {"table": "res_partner", "columns": {"email": "email"}, "keep_where": {"1=1 OR x": 1}},
        {"table": "res_partner", "keep_ids_from": [{"table": "res_users", "column": "id)--"}]},
    ],
    ids=["table", "column", "keep_where column", "keep_ids_from column"],
)
def test_a_rules_file_with_a_bad_identifier_is_rejected_by_the_schema(
    rule: dict[str, Any],
) -> None:
    """Identifiers must match ^[a-z_][a-z0-9_]*$: no SQL can ride in on a name."""
    errors = list(masking_validator().iter_errors({"version": 1, "rules": [rule]}))
    assert errors
