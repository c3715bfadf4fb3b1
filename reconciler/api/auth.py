"""API authentication and authorisation: signed bearer tokens, scopes, environments, addresses.

Every endpoint but health needs a JWT. A token is signed with HS256 under a configured secret or
with RS256/ES256 under a private key whose public half the daemon holds. It names a subject (the
author of the git commits the request makes), scopes (``env:write`` and ``deploy`` imply
``env:read``; ``admin`` implies every scope) and, optionally, globs over ``project/env`` that
confine it to some environments. Writes to production may further be limited to an IP allowlist.

Every token carries a ``jti``; one named in the revocation list (``Revocations``, kept by the
daemon in its data directory) is refused on every request, and so is one whose lifetime
(``exp - iat``) exceeds the configured maximum, so a long-lived token minted elsewhere cannot
outlive the policy. Subjects, names and emails end up in commit authors and trailers, so they
are refused when they hold control characters or angle brackets (a forged trailer line).

Verification pins the algorithm to the configured one and never reads it from the token's header,
so ``alg: none`` and algorithm confusion (an HS256 token keyed with the RSA public key) fail
before anything else. Time claims are checked against the injected clock, never ``time.time()``,
and only after the signature, issuer and audience have verified: an attacker must never learn
"expired" about a token they forged. Nothing here does I/O; errors never quote a token, a header
or a key, and tracebacks are cut (``from None``) so a library's message cannot leak one either.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
import shlex
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from reconciler.core.errors import OdooOpsError
from reconciler.core.globs import matches

__all__ = [
    "ALGORITHMS",
    "SCOPES",
    "AuthConfig",
    "AuthMisconfigured",
    "Forbidden",
    "InvalidTokenRequest",
    "Principal",
    "Revocations",
    "TokenAuthority",
    "TokenExpired",
    "TokenLifetimeExceeded",
    "TokenRevoked",
    "Unauthenticated",
    "authorize",
    "check_production_write",
    "check_token_id",
    "ip_allowed",
    "peek",
]

SCOPES: tuple[str, ...] = (
    "env:read",
    "env:write",
    "deploy",
    "db:backup",
    "db:restore",
    "shell",
    "admin",
)
ALGORITHMS: tuple[str, ...] = ("HS256", "RS256", "ES256")

_IMPLIED: Mapping[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "env:write": frozenset({"env:read"}),
    "deploy": frozenset({"env:read"}),
}
_MIN_SECRET_BYTES = 32
_MIN_RSA_BITS = 2048
# Far above any token we mint (a few hundred bytes); refused before any decoding work.
_MAX_TOKEN_CHARS = 8192
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]
# A jti becomes a key of the revocation list and a word of its audit log: keep it plain.
TOKEN_ID = re.compile(r"[A-Za-z0-9_:=+/-]{1,128}")
# Control characters would forge commit trailer lines; angle brackets a git author.
_UNSAFE_IDENTITY = re.compile(r"[\x00-\x1f\x7f<>]")

_LOGIN = "odooops login --token TOKEN"
_NEW_TOKEN = (
    f"ask an admin for a token: odooops token create --subject NAME --scope SCOPE, then {_LOGIN}"
)

_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_KEYGEN = {
    "RS256": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out PRIVATE-KEY.pem",
    "ES256": "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out PRIVATE-KEY.pem",
}


class Unauthenticated(OdooOpsError):
    """401: no usable token (missing, malformed, forged, or not meant for this API)."""

    code = "unauthenticated"


class TokenExpired(OdooOpsError):
    """401: a genuine token whose ``exp`` (plus leeway) has passed."""

    code = "token_expired"


class TokenRevoked(OdooOpsError):
    """401: a genuine token whose ``jti`` an admin revoked."""

    code = "token_revoked"


class TokenLifetimeExceeded(OdooOpsError):
    """401: a genuine token whose lifetime (``exp - iat``) is above this daemon's maximum."""

    code = "token_lifetime_exceeded"


class Forbidden(OdooOpsError):
    """403: a genuine token that may not do this (scope, environment or client address)."""

    code = "forbidden"


class AuthMisconfigured(OdooOpsError, ValueError):
    """The daemon's auth settings cannot work (weak secret, missing or wrong key)."""

    code = "auth_misconfigured"


class InvalidTokenRequest(OdooOpsError, ValueError):
    """A token cannot be minted as asked (unknown scope, lifetime above the maximum...)."""

    code = "invalid_token_request"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token; ``scopes`` only holds known scopes."""

    subject: str
    name: str
    email: str
    scopes: frozenset[str]
    environments: tuple[str, ...]
    token_id: str
    expires_at: datetime

    def has(self, scope: str) -> bool:
        """Whether the token grants ``scope``, directly or through an implying scope."""
        _check_scope(scope)
        return any(scope == held or scope in _IMPLIED.get(held, ()) for held in self.scopes)

    def may_touch(self, environment: str) -> bool:
        """Whether ``environment`` (``project/env``) is within the token's globs (none: all)."""
        return not self.environments or any(matches(g, environment) for g in self.environments)


@dataclass(frozen=True)
class AuthConfig:
    """How tokens are signed and checked; refuses settings that cannot be safe at construction."""

    algorithm: str = "HS256"
    secret: bytes | None = field(default=None, repr=False)
    public_key: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    issuer: str = "odooops"
    audience: str = "odooops-api"
    default_ttl: timedelta = timedelta(hours=12)
    max_ttl: timedelta = timedelta(days=30)
    leeway: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise AuthMisconfigured(
                f"unsupported JWT algorithm {self.algorithm!r}",
                remediation=f"set the API's JWT algorithm to one of {', '.join(ALGORITHMS)}",
            )
        if self.algorithm == "HS256":
            if self.secret is None or len(self.secret) < _MIN_SECRET_BYTES:
                got = "none" if self.secret is None else f"{len(self.secret)} bytes"
                raise AuthMisconfigured(
                    f"the HS256 secret must be at least {_MIN_SECRET_BYTES} bytes (got {got})",
                    remediation="generate a random one with: odooops init-key "
                    "/var/lib/odooops/api-jwt.key, and configure that file as the API secret",
                )
        elif self.public_key is None:
            raise AuthMisconfigured(
                f"{self.algorithm} needs the PEM public key that verifies tokens",
                remediation="configure the API public key, e.g. the output of "
                "openssl pkey -in PRIVATE-KEY.pem -pubout",
            )
        if not timedelta(0) < self.default_ttl <= self.max_ttl:
            raise AuthMisconfigured(
                f"the default token lifetime {self.default_ttl} must be positive and at most "
                f"the maximum {self.max_ttl}",
                remediation="lower the API's default token lifetime or raise its maximum",
            )
        if self.leeway < timedelta(0):
            raise AuthMisconfigured(
                "the clock leeway must not be negative",
                remediation="set the API's clock leeway to a few seconds (30s is the default)",
            )


class Revocations(Protocol):
    """The revocation list and token audit log (``reconciler.api.revocations.RevocationList``).

    A protocol so that this module stays free of I/O: the daemon hands in the file-backed list,
    tests an in-memory one.
    """

    def is_revoked(self, token_id: str) -> bool:
        """Whether ``token_id`` was revoked; raises when the list cannot be read (fail closed)."""
        ...

    def revoke(
        self, token_id: str, *, by: str, reason: str, subject: str = "", expires_at: str = ""
    ) -> dict[str, str]:
        """Add ``token_id`` to the list and record who did it, when and why."""
        ...

    def record(self, event: Mapping[str, str]) -> None:
        """Append one event (a token minted, a credential viewed...) to the token audit log;
        raises ``OSError`` when it cannot be written."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenAuthority:
    """Mints and verifies tokens under one :class:`AuthConfig`; keys are parsed once, here.

    ``revocations``, when given, is consulted on every verification (after the signature).
    """

    def __init__(
        self,
        config: AuthConfig,
        clock: Callable[[], datetime] = _utcnow,
        revocations: Revocations | None = None,
    ) -> None:
        self.config = config
        self.revocations = revocations
        self._clock = clock
        self._verify_key: bytes | _PublicKey
        self._sign_key: bytes | _PrivateKey | None
        if config.algorithm == "HS256":
            assert config.secret is not None  # guaranteed by AuthConfig
            self._verify_key = self._sign_key = config.secret
        else:
            assert config.public_key is not None  # guaranteed by AuthConfig
            self._verify_key = _load_public_key(config.algorithm, config.public_key)
            self._sign_key = None
            if config.private_key is not None:
                self._sign_key = _load_private_key(config.algorithm, config.private_key)
                if _public_numbers(self._sign_key.public_key()) != _public_numbers(
                    self._verify_key
                ):
                    raise AuthMisconfigured(
                        "the private key does not match the public key: tokens it signs "
                        "would never verify",
                        remediation="configure the public key derived from the private key: "
                        "openssl pkey -in PRIVATE-KEY.pem -pubout",
                    )

    def mint(
        self,
        subject: str,
        scopes: Iterable[str],
        *,
        environments: Sequence[str] = (),
        ttl: timedelta | None = None,
        name: str | None = None,
        email: str | None = None,
    ) -> str:
        """A signed token for ``subject``; ``iat``/``nbf``/``exp`` come from the clock."""
        if self._sign_key is None:
            raise AuthMisconfigured(
                f"this daemon holds no {self.config.algorithm} private key, so it cannot mint",
                remediation="run odooops token create where the API private key is configured",
            )
        if not _safe_subject(subject):
            raise InvalidTokenRequest(
                "the subject must be a non-empty name without spaces, control characters or "
                "angle brackets",
                remediation="odooops token create --subject alice --scope env:read",
            )
        if isinstance(scopes, str) or isinstance(environments, str):
            raise TypeError("scopes and environments are collections of strings, not one string")
        granted = frozenset(scopes)
        unknown = sorted(granted - set(SCOPES))
        if unknown or not granted:
            problem = f"unknown scope {', '.join(unknown)}" if unknown else "no scope given"
            raise InvalidTokenRequest(
                f"{problem}; allowed scopes: {', '.join(SCOPES)}",
                remediation=f"odooops token create --subject {shlex.quote(subject)} "
                "--scope SCOPE (one of " + ", ".join(SCOPES) + ")",
            )
        for glob in environments:
            if not glob or any(c.isspace() for c in glob):
                raise InvalidTokenRequest(
                    "an environment glob must be non-empty and without spaces",
                    remediation=_create_command(subject, granted, ("acme/*",)),
                )
        for claim, value in (("name", name), ("email", email)):
            if value is not None and (not value.strip() or _UNSAFE_IDENTITY.search(value)):
                raise InvalidTokenRequest(
                    f"the {claim} must not be empty, nor hold control characters or angle "
                    "brackets, when given",
                    remediation=_create_command(subject, granted, environments),
                )
        lifetime = self.config.default_ttl if ttl is None else ttl
        if not timedelta(0) < lifetime <= self.config.max_ttl:
            raise InvalidTokenRequest(
                f"a token lifetime must be positive and at most {self.config.max_ttl} "
                f"(asked: {lifetime})",
                remediation=_create_command(subject, granted, environments)
                + f" --ttl {_hours(self.config.max_ttl)}h",
            )
        issued = math.floor(self._now().timestamp())
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + math.floor(lifetime.total_seconds()),
            "jti": uuid.uuid4().hex,
            "scope": " ".join(_ordered(granted)),
        }
        if environments:
            claims["envs"] = list(environments)
        if name is not None:
            claims["name"] = name
        if email is not None:
            claims["email"] = email
        return jwt.encode(claims, self._sign_key, algorithm=self.config.algorithm)

    def verify(self, token: str | None) -> Principal:
        """The principal a token proves, or :class:`Unauthenticated` / :class:`TokenExpired`."""
        if not token:
            raise Unauthenticated("no bearer token was presented", remediation=_NEW_TOKEN)
        if len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated(
                f"the bearer token is longer than {_MAX_TOKEN_CHARS} characters",
                remediation=_NEW_TOKEN,
            )
        claims = self._decode(token)
        principal = _principal(claims)
        self._check_lifetime(claims, principal)
        if self.revocations is not None and self.revocations.is_revoked(principal.token_id):
            raise TokenRevoked(
                f"the token {principal.token_id} of {principal.subject} was revoked",
                remediation="ask an admin for a new one: "
                + _create_command(principal.subject, principal.scopes, principal.environments)
                + f", then {_LOGIN}",
            )
        self._check_times(claims, principal)
        return principal

    def authenticate_header(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header value."""
        if not authorization or not authorization.strip():
            raise Unauthenticated(
                "this endpoint needs an Authorization: Bearer header", remediation=_NEW_TOKEN
            )
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        # Never quote the header: another scheme (Basic) carries a password in it.
        if scheme.lower() != "bearer" or not credentials or " " in credentials:
            raise Unauthenticated(
                "the Authorization header is not of the form 'Bearer <token>'",
                remediation=_NEW_TOKEN,
            )
        return self.verify(credentials)

    def _now(self) -> datetime:
        now = self._clock()
        if now.utcoffset() is None:
            raise ValueError("the auth clock must return timezone-aware datetimes")
        return now

    def _decode(self, token: str) -> dict[str, Any]:
        config = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._verify_key,
                algorithms=[config.algorithm],
                audience=config.audience,
                issuer=config.issuer,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "strict_aud": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidAlgorithmError:
            message = f"the token is not signed with {config.algorithm}, the one accepted"
        except jwt.InvalidSignatureError:
            message = "the token's signature does not verify: it was altered or signed elsewhere"
        except jwt.MissingRequiredClaimError as exc:
            message = f"the token lacks the required claim {exc.claim!r}"
        except jwt.InvalidIssuerError:
            message = f"the token was not issued by {config.issuer!r}"
        except jwt.InvalidAudienceError:
            message = f"the token is not meant for {config.audience!r}"
        except jwt.PyJWTError:
            message = "the bearer token is malformed"
        else:
            return claims
        raise Unauthenticated(message, remediation=_NEW_TOKEN) from None

    def _check_lifetime(self, claims: Mapping[str, Any], principal: Principal) -> None:
        """A token minted for longer than the maximum (elsewhere, or before the maximum was
        lowered) is refused as a whole, not trusted until its distant ``exp``."""
        lifetime = _timestamp(claims, "exp") - _timestamp(claims, "iat")
        if lifetime > self.config.max_ttl.total_seconds():
            hours = lifetime / 3600
            raise TokenLifetimeExceeded(
                f"the token {principal.token_id} of {principal.subject} lives {hours:.0f} h, "
                f"above this daemon's maximum of {_hours(self.config.max_ttl)} h",
                remediation="ask an admin for a token within the maximum: "
                + _create_command(principal.subject, principal.scopes, principal.environments)
                + f" --ttl 12h, then {_LOGIN}",
            )

    def _check_times(self, claims: Mapping[str, Any], principal: Principal) -> None:
        """Expiry first: a genuine but stale token gets the actionable answer."""
        now = self._now().timestamp()
        leeway = self.config.leeway.total_seconds()
        if _timestamp(claims, "exp") <= now - leeway:
            raise TokenExpired(
                f"the token of {principal.subject} expired at "
                f"{principal.expires_at.isoformat(timespec='seconds')}",
                remediation="ask an admin for a new one: "
                + _create_command(principal.subject, principal.scopes, principal.environments)
                + f", then {_LOGIN}",
            )
        if "nbf" in claims and _timestamp(claims, "nbf") > now + leeway:
            raise Unauthenticated(
                "the token is not valid yet (nbf is in the future)",
                remediation="check the clocks of this host and the daemon (NTP), then retry; "
                + _NEW_TOKEN,
            )
        if _timestamp(claims, "iat") > now + leeway:
            raise Unauthenticated(
                "the token claims to be issued in the future",
                remediation="check the clocks of this host and the daemon (NTP), then retry; "
                + _NEW_TOKEN,
            )


def authorize(principal: Principal, scope: str, environment: str | None = None) -> None:
    """Raise :class:`Forbidden` unless ``principal`` has ``scope`` (on ``environment``)."""
    if not principal.has(scope):
        raise Forbidden(
            f"the token of {principal.subject} lacks the scope {scope}",
            remediation=f"ask an admin for a token with scope {scope}: "
            + _create_command(
                principal.subject, principal.scopes | {scope}, principal.environments
            ),
        )
    if environment is not None and not principal.may_touch(environment):
        raise Forbidden(
            f"the token of {principal.subject} is limited to "
            f"{', '.join(principal.environments)}; {environment} is outside",
            remediation=f"ask an admin for a token covering {environment}: "
            + _create_command(
                principal.subject, principal.scopes, (*principal.environments, environment)
            ),
        )


def ip_allowed(address: str, allowlist: Sequence[str]) -> bool:
    """Whether ``address`` is in one of the networks or addresses of ``allowlist``.

    An empty allowlist allows everything; an unparseable address is never allowed. An
    IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, what a dual-stack socket reports) is compared
    as the IPv4 address it carries. A malformed allowlist entry raises ``ValueError``: a typo in
    the configuration must be loud, not silently narrow or widen the list.
    """
    if not allowlist:
        return True
    networks = [ipaddress.ip_network(entry.strip(), strict=False) for entry in allowlist]
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in networks
    )


def check_production_write(principal: Principal, address: str, allowlist: Sequence[str]) -> None:
    """Raise :class:`Forbidden` when a production write comes from outside ``allowlist``."""
    if ip_allowed(address, allowlist):
        return
    try:
        shown = str(ipaddress.ip_address(address.strip()))
    except ValueError:
        shown = "an unparseable client address"
    raise Forbidden(
        f"{principal.subject} may not write to production from {shown}",
        remediation="run the same odooops command again from a host inside the production "
        "allowlist (VPN or bastion), or ask an admin to add your address to it",
    )


def peek(token: str) -> dict[str, str]:
    """The ``jti``, ``sub`` and ``exp`` of a token, *unverified*: what a revocation needs.

    Revoking a token does not require trusting it (a forged or foreign token's jti is just
    added to the list), so no key is needed; nothing read here grants anything.
    """
    if len(token) > _MAX_TOKEN_CHARS:
        raise InvalidTokenRequest(
            f"the token is longer than {_MAX_TOKEN_CHARS} characters",
            remediation="odooops token revoke JTI --reason TEXT --data-dir DIR "
            "(JTI: the token's id)",
        )
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise InvalidTokenRequest(
            "the token to revoke is malformed",
            remediation="odooops token revoke JTI --reason TEXT",
        ) from None
    token_id = claims.get("jti")
    if not isinstance(token_id, str) or not TOKEN_ID.fullmatch(token_id):
        raise InvalidTokenRequest(
            "the token to revoke carries no usable jti",
            remediation="odooops token revoke JTI --reason TEXT",
        )
    subject = claims.get("sub")
    expires = claims.get("exp")
    out = {"jti": token_id, "subject": subject if isinstance(subject, str) else ""}
    if isinstance(expires, int) and not isinstance(expires, bool):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            out["expires_at"] = datetime.fromtimestamp(expires, UTC).isoformat()
    return out


def check_token_id(token_id: str) -> None:
    """Refuse a jti that could not be one of a token this API accepts."""
    if not TOKEN_ID.fullmatch(token_id):
        raise InvalidTokenRequest(
            "a token id (jti) is 1 to 128 letters, digits or _:=+/-",
            remediation="odooops token revoke JTI --reason TEXT --data-dir DIR (the jti printed by "
            "odooops token create -o json)",
        )


def _safe_subject(subject: str) -> bool:
    return (
        bool(subject)
        and not any(c.isspace() for c in subject)
        and not (_UNSAFE_IDENTITY.search(subject))
    )


def _check_scope(scope: str) -> None:
    """Unknown scopes are a programming error (a typo in a route), not a denial."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")


def _ordered(scopes: Iterable[str]) -> list[str]:
    held = set(scopes)
    return [scope for scope in SCOPES if scope in held]


def _create_command(subject: str, scopes: Iterable[str], environments: Sequence[str]) -> str:
    """The exact ``odooops token create`` line that would grant what is asked."""
    parts = ["odooops", "token", "create", "--subject", shlex.quote(subject)]
    for scope in _ordered(scopes):
        parts += ["--scope", scope]
    for glob in dict.fromkeys(environments):
        parts += ["--env", shlex.quote(glob)]
    return " ".join(parts)


def _hours(delta: timedelta) -> int:
    return int(delta.total_seconds() // 3600)


def _malformed(detail: str) -> Unauthenticated:
    return Unauthenticated(f"the token is malformed: {detail}", remediation=_NEW_TOKEN)


def _timestamp(claims: Mapping[str, Any], claim: str) -> float:
    value = claims[claim]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"{claim} is not a number")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise _malformed(f"{claim} is not a finite number")
    return seconds


def _text(claims: Mapping[str, Any], claim: str, default: str) -> str:
    value = claims.get(claim, default)
    if not isinstance(value, str) or not value:
        raise _malformed(f"{claim} is not a non-empty string")
    return value


def _principal(claims: Mapping[str, Any]) -> Principal:
    """Build the principal from verified claims, refusing claims of the wrong shape."""
    subject = _text(claims, "sub", "")
    if not _safe_subject(subject):
        raise _malformed("sub holds spaces, control characters or angle brackets")
    for claim in ("name", "email"):
        if _UNSAFE_IDENTITY.search(_text(claims, claim, subject)):
            raise _malformed(f"{claim} holds control characters or angle brackets")
    token_id = _text(claims, "jti", "")
    if not TOKEN_ID.fullmatch(token_id):
        raise _malformed("jti is not 1 to 128 letters, digits or _:=+/-")
    scope_claim = claims.get("scope", "")
    if not isinstance(scope_claim, str):
        raise _malformed("scope is not a space-separated string")
    envs = claims.get("envs", [])
    if not isinstance(envs, list) or not all(isinstance(g, str) and g for g in envs):
        raise _malformed("envs is not a list of globs")
    try:
        expires_at = datetime.fromtimestamp(_timestamp(claims, "exp"), UTC)
    except (OverflowError, OSError, ValueError):
        raise _malformed("exp is out of range") from None
    return Principal(
        subject=subject,
        name=_text(claims, "name", subject),
        email=_text(claims, "email", f"{subject}@odooops.invalid"),
        # Scopes a newer daemon may know are dropped, not kept as opaque strings.
        scopes=frozenset(s for s in scope_claim.split() if s in SCOPES),
        environments=tuple(envs),
        token_id=token_id,
        expires_at=expires_at,
    )


def _load_public_key(algorithm: str, pem: bytes) -> _PublicKey:
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise AuthMisconfigured(
            f"the {algorithm} public key is not a PEM public key",
            remediation="configure the PEM output of: openssl pkey -in PRIVATE-KEY.pem -pubout",
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _unsuitable(algorithm, "public")
    _check_key_fits(algorithm, key, "public")
    return key


def _load_private_key(algorithm: str, pem: bytes) -> _PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise AuthMisconfigured(
            f"the {algorithm} private key is not an unencrypted PEM private key",
            remediation="configure the PEM output of: openssl pkey -in PRIVATE-KEY.pem",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise _unsuitable(algorithm, "private")
    _check_key_fits(algorithm, key, "private")
    return key


def _check_key_fits(algorithm: str, key: _PublicKey | _PrivateKey, kind: str) -> None:
    """RS256 wants RSA of 2048 bits or more, ES256 wants EC on P-256; anything else is refused."""
    if algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise AuthMisconfigured(
                f"the RS256 {kind} key has {key.key_size} bits; at least {_MIN_RSA_BITS} needed",
                remediation=f"generate a new key pair: {_KEYGEN['RS256']}",
            )
        return
    if (
        algorithm == "ES256"
        and isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, ec.SECP256R1)
    ):
        return
    raise _unsuitable(algorithm, kind)


def _unsuitable(algorithm: str, kind: str) -> AuthMisconfigured:
    return AuthMisconfigured(
        f"the {kind} key does not suit {algorithm}",
        remediation=f"generate a key pair for {algorithm}: {_KEYGEN[algorithm]}",
    )


def _public_numbers(key: _PublicKey) -> object:
    return key.public_numbers()
