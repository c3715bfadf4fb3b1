"""The token revocation list and audit log in a data directory (a temporary one; no services)."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.api.auth import AuthConfig, InvalidTokenRequest, TokenAuthority, TokenRevoked
from reconciler.api.revocations import (
    AUDIT_FILE,
    REVOKED_FILE,
    RevocationList,
    RevocationsUnreadable,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def audit(data_dir: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (data_dir / AUDIT_FILE).read_text().splitlines()]


def test_a_revocation_is_kept_in_a_private_file_and_audited(tmp_path: Path) -> None:
    revocations = RevocationList(tmp_path, clock=lambda: T0)
    entry = revocations.revoke("abc123", by="cli:root", reason="laptop lost", subject="ann")
    assert entry == {
        "jti": "abc123",
        "at": T0.isoformat(timespec="seconds"),
        "by": "cli:root",
        "reason": "laptop lost",
        "subject": "ann",
        "expires_at": "",
    }
    assert revocations.is_revoked("abc123") and not revocations.is_revoked("abc124")
    for name in (REVOKED_FILE, AUDIT_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    [event] = audit(tmp_path)
    assert (event["event"], event["jti"], event["by"], event["reason"], event["time"]) == (
        "revoked",
        "abc123",
        "cli:root",
        "laptop lost",
        T0.isoformat(timespec="seconds"),
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{REVOKED_FILE}.")] == [
        f".{REVOKED_FILE}.lock"
    ]  # no temporary file left behind


def test_a_running_daemon_sees_a_revocation_made_by_another_process(tmp_path: Path) -> None:
    """The daemon's list re-reads the file when it changes; the CLI writes it."""
    daemon = RevocationList(tmp_path)
    authority = TokenAuthority(AuthConfig(secret=b"s" * 32), revocations=daemon)
    token = authority.mint("ann", ["env:read"])
    assert authority.verify(token).subject == "ann"  # the list was read, empty
    RevocationList(tmp_path).revoke(authority.verify(token).token_id, by="cli:x", reason="r")
    with pytest.raises(TokenRevoked):
        authority.verify(token)


def test_concurrent_revocations_all_stay(tmp_path: Path) -> None:
    def revoke(i: int) -> None:
        RevocationList(tmp_path).revoke(f"jti-{i}", by="x", reason="r")

    threads = [threading.Thread(target=revoke, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(RevocationList(tmp_path).entries()) == {f"jti-{i}" for i in range(8)}
    assert len(audit(tmp_path)) == 8


def test_revoking_twice_keeps_the_first_record_and_audits_both(tmp_path: Path) -> None:
    first = RevocationList(tmp_path).revoke("abc", by="ann", reason="first")
    again = RevocationList(tmp_path).revoke("abc", by="bob", reason="second")
    assert again == first
    assert [e["by"] for e in audit(tmp_path)] == ["ann", "bob"]


@pytest.mark.parametrize(
    ("jti", "reason"),
    [("a b", "r"), ("x" * 129, "r"), ("a\nb", "r"), ("abc", ""), ("abc", "r" * 501)],
)
def test_a_bad_revocation_is_refused_and_writes_nothing(
    tmp_path: Path, jti: str, reason: str
) -> None:
    with pytest.raises(InvalidTokenRequest) as info:
        RevocationList(tmp_path).revoke(jti, by="x", reason=reason)
    assert info.value.remediation
    assert not (tmp_path / REVOKED_FILE).exists() and not (tmp_path / AUDIT_FILE).exists()


@pytest.mark.parametrize("content", ["{", "[]", '{"revoked": {"a": 1}}', '{"revoked": []}'])
def test_an_unreadable_list_refuses_every_token(tmp_path: Path, content: str) -> None:
    """Fail closed: a damaged list must not bring revoked tokens back."""
    (tmp_path / REVOKED_FILE).write_text(content)
    authority = TokenAuthority(AuthConfig(secret=b"s" * 32), revocations=RevocationList(tmp_path))
    with pytest.raises(RevocationsUnreadable) as info:
        authority.verify(authority.mint("ann", ["env:read"]))
    assert info.value.code == "revocations_unreadable"
    assert str(tmp_path / REVOKED_FILE) in info.value.remediation


def test_entries_of_long_expired_tokens_are_pruned_on_the_next_revocation(
    tmp_path: Path,
) -> None:
    now = [T0]
    revocations = RevocationList(tmp_path, clock=lambda: now[0])
    revocations.revoke("old", by="x", reason="r", expires_at=(T0 + timedelta(hours=1)).isoformat())
    revocations.revoke("forever", by="x", reason="r")
    now[0] = T0 + timedelta(days=2)
    revocations.revoke("new", by="x", reason="r")
    assert set(revocations.entries()) == {"forever", "new"}
    assert [e["jti"] for e in audit(tmp_path)] == ["old", "forever", "new"]  # the log keeps all


def test_no_file_means_nothing_revoked(tmp_path: Path) -> None:
    assert not RevocationList(tmp_path / "absent").is_revoked("abc")
    assert not os.path.exists(tmp_path / "absent")
