"""The platform mail catcher: what non-production environments tried to send, kept per environment.

Staging, dev and ephemeral Odoo databases are copies of production, full of real customers'
addresses and scheduled mailings; one forgotten cron would mail them all. So their outgoing mail
server is this SMTP catcher, and nothing it receives ever leaves the host. Users read the caught
mail with ``odooops mail list``/``mail show`` or through the API.

Identity is the SMTP login. Every environment gets its own credentials, derived from a platform
secret by :func:`credentials_for`, so nothing has to be stored and the daemon can recompute them
whenever it renders an environment's ``ir_mail_server``. A successful AUTH binds the session to
one :class:`~reconciler.core.model.EnvKey`, and every message of that session is filed under it: an
environment cannot file mail under another one, and an unauthenticated client is refused before
``MAIL FROM`` (530), so nothing unattributed is ever stored.

AUTH runs over plain text on purpose (``auth_require_tls=False``): Odoo containers reach the
catcher over the host's Docker bridge (``odooops-mail`` -> host-gateway), traffic that never
crosses a physical network, and the credentials only grant the right to have mail *caught*,
never sent. Requiring STARTTLS would force a certificate onto every environment for no gain.

Layout on disk (directories 0700, files 0600, since caught mail holds password-reset links)::

    <root>/<project>/<env>/<id>.eml    the message exactly as received
    <root>/<project>/<env>/<id>.json   its summary, so listing never parses a message

Ids start with the UTC receive time to the microsecond and are strictly increasing within a
process, so a plain name sort is a time sort and retention can drop the oldest by name.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import MIMEPart
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey

log = logging.getLogger("odooops.mail")

USER_PREFIX = "odooops+"
"""Logins are ``odooops+<project>+<env>``: names never contain ``+``, so the split is exact."""

SERVER_NAME = "odooops-mail"
"""Greeting name; fixed so aiosmtpd does not resolve the host's FQDN on every connection."""

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
"""Advertised with ESMTP SIZE and enforced during DATA; a larger mail would not be sent anyway."""

MAX_RECIPIENTS = 100
"""RFC 5321 4.5.3.1.8: servers must accept 100; beyond it a client retries in a new transaction."""

DEFAULT_KEEP = 500

_PASSWORD_CHARS = 32
_READY_TIMEOUT = 5.0
_MAIL_ID = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}")
# Stricter names are enforced by validation; this only guarantees one safe path component.
_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True)
class MailCredentials:
    """What an environment's ``ir_mail_server`` logs in with (``smtp_user``/``smtp_pass``)."""

    user: str
    password: str = field(repr=False)


def credentials_for(secret: bytes, key: EnvKey) -> MailCredentials:
    """Derive an environment's catcher login from the platform secret; the same inputs, the same
    credentials, so they are recomputed rather than stored.

    The password is HMAC-SHA256(secret, user) in base32 (letters and digits, safe in any config
    file), truncated to 160 bits.
    """
    if not secret:
        raise ValueError("the mail catcher secret is empty: every password would be guessable")
    user = f"{USER_PREFIX}{key.project}+{key.env}"
    digest = hmac.new(secret, user.encode(), hashlib.sha256).digest()
    password = base64.b32encode(digest).decode("ascii")[:_PASSWORD_CHARS]
    return MailCredentials(user, password)


def env_of_user(user: str) -> EnvKey | None:
    """The environment a user name claims (``odooops+<project>+<env>``), or ``None``."""
    if not user.startswith(USER_PREFIX):
        return None
    parts = user.removeprefix(USER_PREFIX).split("+")
    if len(parts) != 2 or not all(_SAFE_NAME.fullmatch(p) for p in parts):
        return None
    return EnvKey(parts[0], parts[1])


def env_for_login(secret: bytes, user: str, password: str) -> EnvKey | None:
    """The environment a login proves, or ``None``; the password is compared in constant time."""
    key = env_of_user(user)
    if key is None:
        return None
    expected = credentials_for(secret, key).password
    if not hmac.compare_digest(password.encode(), expected.encode()):
        return None
    return key


@dataclass(frozen=True)
class MailSummary:
    """One line of ``odooops mail list``: envelope data plus the decoded subject."""

    id: str
    received_at: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "subject": self.subject,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> MailSummary:
        return cls(
            id=str(doc["id"]),
            received_at=str(doc["received_at"]),
            sender=str(doc["sender"]),
            recipients=tuple(str(r) for r in doc["recipients"]),
            subject=str(doc["subject"]),
            size=int(doc["size"]),
        )

    def matches(self, query: str) -> bool:
        """Case-insensitive substring match on subject, sender and recipients."""
        needle = query.casefold()
        fields = (self.subject, self.sender, *self.recipients)
        return any(needle in text.casefold() for text in fields)


@dataclass(frozen=True)
class Attachment:
    """A part of a message that is neither its text nor its HTML body."""

    filename: str | None
    content_type: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "content_type": self.content_type, "size": self.size}


@dataclass(frozen=True)
class MailMessage:
    """A caught message, parsed for display; ``raw`` is the exact bytes received."""

    summary: MailSummary
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    raw: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The summary's fields plus the parsed parts; ``raw`` is served on its own (``.eml``)."""
        return {
            **self.summary.to_dict(),
            "headers": [[name, value] for name, value in self.headers],
            "text": self.text,
            "html": self.html,
            "attachments": [a.to_dict() for a in self.attachments],
        }


class MailStore:
    """Caught mail on disk, one directory per environment, newest ``keep`` kept.

    Writes are atomic (temporary file, then rename) and the ``.eml`` is renamed into place
    before its summary, so whatever ``list`` shows, ``get`` can open. Writers are serialised by
    a lock (the SMTP thread adds while the API purges); readers take no lock.
    """

    def __init__(self, root: Path, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.root = root
        self.keep = keep
        self._lock = threading.Lock()
        self._last: datetime | None = None

    def add(self, key: EnvKey, sender: str, recipients: Sequence[str], raw: bytes) -> MailSummary:
        """Store one message under ``key`` and drop that environment's oldest beyond ``keep``."""
        headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
        with self._lock:
            directory = self._env_dir(key)
            for path in (self.root, directory.parent, directory):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            received = self._next_instant()
            summary = MailSummary(
                id=f"{received:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(4)}",
                received_at=received.isoformat(timespec="seconds").replace("+00:00", "Z"),
                sender=sender,
                recipients=tuple(recipients),
                subject=str(headers.get("subject", "")),
                size=len(raw),
            )
            _write_atomic(directory / f"{summary.id}.eml", raw)
            _write_atomic(directory / f"{summary.id}.json", json.dumps(summary.to_dict()).encode())
            dropped = self._trim(directory)
        log.info(
            "caught mail %s for %s: %d bytes, %d recipients%s",
            summary.id,
            key,
            summary.size,
            len(summary.recipients),
            f", dropped {dropped} oldest" if dropped else "",
        )
        return summary

    def list(self, key: EnvKey, limit: int = 50, query: str | None = None) -> list[MailSummary]:
        """Newest first, at most ``limit``, only those matching ``query`` when given."""
        found: list[MailSummary] = []
        for mail_id in reversed(self._ids(self._env_dir(key), ".json")):
            if len(found) >= limit:
                break
            summary = self._summary(key, mail_id)
            if summary is not None and (query is None or summary.matches(query)):
                found.append(summary)
        return found

    def get(self, key: EnvKey, mail_id: str) -> MailMessage:
        """The parsed message; an unknown or malformed id is ``mail_not_found``."""
        raw = self.raw(key, mail_id)
        summary = self._summary(key, mail_id)
        if summary is None:
            raise _not_found(key, mail_id)
        return _parse(summary, raw)

    def raw(self, key: EnvKey, mail_id: str) -> bytes:
        """The message exactly as received (for download as ``.eml``), without parsing it."""
        if not _MAIL_ID.fullmatch(mail_id):
            raise _not_found(key, mail_id)
        try:
            return (self._env_dir(key) / f"{mail_id}.eml").read_bytes()
        except FileNotFoundError as exc:
            raise _not_found(key, mail_id) from exc

    def purge(self, key: EnvKey) -> int:
        """Forget an environment's mail (it was destroyed); returns how many messages went."""
        directory = self._env_dir(key)
        with self._lock:
            count = len(self._ids(directory, ".eml"))
            if directory.is_dir():
                shutil.rmtree(directory)
                if not any(directory.parent.iterdir()):
                    directory.parent.rmdir()
        if count:
            log.info("purged %d caught mails of %s", count, key)
        return count

    def _env_dir(self, key: EnvKey) -> Path:
        """The environment's directory; names that are not one plain path component are refused
        so a key built from an API path cannot reach outside ``root``."""
        if not (_SAFE_NAME.fullmatch(key.project) and _SAFE_NAME.fullmatch(key.env)):
            raise OdooOpsError(
                f"{key!s:.80} is not an environment name",
                code="unknown_environment",
                remediation="odooops env list",
            )
        return self.root / key.project / key.env

    @staticmethod
    def _ids(directory: Path, suffix: str) -> tuple[str, ...]:
        """Message ids present with ``suffix``, oldest first (names sort by receive time)."""
        if not directory.is_dir():
            return ()
        names = (
            p.name.removesuffix(suffix) for p in directory.iterdir() if p.name.endswith(suffix)
        )
        return tuple(sorted(name for name in names if _MAIL_ID.fullmatch(name)))

    def _summary(self, key: EnvKey, mail_id: str) -> MailSummary | None:
        """The stored summary, or ``None`` if retention or a purge removed it meanwhile."""
        path = self._env_dir(key) / f"{mail_id}.json"
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return MailSummary.from_dict(doc)

    def _trim(self, directory: Path) -> int:
        """Delete all but the newest ``keep``; the summary goes first so ``list`` never shows a
        message whose ``.eml`` is already gone."""
        excess = self._ids(directory, ".eml")[: -self.keep]
        for mail_id in excess:
            (directory / f"{mail_id}.json").unlink(missing_ok=True)
            (directory / f"{mail_id}.eml").unlink(missing_ok=True)
        return len(excess)

    def _next_instant(self) -> datetime:
        """Now in UTC, nudged past the previous id's instant so ids strictly increase even when
        two mails arrive within one microsecond or the clock steps back."""
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


def _not_found(key: EnvKey, mail_id: str) -> OdooOpsError:
    return OdooOpsError(
        f"no caught mail {mail_id!r:.80} in {key}",
        code="mail_not_found",
        remediation=f"odooops mail list {key}",
    )


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never half.

    The temporary name starts with a dot and has no mail suffix, so a crash leaves a file that
    listing and retention ignore."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _parse(summary: MailSummary, raw: bytes) -> MailMessage:
    """Headers decoded, the preferred text and HTML bodies, and every other leaf as attachment."""
    msg = message_from_bytes(raw, policy=policy.default)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    attachments = tuple(
        Attachment(part.get_filename(), part.get_content_type(), _payload_size(part))
        for part in _leaves(msg)
        if not any(part is body for body in bodies)
    )
    return MailMessage(
        summary=summary,
        headers=tuple((name, str(value)) for name, value in msg.items()),
        text=_text_of(text_part),
        html=_text_of(html_part),
        attachments=attachments,
        raw=raw,
    )


def _leaves(part: MIMEPart) -> Iterator[MIMEPart]:
    """Non-multipart parts, depth first; an attached message (``message/rfc822``) is one leaf."""
    if part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            yield from _leaves(sub)
    else:
        yield part


def _payload_size(part: MIMEPart) -> int:
    payload = part.get_payload(decode=True)
    return len(payload) if isinstance(payload, bytes) else len(part.as_bytes())


def _text_of(part: MIMEPart | None) -> str | None:
    """Decoded text of a body part, with the wire's CRLF line ends turned into ``\\n`` for
    display; an unknown charset falls back to UTF-8 with replacements rather than hiding it."""
    if part is None:
        return None
    try:
        content = part.get_content()
    except LookupError:
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


class _AuthGatedSMTP(SMTP):
    """aiosmtpd's SMTP with AUTH required, without its ``auth_required`` flag.

    That flag, combined with ``auth_require_tls=False``, makes every connection emit a
    ``UserWarning`` (an error under ``filterwarnings = error``, log noise in production). The
    flag does nothing but answer 530 from ``check_auth_needed`` (HELP, VRFY, MAIL, RCPT, DATA),
    so overriding that hook gives the same protocol behaviour without the warning.
    """

    async def check_auth_needed(self, caller_method: str) -> bool:
        if self.session is not None and self.session.authenticated:
            return False
        await self.push("530 5.7.0 Authentication required")
        return True


class _Handler:
    """aiosmtpd hooks: bound the recipients, store each message under the session's login."""

    def __init__(self, store: MailStore) -> None:
        self._store = store

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        key = session.auth_data
        if not isinstance(key, EnvKey):
            return "530 5.7.0 Authentication required"
        raw = envelope.original_content or b""
        try:
            # Synchronous on purpose: one small file write at catcher rates, and no executor
            # threads to outlive stop().
            summary = self._store.add(key, envelope.mail_from or "", envelope.rcpt_tos, raw)
        except OSError as exc:
            log.error("cannot store caught mail for %s: %s", key, exc.strerror or exc)
            return "451 4.3.0 Cannot store the message now, try again later"
        return f"250 2.0.0 Ok: caught as {summary.id}"


class _BoundController(Controller):
    """aiosmtpd's threaded controller serving a socket already bound by the caller.

    Binding first, in the caller's thread, makes a busy port an immediate ``OSError`` (the stock
    controller binds in its thread and reports it only after ``ready_timeout``), supports port 0,
    and lets the readiness probe connect to loopback instead of ``0.0.0.0``.
    """

    def __init__(self, sock: socket.socket, smtp_factory: Callable[[], SMTP]) -> None:
        address = sock.getsockname()
        super().__init__(
            None,
            hostname=_probe_address(sock.family, address[0]),
            port=address[1],
            ready_timeout=_READY_TIMEOUT,
        )
        self._sock = sock
        self._smtp_factory = smtp_factory

    def factory(self) -> SMTP:
        return self._smtp_factory()

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


def _probe_address(family: int, bound: str) -> str:
    """Where to connect to reach a listener bound to ``bound``: loopback for a wildcard."""
    if ipaddress.ip_address(bound.split("%")[0]).is_unspecified:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"
    return bound


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MailCatcher:
    """The SMTP server, in a thread of its own, filing mail into a :class:`MailStore`."""

    def __init__(
        self, store: MailStore, secret: bytes, host: str = "0.0.0.0", port: int = 2525
    ) -> None:
        if not secret:
            raise ValueError("the mail catcher secret is empty: every password would be guessable")
        self._store = store
        self._secret = secret
        self._host = host
        self._port = port
        self._handler = _Handler(store)
        self._controller: _BoundController | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port listened on: the bound one once started (so port 0 means "any free")."""
        if self._controller is not None:
            return self._controller.port
        return self._port

    def start(self) -> None:
        """Listen and serve until :meth:`stop`; a busy port is a ``mail_catcher_port_busy``."""
        if self._controller is not None:
            raise RuntimeError("the mail catcher is already running")
        sock = self._bind()
        controller = _BoundController(sock, self._smtp)
        try:
            controller.start()
        except BaseException:
            # Leave no thread, event loop or socket behind a failed start.
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():
                controller.loop.close()
            sock.close()
            raise
        self._controller = controller
        self._sock = sock
        log.info("mail catcher listening on %s", _endpoint(self._host, self.port))

    def stop(self) -> None:
        """Close the listener and every connection, and join the thread; safe to call twice."""
        controller, self._controller = self._controller, None
        sock, self._sock = self._sock, None
        if controller is not None:
            controller.stop()
        if sock is not None:
            # The server closed it already; closing again is a no-op that makes it certain.
            sock.close()

    def _bind(self) -> socket.socket:
        try:
            family, _, _, _, address = socket.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            return socket.create_server(address, family=family)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OdooOpsError(
                    f"the mail catcher cannot listen on {_endpoint(self._host, self._port)}: "
                    "the port is already in use",
                    code="mail_catcher_port_busy",
                    remediation=(
                        f"find the listener with: ss -ltnp 'sport = :{self._port}', then stop "
                        "it or set mail_catcher.port in odooops.yaml to a free port"
                    ),
                ) from exc
            raise OdooOpsError(
                f"the mail catcher cannot listen on {_endpoint(self._host, self._port)}: "
                f"{exc.strerror or exc}",
                code="mail_catcher_listen_failed",
                remediation="set mail_catcher.listen and mail_catcher.port in odooops.yaml to an "
                "address of this host and a free port",
            ) from exc

    def _smtp(self) -> SMTP:
        """One protocol instance per connection (aiosmtpd's controller calls this on accept)."""
        return _AuthGatedSMTP(
            self._handler,
            hostname=SERVER_NAME,
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            auth_require_tls=False,
            authenticator=self._authenticate,
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """AUTH PLAIN/LOGIN: succeed only for a login that proves one environment.

        The session then carries the :class:`EnvKey` as its ``auth_data``, which is what
        ``handle_DATA`` files the mail under. Only the environment, never the password (nor a
        login that does not look like one of ours: it might be a mistyped password) is logged.
        """
        if isinstance(auth_data, LoginPassword):
            try:
                user = auth_data.login.decode()
                password = auth_data.password.decode()
            except UnicodeDecodeError:
                user = password = ""
            key = env_for_login(self._secret, user, password)
            if key is not None:
                return AuthResult(success=True, auth_data=key)
            claimed = env_of_user(user)
            if claimed is not None:
                log.warning(
                    "refused SMTP login for %s from %s: wrong password", claimed, session.peer
                )
            else:
                log.warning("refused SMTP login from %s: not an odooops user", session.peer)
        return AuthResult(success=False, handled=False)
