"""API tokens: minting, verification, scopes, environment globs and the production IP allowlist.

Pure: a fake clock, keys generated here, tokens forged by hand where an attacker would. Every
refusal is also checked not to quote the token, the Authorization header or the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from reconciler.api.auth import (
    SCOPES,
    AuthConfig,
    AuthMisconfigured,
    Forbidden,
    InvalidTokenRequest,
    Principal,
    TokenAuthority,
    TokenExpired,
    TokenLifetimeExceeded,
    TokenRevoked,
    Unauthenticated,
    authorize,
    check_production_write,
    ip_allowed,
    peek,
)
from reconciler.core.errors import OdooOpsError

SECRET = b"correct-horse-battery-staple-0123456789"
OTHER_SECRET = b"another-secret-of-sufficient-length-000"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEEWAY = timedelta(seconds=30)

# What a token holding the key scope may do, implications included.
GRANTS: dict[str, frozenset[str]] = {
    "env:read": frozenset({"env:read"}),
    "env:write": frozenset({"env:write", "env:read"}),
    "deploy": frozenset({"deploy", "env:read"}),
    "db:backup": frozenset({"db:backup"}),
    "db:restore": frozenset({"db:restore"}),
    "shell": frozenset({"shell"}),
    "admin": frozenset(SCOPES),
}


class FakeClock:
    """A settable clock for the authority."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def hs256(clock: FakeClock | None = None, secret: bytes = SECRET) -> TokenAuthority:
    return TokenAuthority(AuthConfig(secret=secret), clock or FakeClock())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims(drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """Valid claims at T0 (one hour of validity), changed or with claims dropped."""
    now = int(T0.timestamp())
    base: dict[str, Any] = {
        "iss": "odooops",
        "aud": "odooops-api",
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "0" * 32,
        "scope": "deploy",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if k not in drop}


def forge(payload: dict[str, Any], *, alg: str = "HS256", key: bytes = SECRET) -> str:
    """A token built by hand: HMAC-signed with ``key`` for HS256, unsigned for anything else."""
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signing_input = f"{header}.{body}"
    signature = b""
    if alg == "HS256":
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def flip(segment: str) -> str:
    """Change one character in the middle (the last one may only hold padding bits)."""
    i = len(segment) // 2
    return segment[:i] + ("A" if segment[i] != "A" else "B") + segment[i + 1 :]


def tamper(token: str, part: int) -> str:
    parts = token.split(".")
    parts[part] = flip(parts[part])
    return ".".join(parts)


def refused(
    action: Callable[[], object], error: type[OdooOpsError], *secrets: str | bytes | None
) -> OdooOpsError:
    """Run ``action``, expect ``error``, and check it quotes none of ``secrets``."""
    with pytest.raises(error) as info:
        action()
    exc = info.value
    shown = exc.render() + json.dumps(exc.to_dict()) + str(exc) + repr(exc)
    for secret in (SECRET, OTHER_SECRET, *secrets):
        if not secret:
            continue
        text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
        for piece in (text, *text.split(".")):
            # Shorter pieces ("x", "a") occur in any sentence.
            assert len(piece) < 8 or piece not in shown, f"{error.__name__} quotes a secret"
    assert exc.remediation
    return exc


def pem_pair(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    return pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys() -> tuple[bytes, bytes]:
    return pem_pair(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def keys(
    request: pytest.FixtureRequest, rsa_keys: tuple[bytes, bytes], ec_keys: tuple[bytes, bytes]
) -> Iterator[tuple[str, bytes, bytes]]:
    algorithm: str = request.param
    yield (algorithm, *(rsa_keys if algorithm == "RS256" else ec_keys))


# --------------------------------------------------------------------------- scopes


@pytest.mark.parametrize("required", SCOPES)
@pytest.mark.parametrize("held", SCOPES)
def test_each_scope_grants_exactly_itself_and_what_it_implies(held: str, required: str) -> None:
    authority = hs256()
    principal = authority.verify(authority.mint("alice", [held]))
    assert principal.has(required) == (required in GRANTS[held])
    if required in GRANTS[held]:
        authorize(principal, required)
    else:
        exc = refused(lambda: authorize(principal, required), Forbidden)
        assert exc.code == "forbidden"
        assert required in exc.message
        assert "odooops token create --subject alice" in exc.remediation
        assert f"--scope {held}" in exc.remediation
        assert f"--scope {required}" in exc.remediation


@pytest.mark.parametrize("case", ["valid", "missing", "expired", "tampered", "under-scoped"])
@pytest.mark.parametrize("scope", SCOPES)
def test_every_scope_refuses_missing_expired_tampered_and_underscoped_tokens(
    scope: str, case: str
) -> None:
    """What every route guard (authenticate the header, then authorise its scope) returns."""
    clock = FakeClock()
    authority = hs256(clock)
    weaker = [s for s in SCOPES if scope not in GRANTS[s]]
    token = authority.mint("alice", weaker if case == "under-scoped" else [scope])
    header: str | None = f"Bearer {token}"
    if case == "missing":
        header = None
    elif case == "tampered":
        header = f"Bearer {tamper(token, 1)}"
    elif case == "expired":
        clock.advance(timedelta(hours=12) + LEEWAY)

    def guard() -> None:
        authorize(authority.authenticate_header(header), scope)

    if case == "valid":
        guard()
        return
    expected = {
        "missing": Unauthenticated,
        "expired": TokenExpired,
        "tampered": Unauthenticated,
        "under-scoped": Forbidden,
    }[case]
    exc = refused(guard, expected, token, header)
    assert (
        exc.code
        == {
            "missing": "unauthenticated",
            "expired": "token_expired",
            "tampered": "unauthenticated",
            "under-scoped": "forbidden",
        }[case]
    )


def test_asking_for_an_unknown_scope_is_a_programming_error() -> None:
    principal = hs256().verify(hs256().mint("alice", ["admin"]))
    with pytest.raises(ValueError, match="env:read"):
        principal.has("env:admin")


def test_unknown_scopes_in_a_genuine_token_are_dropped() -> None:
    principal = hs256().verify(forge(claims(scope="deploy cluster:nuke")))
    assert principal.scopes == frozenset({"deploy"})


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6aHVudGVyMg==",
        "Token abcdefghijklmnop",
        "Bearer two words",
    ],
)
def test_a_header_that_is_not_bearer_token_is_unauthenticated(header: str | None) -> None:
    credentials = (header or "").strip().partition(" ")[2]
    exc = refused(lambda: hs256().authenticate_header(header), Unauthenticated, credentials)
    assert exc.code == "unauthenticated"
    assert "odooops login --token" in exc.remediation
    assert "odooops token create" in exc.remediation


def test_the_bearer_scheme_is_case_insensitive() -> None:
    authority = hs256()
    token = authority.mint("alice", ["env:read"])
    assert authority.authenticate_header(f"bearer  {token} ").subject == "alice"


@pytest.mark.parametrize(
    "token",
    ["x", "a.b.c", "..", "e30.e30.", "eyJ.eyJ.eyJ", "é.é.é", "a" * 9000],
    ids=["word", "abc", "dots", "empty-json", "truncated", "non-ascii", "huge"],
)
def test_garbage_tokens_are_unauthenticated(token: str) -> None:
    refused(lambda: hs256().verify(token), Unauthenticated, token)


# --------------------------------------------------------------------------- forgery


def test_the_hand_forged_baseline_is_accepted() -> None:
    """So each refusal below is due to its one difference."""
    assert hs256().verify(forge(claims())).subject == "alice"


def _escalated(token: str) -> str:
    """The same header and signature over a payload granting admin."""
    header, payload, signature = token.split(".")
    claims_ = json.loads(unb64(payload))
    claims_["scope"] = "admin"
    return f"{header}.{b64(json.dumps(claims_).encode())}.{signature}"


@pytest.mark.parametrize(
    ("forgery", "says"),
    [
        (lambda t: tamper(t, 1), ""),
        (_escalated, "signature"),
        (lambda t: tamper(t, 2), "signature"),
        (lambda t: t.rsplit(".", 1)[0] + ".", "signature"),
        (lambda t: forge(claims(), key=OTHER_SECRET), "signature"),
        (lambda t: forge(claims(scope="admin"), alg="none"), "HS256"),
        (lambda t: forge(claims(scope="admin"), alg="None"), "HS256"),
        (lambda t: forge(claims(), alg="HS512"), "HS256"),
    ],
    ids=[
        "payload-char-flipped",
        "payload-escalated",
        "signature-char-flipped",
        "signature-stripped",
        "other-secret",
        "alg-none",
        "alg-None",
        "alg-HS512",
    ],
)
def test_tampered_or_foreign_tokens_are_unauthenticated(
    forgery: Callable[[str], str], says: str
) -> None:
    authority = hs256()
    token = forgery(authority.mint("alice", ["env:read"]))
    exc = refused(lambda: authority.verify(token), Unauthenticated, token)
    assert says in exc.message


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (claims(iss="evil"), "issued"),
        (claims(aud="other-api"), "meant"),
        (claims(aud=["odooops-api", "other-api"]), "meant"),
        *((claims(drop=(c,)), repr(c)) for c in ("exp", "iat", "sub", "iss", "aud", "jti")),
        (claims(sub=""), "sub"),
        (claims(sub=7), "malformed"),
        (claims(exp="tomorrow"), "exp"),
        (claims(exp=True), "exp"),
        (claims(exp=float("inf")), "exp"),
        (claims(exp=10**20), "exp"),
        (claims(iat="now"), "iat"),
        (claims(scope=["deploy"]), "scope"),
        (claims(envs="acme/*"), "envs"),
        (claims(envs=["acme/*", ""]), "envs"),
        (claims(name=3), "name"),
        (claims(jti=""), "jti"),
    ],
    ids=lambda v: None if isinstance(v, dict) else str(v),
)
def test_signed_tokens_with_wrong_or_missing_claims_are_unauthenticated(
    payload: dict[str, Any], says: str
) -> None:
    token = forge(payload)
    exc = refused(lambda: hs256().verify(token), Unauthenticated, token)
    assert says in exc.message


@pytest.mark.parametrize("keys", ["RS256", "ES256"], indirect=True)
def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    keys: tuple[str, bytes, bytes],
) -> None:
    """Algorithm confusion: the public key is public, so an HMAC under it proves nothing."""
    algorithm, _, public_pem = keys
    authority = TokenAuthority(AuthConfig(algorithm=algorithm, public_key=public_pem), FakeClock())
    for token in (forge(claims(scope="admin"), key=public_pem), forge(claims(scope="admin"))):
        exc = refused(lambda: authority.verify(token), Unauthenticated, token)  # noqa: B023
        assert algorithm in exc.message


# --------------------------------------------------------------------------- time


def test_a_token_is_valid_until_exp_plus_leeway_then_expired() -> None:
    clock = FakeClock()
    authority = hs256(clock)
    token = authority.mint("alice", ["deploy", "db:backup"], environments=["acme/*"])
    clock.advance(timedelta(hours=12) + LEEWAY - timedelta(seconds=1))
    assert authority.verify(token).subject == "alice"
    clock.advance(timedelta(seconds=1))
    exc = refused(lambda: authority.verify(token), TokenExpired, token)
    assert exc.code == "token_expired"
    assert (
        "odooops token create --subject alice --scope deploy --scope db:backup --env 'acme/*'"
        in exc.remediation
    )
    assert "odooops login --token TOKEN" in exc.remediation


def test_a_forged_expired_token_is_unauthenticated_not_expired() -> None:
    """Expiry is only reported about tokens whose signature verified."""
    clock = FakeClock()
    authority = hs256(clock)
    token = tamper(authority.mint("alice", ["deploy"]), 2)
    clock.advance(timedelta(days=1))
    refused(lambda: authority.verify(token), Unauthenticated, token)


@pytest.mark.parametrize(
    "payload",
    [
        claims(nbf=int(T0.timestamp()) + 3600),
        claims(drop=("nbf",), iat=int(T0.timestamp()) + 3600),
    ],
    ids=["nbf-ahead", "iat-ahead"],
)
def test_a_token_from_the_future_is_unauthenticated(payload: dict[str, Any]) -> None:
    token = forge(payload)
    exc = refused(lambda: hs256().verify(token), Unauthenticated, token)
    assert "NTP" in exc.remediation


def test_a_token_minted_on_a_clock_within_leeway_ahead_is_accepted() -> None:
    token = hs256(FakeClock(T0 + LEEWAY)).mint("alice", ["env:read"])
    assert hs256(FakeClock(T0)).verify(token).subject == "alice"


def test_the_default_lifetime_is_twelve_hours() -> None:
    authority = hs256()
    assert authority.verify(authority.mint("alice", ["env:read"])).expires_at == T0 + timedelta(
        hours=12
    )


def test_a_naive_clock_is_refused() -> None:
    authority = hs256(FakeClock(datetime(2030, 1, 1)))
    with pytest.raises(ValueError, match="aware"):
        authority.mint("alice", ["env:read"])


# --------------------------------------------------------------------------- revocation


class MemoryRevocations:
    """The revocation list in memory (the file-backed one is tested in test_revocations)."""

    def __init__(self) -> None:
        self.revoked: dict[str, dict[str, str]] = {}
        self.events: list[dict[str, str]] = []

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self.revoked

    def revoke(
        self, token_id: str, *, by: str, reason: str, subject: str = "", expires_at: str = ""
    ) -> dict[str, str]:
        self.revoked[token_id] = {"by": by, "reason": reason}
        return {"jti": token_id, **self.revoked[token_id]}

    def record(self, event: Any) -> None:
        self.events.append(dict(event))


def test_a_revoked_token_is_refused_naming_the_rule_and_others_still_pass() -> None:
    revocations = MemoryRevocations()
    authority = TokenAuthority(AuthConfig(secret=SECRET), FakeClock(), revocations)
    token, other = authority.mint("alice", ["deploy"]), authority.mint("alice", ["deploy"])
    revocations.revoke(authority.verify(token).token_id, by="admin", reason="laptop lost")
    exc = refused(lambda: authority.authenticate_header(f"Bearer {token}"), TokenRevoked, token)
    assert exc.code == "token_revoked"
    assert "revoked" in exc.message and "odooops token create --subject alice" in exc.remediation
    assert authority.verify(other).subject == "alice"


def test_a_forged_token_with_a_revoked_jti_is_unauthenticated_not_revoked() -> None:
    """Like expiry, revocation is only reported about tokens whose signature verified."""
    revocations = MemoryRevocations()
    revocations.revoke("0" * 32, by="admin", reason="test")
    authority = TokenAuthority(AuthConfig(secret=SECRET), FakeClock(), revocations)
    token = forge(claims(), key=OTHER_SECRET)
    refused(lambda: authority.verify(token), Unauthenticated, token)


@pytest.mark.parametrize(
    ("lifetime", "accepted"),
    [(timedelta(days=30), True), (timedelta(days=30, seconds=1), False)],
)
def test_a_token_living_longer_than_the_maximum_is_refused(
    lifetime: timedelta, accepted: bool
) -> None:
    """A token minted elsewhere (or before the maximum was lowered) cannot outlive the policy."""
    now = int(T0.timestamp())
    token = forge(claims(exp=now + int(lifetime.total_seconds())))
    authority = hs256()
    if accepted:
        assert authority.verify(token).subject == "alice"
        return
    exc = refused(lambda: authority.verify(token), TokenLifetimeExceeded, token)
    assert exc.code == "token_lifetime_exceeded"
    assert "720 h" in exc.message and "--ttl 12h" in exc.remediation


def test_the_maximum_lifetime_is_configurable_for_presented_tokens() -> None:
    token = hs256().mint("alice", ["env:read"], ttl=timedelta(days=2))
    shorter = TokenAuthority(AuthConfig(secret=SECRET, max_ttl=timedelta(days=1)), FakeClock())
    refused(lambda: shorter.verify(token), TokenLifetimeExceeded, token)


def test_the_default_maximum_lifetime_is_thirty_days() -> None:
    assert AuthConfig(secret=SECRET).max_ttl == timedelta(days=30)


def test_peek_reads_the_jti_of_any_token_without_trusting_it() -> None:
    token = forge(claims(), key=OTHER_SECRET)
    assert peek(token) == {
        "jti": "0" * 32,
        "subject": "alice",
        "expires_at": (T0 + timedelta(hours=1)).isoformat(),
    }


@pytest.mark.parametrize(
    "token",
    ["not-a-token", forge(claims(drop=("jti",))), forge(claims(jti="a b")), "x." * 5000],
    ids=["garbage", "no-jti", "bad-jti", "huge"],
)
def test_peek_refuses_what_carries_no_usable_jti(token: str) -> None:
    refused(lambda: peek(token), InvalidTokenRequest)


# --------------------------------------------------------------------------- minting


def test_the_principal_carries_identity_scopes_globs_and_token_id() -> None:
    authority = hs256()
    token = authority.mint(
        "alice",
        ["deploy", "env:read"],
        environments=["acme/*", "*/staging"],
        ttl=timedelta(hours=1),
        name="Alice Liddell",
        email="alice@example.com",
    )
    assert authority.verify(token) == Principal(
        subject="alice",
        name="Alice Liddell",
        email="alice@example.com",
        scopes=frozenset({"deploy", "env:read"}),
        environments=("acme/*", "*/staging"),
        token_id=json.loads(unb64(token.split(".")[1]))["jti"],
        expires_at=T0 + timedelta(hours=1),
    )


def test_name_and_email_default_to_the_subject() -> None:
    authority = hs256()
    principal = authority.verify(authority.mint("bob", ["env:read"]))
    assert (principal.name, principal.email) == ("bob", "bob@odooops.invalid")
    assert principal.environments == ()


def test_every_token_gets_a_fresh_hex_token_id() -> None:
    authority = hs256()
    ids = {authority.verify(authority.mint("alice", ["env:read"])).token_id for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    "scopes", [["env:read", "cluster:nuke"], ["Admin"], []], ids=["unknown", "case", "none"]
)
def test_minting_refuses_unknown_or_no_scopes_naming_the_allowed_ones(scopes: list[str]) -> None:
    exc = refused(lambda: hs256().mint("alice", scopes), InvalidTokenRequest)
    assert isinstance(exc, ValueError)
    assert all(scope in exc.message for scope in SCOPES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": ""},
        {"subject": "al ice"},
        {"environments": [""]},
        {"name": " "},
        {"email": ""},
        {"subject": "bob\nApproved-By:x"},
        {"subject": "<ann@acme.example>"},
        {"name": "Ann\nApproved-By: x"},
        {"email": "ann@x>\nMerged-As: y"},
    ],
)
def test_minting_refuses_empty_or_spaced_identities(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"subject": "alice", "scopes": ["env:read"], **kwargs}
    refused(lambda: hs256().mint(**arguments), InvalidTokenRequest)


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": "<ann@acme.example>"},
        {"sub": "ann\u0000"},
        {"name": "Ann\nApproved-By: Bob <b@x> (subject bob) at " + "a" * 40},
        {"email": "ann@acme.example>"},
        {"jti": "a b"},
        {"jti": "x" * 129},
    ],
)
def test_signed_identities_that_could_forge_commit_trailers_are_refused(
    changes: dict[str, Any],
) -> None:
    """Subjects, names and emails become commit authors and trailers: one line, no brackets."""
    token = forge(claims(**changes))
    refused(lambda: hs256().verify(token), Unauthenticated, token)


def test_minting_refuses_a_bare_string_for_a_collection() -> None:
    with pytest.raises(TypeError):
        hs256().mint("alice", "env:read")


@pytest.mark.parametrize(
    ("ttl", "accepted"),
    [
        (timedelta(days=30), True),
        (timedelta(days=30, seconds=1), False),
        (timedelta(0), False),
        (timedelta(hours=-1), False),
    ],
)
def test_the_lifetime_must_be_positive_and_at_most_the_maximum(
    ttl: timedelta, accepted: bool
) -> None:
    authority = hs256()
    if accepted:
        assert authority.verify(authority.mint("a", ["env:read"], ttl=ttl)).expires_at == T0 + ttl
    else:
        exc = refused(lambda: authority.mint("a", ["env:read"], ttl=ttl), InvalidTokenRequest)
        assert "--ttl 720h" in exc.remediation


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("secret", [None, b"", b"s" * 31], ids=["none", "empty", "31-bytes"])
def test_a_short_hs256_secret_is_refused_at_construction(secret: bytes | None) -> None:
    exc = refused(lambda: AuthConfig(secret=secret), AuthMisconfigured, secret)
    assert isinstance(exc, ValueError)
    assert "32 bytes" in exc.message
    assert "odooops init-key" in exc.remediation


def test_a_32_byte_secret_is_enough_and_stays_out_of_repr() -> None:
    config = AuthConfig(secret=b"k" * 32)
    assert b"k" * 32 not in repr(config).encode()
    assert "kkkk" not in repr(config)


@pytest.mark.parametrize("algorithm", ["none", "HS512", "rs256"])
def test_unsupported_algorithms_are_refused(algorithm: str) -> None:
    refused(lambda: AuthConfig(algorithm=algorithm, secret=SECRET), AuthMisconfigured)


def test_an_asymmetric_algorithm_needs_a_public_key() -> None:
    refused(lambda: AuthConfig(algorithm="RS256", secret=SECRET), AuthMisconfigured)


def test_a_default_lifetime_above_the_maximum_is_refused() -> None:
    refused(
        lambda: AuthConfig(secret=SECRET, default_ttl=timedelta(days=2), max_ttl=timedelta(days=1)),
        AuthMisconfigured,
    )


@pytest.mark.parametrize("keys", ["RS256", "ES256"], indirect=True)
def test_asymmetric_tokens_round_trip_and_verifiers_need_no_private_key(
    keys: tuple[str, bytes, bytes],
) -> None:
    algorithm, private_pem, public_pem = keys
    signer = TokenAuthority(
        AuthConfig(algorithm=algorithm, public_key=public_pem, private_key=private_pem),
        FakeClock(),
    )
    verifier = TokenAuthority(AuthConfig(algorithm=algorithm, public_key=public_pem), FakeClock())
    token = signer.mint("alice", ["deploy"], environments=["acme/*"])
    assert json.loads(unb64(token.split(".")[0]))["alg"] == algorithm
    principal = verifier.verify(token)
    assert (principal.subject, principal.scopes) == ("alice", frozenset({"deploy"}))
    refused(lambda: verifier.verify(tamper(token, 1)), Unauthenticated, token)
    exc = refused(lambda: verifier.mint("alice", ["deploy"]), AuthMisconfigured)
    assert "private key" in exc.message


def test_a_token_of_one_asymmetric_algorithm_is_refused_by_the_other(
    rsa_keys: tuple[bytes, bytes], ec_keys: tuple[bytes, bytes]
) -> None:
    rs = TokenAuthority(
        AuthConfig(algorithm="RS256", public_key=rsa_keys[1], private_key=rsa_keys[0]), FakeClock()
    )
    es = TokenAuthority(AuthConfig(algorithm="ES256", public_key=ec_keys[1]), FakeClock())
    token = rs.mint("alice", ["admin"])
    refused(lambda: es.verify(token), Unauthenticated, token)


def test_mismatched_private_and_public_keys_are_refused(ec_keys: tuple[bytes, bytes]) -> None:
    other_private, _ = pem_pair(ec.generate_private_key(ec.SECP256R1()))
    config = AuthConfig(algorithm="ES256", public_key=ec_keys[1], private_key=other_private)
    exc = refused(lambda: TokenAuthority(config), AuthMisconfigured)
    assert "does not match" in exc.message


def test_an_unreadable_private_key_is_refused(ec_keys: tuple[bytes, bytes]) -> None:
    config = AuthConfig(algorithm="ES256", public_key=ec_keys[1], private_key=b"-----BEGIN nope")
    refused(lambda: TokenAuthority(config), AuthMisconfigured, b"-----BEGIN nope")


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP384R1())),
        ("ES256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
    ids=["RS256-ec", "RS256-1024", "ES256-p384", "ES256-rsa"],
)
def test_unsuitable_keys_are_refused_at_construction(
    algorithm: str, make_key: Callable[[], rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]
) -> None:
    _, public_pem = pem_pair(make_key())
    for config in (
        AuthConfig(algorithm=algorithm, public_key=public_pem),
        AuthConfig(algorithm=algorithm, public_key=b"not a pem"),
    ):
        refused(lambda: TokenAuthority(config), AuthMisconfigured)  # noqa: B023


# --------------------------------------------------------------------------- environments


@pytest.mark.parametrize(
    ("globs", "environment", "allowed"),
    [
        (("acme/*",), "acme/staging", True),
        (("acme/*",), "shop/staging", False),
        (("acme/*",), "acme", False),
        (("*/staging",), "shop/staging", True),
        (("*/staging",), "shop/production", False),
        (("acme/production", "*/staging"), "acme/production", True),
        ((), "anything/at-all", True),
    ],
)
def test_environment_globs_confine_a_token(
    globs: tuple[str, ...], environment: str, allowed: bool
) -> None:
    authority = hs256()
    principal = authority.verify(authority.mint("alice", ["deploy"], environments=globs))
    assert principal.may_touch(environment) == allowed
    if allowed:
        authorize(principal, "deploy", environment)
    else:
        exc = refused(lambda: authorize(principal, "deploy", environment), Forbidden)
        assert environment in exc.message
        assert f"--env {environment}" in exc.remediation


def test_scope_is_checked_before_the_environment() -> None:
    authority = hs256()
    principal = authority.verify(authority.mint("al", ["env:read"], environments=["acme/*"]))
    exc = refused(lambda: authorize(principal, "shell", "shop/prod"), Forbidden)
    assert "shell" in exc.message


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "allowlist", "allowed"),
    [
        ("203.0.113.9", [], True),
        ("not-an-ip", [], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("11.0.0.1", ["10.0.0.0/8"], False),
        ("192.0.2.7", ["192.0.2.7"], True),
        ("192.0.2.8", ["192.0.2.7"], False),
        ("192.0.2.200", ["192.0.2.1/24"], True),
        ("2001:db8::1", ["2001:db8::/32"], True),
        ("2001:db9::1", ["2001:db8::/32"], False),
        ("2001:db8::1", ["2001:db8::1"], True),
        ("::ffff:10.0.0.1", ["10.0.0.0/8"], True),
        ("10.0.0.1", ["::/0"], False),
        ("::1", ["0.0.0.0/0"], False),
        ("not-an-ip", ["0.0.0.0/0", "::/0"], False),
        ("", ["0.0.0.0/0"], False),
        ("10.0.0.1/8", ["0.0.0.0/0"], False),
    ],
)
def test_ip_allowlist(address: str, allowlist: list[str], allowed: bool) -> None:
    assert ip_allowed(address, allowlist) == allowed


def test_a_malformed_allowlist_entry_is_a_loud_error() -> None:
    with pytest.raises(ValueError):
        ip_allowed("10.0.0.1", ["10.0.0.0/8", "10.0.0.0/33"])


def test_production_writes_from_outside_the_allowlist_are_forbidden() -> None:
    authority = hs256()
    principal = authority.verify(authority.mint("alice", ["deploy"]))
    check_production_write(principal, "10.0.0.7", ["10.0.0.0/8"])
    exc = refused(
        lambda: check_production_write(principal, "203.0.113.9", ["10.0.0.0/8"]), Forbidden
    )
    assert exc.code == "forbidden"
    assert "203.0.113.9" in exc.message
    exc = refused(
        lambda: check_production_write(principal, "<script>", ["10.0.0.0/8"]), Forbidden, "<script>"
    )
    assert "unparseable" in exc.message
