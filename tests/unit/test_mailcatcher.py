"""The mail catcher: real SMTP over loopback into a store in a temporary directory (no Docker)."""

from __future__ import annotations

import base64
import logging
import smtplib
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey
from reconciler.data.mailcatcher import (
    CERT_FILE,
    KEY_FILE,
    MAX_MESSAGE_BYTES,
    MAX_RECIPIENTS,
    MailCatcher,
    MailCredentials,
    MailStore,
    credentials_for,
    env_for_login,
    tls_context,
)

SECRET = b"s" * 32
STAGING = EnvKey("acme", "staging")
DEV = EnvKey("acme", "dev")
LOOPBACK = "127.0.0.1"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "mail")


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return tmp_path / "mail-tls"


@pytest.fixture
def tls(tls_dir: Path) -> ssl.SSLContext:
    return tls_context(tls_dir)


@pytest.fixture
def client_tls(tls_dir: Path, tls: ssl.SSLContext) -> ssl.SSLContext:
    """A client that trusts exactly the catcher's certificate (its name, not the address)."""
    context = ssl.create_default_context(cafile=str(tls_dir / CERT_FILE))
    context.check_hostname = False
    return context


@pytest.fixture
def catcher(store: MailStore, tls: ssl.SSLContext) -> Iterator[MailCatcher]:
    running = MailCatcher(store, SECRET, tls, hosts=(LOOPBACK,), port=0)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def message(subject: str = "Your invoice", to: str = "customer@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "shop@acme.example"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Dear customer,\nplease pay.\n")
    msg.add_alternative("<p>Dear customer, <b>please pay</b>.</p>\n", subtype="html")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="INV.pdf")
    return msg


def secured(port: int) -> smtplib.SMTP:
    """A client connected and past STARTTLS (unverified, as Odoo's ``starttls``)."""
    client = smtplib.SMTP(LOOPBACK, port, timeout=5)
    client.starttls()
    return client


def send(port: int, creds: MailCredentials, msg: EmailMessage) -> None:
    with secured(port) as client:
        client.login(creds.user, creds.password)
        client.send_message(msg)


def test_credentials_are_deterministic_per_environment_and_secret() -> None:
    """The daemon re-derives them at will; each environment and secret gives different ones."""
    creds = credentials_for(SECRET, STAGING)
    assert creds == credentials_for(SECRET, STAGING)
    assert creds.user == "odooops+acme+staging"
    assert len(creds.password) == 32 and creds.password.isalnum()
    assert creds.password != credentials_for(SECRET, DEV).password
    assert creds.password != credentials_for(b"other", STAGING).password
    assert creds.password not in repr(creds)
    assert env_for_login(SECRET, creds.user, creds.password) == STAGING


def test_mail_with_the_right_credentials_is_stored_under_that_environment(
    catcher: MailCatcher, store: MailStore
) -> None:
    """Subject, sender, recipients, text, HTML and attachment names are all shown."""
    send(catcher.port, credentials_for(SECRET, STAGING), message())

    [summary] = store.list(STAGING)
    assert (summary.subject, summary.sender) == ("Your invoice", "shop@acme.example")
    assert summary.recipients == ("customer@example.com",)
    assert summary.received_at.endswith("Z")
    caught = store.get(STAGING, summary.id)
    assert caught.text == "Dear customer,\nplease pay.\n"
    assert caught.html is not None and "<b>please pay</b>" in caught.html
    assert [(a.filename, a.content_type) for a in caught.attachments] == [
        ("INV.pdf", "application/pdf")
    ]
    assert ("Subject", "Your invoice") in caught.headers
    assert b"Subject: Your invoice" in caught.raw
    assert "raw" not in caught.to_dict() and caught.to_dict()["id"] == summary.id
    assert store.list(DEV) == []


def test_two_environments_are_kept_apart(catcher: MailCatcher, store: MailStore) -> None:
    """Each login files its mail under its own environment only."""
    send(catcher.port, credentials_for(SECRET, STAGING), message("for staging"))
    send(catcher.port, credentials_for(SECRET, DEV), message("for dev"))
    assert [s.subject for s in store.list(STAGING)] == ["for staging"]
    assert [s.subject for s in store.list(DEV)] == ["for dev"]


def test_wrong_password_is_refused_and_nothing_is_stored(
    catcher: MailCatcher, store: MailStore
) -> None:
    """A 535 at login; the client never gets to send."""
    bad = MailCredentials("odooops+acme+staging", "A" * 32)
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        send(catcher.port, bad, message())
    assert info.value.smtp_code == 535
    assert store.list(STAGING) == []


def test_mail_without_auth_is_refused_and_nothing_is_stored(
    catcher: MailCatcher, store: MailStore
) -> None:
    """MAIL FROM before AUTH answers 530."""
    with (
        secured(catcher.port) as client,
        pytest.raises(smtplib.SMTPSenderRefused) as info,
    ):
        client.send_message(message())
    assert info.value.smtp_code == 530
    assert store.list(STAGING) == []


@pytest.mark.parametrize(
    ("user", "password_of"),
    [
        ("odooops+acme+dev", STAGING),  # B's name, A's password
        ("odooops+acme+staging", DEV),  # A's name, B's password
        ("odooops+acme+staging+x", STAGING),
        ("acme+staging", STAGING),
    ],
)
def test_credentials_of_one_environment_cannot_file_mail_under_another(
    catcher: MailCatcher, store: MailStore, user: str, password_of: EnvKey
) -> None:
    """The password is bound to the user name it was derived from."""
    creds = MailCredentials(user, credentials_for(SECRET, password_of).password)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send(catcher.port, creds, message())
    assert store.list(STAGING) == [] and store.list(DEV) == []


def test_recipients_beyond_the_bound_are_refused(catcher: MailCatcher, store: MailStore) -> None:
    """The extra recipient gets 452; the message goes to the first MAX_RECIPIENTS."""
    rcpts = [f"u{i}@example.com" for i in range(MAX_RECIPIENTS + 1)]
    creds = credentials_for(SECRET, STAGING)
    with secured(catcher.port) as client:
        client.login(creds.user, creds.password)
        refused = client.sendmail("shop@acme.example", rcpts, message().as_bytes())
    assert refused == {rcpts[-1]: (452, b"4.5.3 Too many recipients")}
    [summary] = store.list(STAGING)
    assert summary.recipients == tuple(rcpts[:-1])


def test_oversized_mail_is_refused_up_front(catcher: MailCatcher) -> None:
    """The size limit is advertised and a declared larger SIZE is refused with 552."""
    creds = credentials_for(SECRET, STAGING)
    with secured(catcher.port) as client:
        client.login(creds.user, creds.password)
        assert client.esmtp_features["size"] == str(MAX_MESSAGE_BYTES)
        code, _ = client.mail("shop@acme.example", [f"SIZE={MAX_MESSAGE_BYTES + 1}"])
    assert code == 552


def test_one_log_line_per_stored_mail_without_body_or_secret(
    catcher: MailCatcher, store: MailStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The id and environment are logged; subject, body and password are not."""
    creds = credentials_for(SECRET, STAGING)
    with caplog.at_level(logging.INFO, logger="odooops.mail"):
        send(catcher.port, creds, message("secret subject"))
    lines = [r.getMessage() for r in caplog.records if r.name == "odooops.mail"]
    [summary] = store.list(STAGING)
    assert len([line for line in lines if summary.id in line]) == 1
    text = "\n".join(lines)
    assert "acme/staging" in text
    assert "secret subject" not in text and "please pay" not in text
    assert creds.password not in text


def test_only_the_newest_keep_messages_are_kept(tmp_path: Path) -> None:
    """Older messages are deleted from disk when a new one is written."""
    store = MailStore(tmp_path, keep=3)
    for i in range(5):
        store.add(STAGING, "a@example.com", ["b@example.com"], message(f"m{i}").as_bytes())
    assert [s.subject for s in store.list(STAGING)] == ["m4", "m3", "m2"]
    assert len(list((tmp_path / "acme" / "staging").glob("*.eml"))) == 3
    assert len(list((tmp_path / "acme" / "staging").glob("*.json"))) == 3


def test_list_is_newest_first_and_limited(store: MailStore) -> None:
    """Ids sort by receive time even within one second."""
    ids = [store.add(STAGING, "a@x", ["b@x"], message(f"m{i}").as_bytes()).id for i in range(4)]
    assert ids == sorted(ids)
    assert [s.id for s in store.list(STAGING, limit=2)] == ids[:1:-1]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("INVOICE", ["Your invoice"]),
        ("newsletter@", ["Weekly news"]),
        ("BOSS@example", ["Reset your password"]),
        ("nothing-like-it", []),
    ],
)
def test_query_filters_subject_sender_and_recipients(
    store: MailStore, query: str, expected: list[str]
) -> None:
    """Case-insensitive substring match."""
    store.add(STAGING, "shop@acme.example", ["c@example.com"], message("Your invoice").as_bytes())
    store.add(
        STAGING, "newsletter@acme.example", ["c@example.com"], message("Weekly news").as_bytes()
    )
    store.add(
        STAGING,
        "noreply@acme.example",
        ["boss@example.com"],
        message("Reset your password").as_bytes(),
    )
    assert [s.subject for s in store.list(STAGING, query=query)] == expected


@pytest.mark.parametrize(
    "mail_id",
    ["nope", "../../etc/passwd", "20261125T203501.000000Z-deadbeef", "../staging/x.eml", ""],
)
def test_unknown_or_malformed_id_is_mail_not_found(store: MailStore, mail_id: str) -> None:
    """No path outside the environment's directory is ever read."""
    store.add(STAGING, "a@x", ["b@x"], message().as_bytes())
    with pytest.raises(OdooOpsError) as info:
        store.get(STAGING, mail_id)
    assert info.value.code == "mail_not_found"
    assert info.value.remediation == "odooops mail list acme/staging"


def test_a_key_that_is_not_a_path_component_is_refused(store: MailStore) -> None:
    """A key built from an API path cannot reach outside the store."""
    with pytest.raises(OdooOpsError) as info:
        store.list(EnvKey("..", "etc"))
    assert info.value.code == "unknown_environment"


def test_purge_forgets_one_environment_only(store: MailStore) -> None:
    """Returns the number of messages removed; the other environment keeps its mail."""
    for _ in range(2):
        store.add(STAGING, "a@x", ["b@x"], message().as_bytes())
    store.add(DEV, "a@x", ["b@x"], message().as_bytes())
    assert store.purge(STAGING) == 2
    assert store.list(STAGING) == []
    assert len(store.list(DEV)) == 1
    assert store.purge(STAGING) == 0


def test_busy_port_is_a_structured_error(store: MailStore, tmp_path: Path) -> None:
    """The remediation names the setting and the command that shows who holds the port."""
    with socket.create_server((LOOPBACK, 0)) as holder:
        port = holder.getsockname()[1]
        with pytest.raises(OdooOpsError) as info:
            MailCatcher(store, SECRET, tls_context(tmp_path), hosts=(LOOPBACK,), port=port).start()
    assert info.value.code == "mail_catcher_port_busy"
    assert "mail_catcher.port" in info.value.remediation
    assert f"ss -ltnp 'sport = :{port}'" in info.value.remediation


def test_stop_releases_the_port(store: MailStore, tls: ssl.SSLContext) -> None:
    """A second catcher can bind the same port right after stop()."""
    first = MailCatcher(store, SECRET, tls, hosts=(LOOPBACK,), port=0)
    first.start()
    port = first.port
    send(port, credentials_for(SECRET, STAGING), message())
    first.stop()
    second = MailCatcher(store, SECRET, tls, hosts=(LOOPBACK,), port=port)
    second.start()
    try:
        assert second.port == port
        send(port, credentials_for(SECRET, STAGING), message())
    finally:
        second.stop()
    assert len(store.list(STAGING)) == 2


# ------------------------------------------------------------------------------- STARTTLS


def test_auth_is_neither_offered_nor_accepted_before_starttls(
    catcher: MailCatcher, store: MailStore
) -> None:
    """In clear: STARTTLS is offered, AUTH is not, and AUTH or MAIL answer 530."""
    creds = credentials_for(SECRET, STAGING)
    with smtplib.SMTP(LOOPBACK, catcher.port, timeout=5) as client:
        client.ehlo()
        assert "starttls" in client.esmtp_features
        assert "auth" not in client.esmtp_features
        code, text = client.docmd("AUTH", "PLAIN " + _plain(creds))
        assert code == 530 and b"STARTTLS" in text
        code, _ = client.docmd("MAIL", "FROM:<shop@acme.example>")
        assert code == 530
    assert store.list(STAGING) == []


def test_after_starttls_auth_is_offered_with_the_daemon_s_certificate(
    catcher: MailCatcher, client_tls: ssl.SSLContext
) -> None:
    """The certificate verifies against the one kept in the data directory."""
    with smtplib.SMTP(LOOPBACK, catcher.port, timeout=5) as client:
        client.starttls(context=client_tls)
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        peer = client.sock.getpeercert()  # type: ignore[union-attr]
    assert peer is not None and ("DNS", "odooops-mail") in peer["subjectAltName"]


def test_the_certificate_is_made_once_and_its_key_is_private(tls_dir: Path) -> None:
    tls_context(tls_dir)
    cert = (tls_dir / CERT_FILE).read_bytes()
    key = tls_dir / KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    assert tls_dir.stat().st_mode & 0o777 == 0o700
    tls_context(tls_dir)
    assert (tls_dir / CERT_FILE).read_bytes() == cert


def test_one_catcher_listens_on_each_address_and_on_the_same_port(
    store: MailStore, tls: ssl.SSLContext
) -> None:
    """Port 0: the first address picks a free port, the others take the same one."""
    running = MailCatcher(store, SECRET, tls, hosts=(LOOPBACK, "127.0.0.2"), port=0)
    running.start()
    try:
        port = running.port
        assert running.addresses == (f"127.0.0.1:{port}", f"127.0.0.2:{port}")
        for host in (LOOPBACK, "127.0.0.2"):
            with smtplib.SMTP(host, port, timeout=5) as client:
                assert client.ehlo()[0] == 250
    finally:
        running.stop()


def _plain(creds: MailCredentials) -> str:
    return base64.b64encode(f"\0{creds.user}\0{creds.password}".encode()).decode()
