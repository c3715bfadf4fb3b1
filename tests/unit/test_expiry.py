"""Expiry of file-declared environments, with a fake clock: lifetimes, the sweeper's verdict,
extensions and their bound, the status condition, and the validation of ``expires``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from reconciler.core import durations, expiry
from reconciler.core.config import load_state
from reconciler.core.model import EnvironmentSpec, EnvKey, StateConfig
from reconciler.engine.status import EnvironmentStatus
from reconciler.gitops import changes
from tests.unit.test_validation import POLICIES, only, problems_of, state

NOW = datetime(2026, 12, 5, 21, 30, tzinfo=UTC)
LATER = "2026-12-19T10:00:00Z"
EARLIER = "2026-12-01T08:00:00Z"


def config(files: dict[str, str | None] | None = None) -> StateConfig:
    return load_state(state(files), "c0ffee")


def spec_of(cfg: StateConfig, name: str) -> EnvironmentSpec:
    key = EnvKey(*name.split("/"))
    return next(s for s in cfg.environments if s.key == key)


@pytest.mark.parametrize(
    ("files", "name", "ttl"),
    [
        # ephemeral: the built-in 7 days (the sample platform overrides dev only)
        ({"environments/acme/qa.yaml": "branch: feature/qa\n"}, "acme/qa", timedelta(days=7)),
        # dev: the platform's tiers.dev.ttl null makes it permanent...
        ({"environments/acme/d2.yaml": "branch: d2\ntier: dev\n"}, "acme/d2", None),
        # ...and the environment's own overrides beat the platform
        ({}, "acme/dev", timedelta(hours=36)),
        ({}, "acme/staging", None),
        ({}, "acme/prod", None),
        # protected is permanent whatever its tier's ttl
        (
            {"environments/acme/qa.yaml": "branch: feature/qa\nprotected: true\n"},
            "acme/qa",
            None,
        ),
        # a preview lives as the previews policy says
        (
            {
                "policies.yaml": POLICIES + "previews: {bases: [main], ttl: 2d}\n",
                "environments/acme/pr-7.yaml": "branch: feature/x\n"
                "preview: {forge: github, number: 7, head: feature/x}\n",
            },
            "acme/pr-7",
            timedelta(days=2),
        ),
    ],
)
def test_lifetime_per_tier_overrides_protection_and_preview(
    files: dict[str, str | None], name: str, ttl: timedelta | None
) -> None:
    cfg = config(files)
    assert expiry.lifetime(spec_of(cfg, name), cfg) == ttl


def test_the_platform_tier_ttl_beats_the_built_in_default() -> None:
    platform = state()["odooops.yaml"].decode().replace("  staging: {workers: 2}", "  ephemeral:")
    platform = platform.replace("  ephemeral:\n", "  ephemeral: {ttl: 2d}\n")
    cfg = config({"odooops.yaml": platform, "environments/acme/qa.yaml": "branch: feature/qa\n"})
    assert expiry.lifetime(spec_of(cfg, "acme/qa"), cfg) == timedelta(days=2)


@pytest.mark.parametrize(
    ("doc", "expires"),
    [
        ({"branch": "feature/qa"}, NOW + timedelta(days=7)),
        (
            {"branch": "qa", "tier": "ephemeral", "overrides": {"ttl": "3h"}},
            NOW + timedelta(hours=3),
        ),
        ({"branch": "qa", "tier": "production"}, None),
        ({"branch": "qa", "tier": "staging"}, None),
        ({"branch": "qa", "tier": "dev"}, None),  # the sample platform: dev ttl null
        ({"branch": "qa", "tier": "nonsense"}, None),  # validation refuses it, in its words
    ],
)
def test_a_new_file_expires_now_plus_its_lifetime_unless_permanent(
    doc: dict[str, object], expires: datetime | None
) -> None:
    at = NOW.replace(microsecond=123)
    assert expiry.for_new_file(EnvKey("acme", "qa"), doc, config(), at) == expires


def test_the_sweeper_removes_what_is_past_and_stamps_what_has_no_expiry() -> None:
    cfg = config(
        {
            "environments/acme/old.yaml": f"branch: feature/old\nexpires: '{EARLIER}'\n",
            "environments/acme/now.yaml": "branch: feature/now\nexpires: '2026-12-05T21:30:00Z'\n",
            "environments/acme/new.yaml": f"branch: feature/new\nexpires: '{LATER}'\n",
            "environments/acme/bare.yaml": "branch: feature/bare\n",
            # an explicit expiry on a tier without ttl is honoured
            "environments/acme/tmp.yaml": f"branch: release/tmp\nexpires: '{EARLIER}'\n",
        }
    )
    due = expiry.sweep(cfg, NOW)
    assert due.remove == {
        EnvKey("acme", "now"): NOW,
        EnvKey("acme", "old"): durations.parse_instant(EARLIER),
        EnvKey("acme", "tmp"): durations.parse_instant(EARLIER),
    }
    # acme/dev (36h overrides) and acme/bare (ephemeral) are stamped; staging and prod,
    # permanent, are not; nothing stamped is removed on the same run
    assert due.stamp == {
        EnvKey("acme", "bare"): NOW + timedelta(days=7),
        EnvKey("acme", "dev"): NOW + timedelta(hours=36),
    }
    assert not set(due.remove) & set(due.stamp)


def test_a_state_without_anything_due_gives_an_empty_sweep() -> None:
    platform = state()["odooops.yaml"].decode().replace("    ttl: null\n", "")
    cfg = config({"odooops.yaml": platform, "environments/acme/dev.yaml": None})
    assert not expiry.sweep(cfg, NOW)


@pytest.mark.parametrize(
    ("current", "by", "expires"),
    [
        (LATER, "3d", "2026-12-22T10:00:00Z"),  # from the current expiry
        (EARLIER, "3d", "2026-12-08T21:30:00Z"),  # past: from now, never from the past
        (None, "36h", "2026-12-07T09:30:00Z"),  # not stamped yet: from now
        (None, "90d", "2027-03-05T21:30:00Z"),  # exactly the bound
    ],
)
def test_an_extension_adds_to_the_later_of_the_expiry_and_now(
    current: str | None, by: str, expires: str
) -> None:
    at = None if current is None else durations.parse_instant(current)
    new = expiry.extended(at, expiry.parse_extension(by), NOW, EnvKey("acme", "qa"))
    assert durations.format_instant(new) == expires


def test_an_extension_past_the_bound_is_refused_saying_how_much_fits() -> None:
    with pytest.raises(expiry.TtlTooLong) as caught:
        expiry.extended(durations.parse_instant(LATER), timedelta(days=80), NOW, EnvKey("a", "q"))
    assert caught.value.code == "ttl_too_long"
    assert "more than 90 days from now" in caught.value.message
    assert "odooops env extend a/q --ttl 76d" in caught.value.remediation


@pytest.mark.parametrize(
    ("files", "name", "refused"),
    [
        ({}, "acme/prod", True),  # protected
        ({}, "acme/staging", True),  # a tier without ttl, no expiry
        (
            {"environments/acme/s2.yaml": f"branch: release/2\nexpires: '{LATER}'\n"},
            "acme/s2",
            False,
        ),
        ({}, "acme/dev", False),  # not stamped yet, but its overrides give a ttl
        ({"environments/acme/qa.yaml": "branch: feature/qa\n"}, "acme/qa", False),
    ],
)
def test_only_an_environment_that_expires_can_be_extended(
    files: dict[str, str | None], name: str, refused: bool
) -> None:
    cfg = config(files)
    if refused:
        with pytest.raises(expiry.NotExpiring) as caught:
            expiry.check_extensible(spec_of(cfg, name), cfg)
        assert caught.value.code == "not_expiring"
        assert name in caught.value.message
    else:
        expiry.check_extensible(spec_of(cfg, name), cfg)


def test_the_extend_operation_computes_from_the_file_it_lands_on() -> None:
    """Two extensions that race add up: each reads the expiry of the head it applies to."""
    files = {"environments/acme/qa.yaml": f"branch: feature/qa\nexpires: '{LATER}'\n".encode()}
    op = changes.Operation(
        "extend", EnvKey("acme", "qa"), {"by": "3d", "now": durations.format_instant(NOW)}
    )
    once = op.apply(files)
    twice = op.apply({k: v for k, v in once.items() if v is not None})
    doc = yaml.safe_load(twice["environments/acme/qa.yaml"] or b"")
    assert doc == {"branch": "feature/qa", "expires": "2026-12-25T10:00:00Z"}
    assert op.message("r1", "cli").startswith("chore(ttl): extend acme/qa by 3d\n")


def test_the_expiring_condition_turns_true_a_day_ahead_and_names_the_command() -> None:
    expires = NOW + timedelta(hours=30)
    assert expiry.expiring("acme/qa", expires, NOW)[:2] == (False, "ExpiresLater")
    status, reason, message = expiry.expiring("acme/qa", expires, NOW + timedelta(hours=7))
    assert (status, reason) == (True, "ExpiresSoon")
    assert "in 23h" in message and "odooops env extend acme/qa --ttl 3d" in message
    status, reason, message = expiry.expiring("acme/qa", expires, expires)
    assert (status, reason) == (True, "Expired")
    assert "odooops env extend acme/qa --ttl 3d" in message


def test_a_status_carries_the_expiry_and_loses_it_when_permanent() -> None:
    status = EnvironmentStatus("acme", "qa").with_expiry("acme/qa", NOW + timedelta(hours=2), NOW)
    assert status.to_dict()["expires"] == "2026-12-05T23:30:00Z"
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("Expiring", True, "ExpiresSoon")
    ]
    assert EnvironmentStatus.from_dict(status.to_dict()) == status
    permanent = status.with_expiry("acme/qa", None, NOW)
    assert permanent.to_dict()["expires"] is None and permanent.conditions == ()


@pytest.mark.parametrize(
    ("expires", "shown"),
    [
        (None, "-"),
        (NOW - timedelta(seconds=1), "expired"),
        (NOW, "expired"),
        (NOW + timedelta(days=2, hours=3, minutes=4), "expires in 2d 3h"),
        (NOW + timedelta(hours=5, seconds=9), "expires in 5h"),
        (NOW + timedelta(minutes=40), "expires in 40m"),
        (NOW + timedelta(seconds=30), "expires in 30s"),
    ],
)
def test_the_table_shows_how_long_is_left(expires: datetime | None, shown: str) -> None:
    assert expiry.describe(expires, NOW) == shown


def test_expires_on_a_protected_environment_is_refused_where_it_is() -> None:
    prod = state()["environments/acme/prod.yaml"].decode()
    problem = only(
        problems_of({"environments/acme/prod.yaml": prod + f"expires: '{LATER}'\n"}),
        "expires_on_protected",
    )
    assert (problem.location.file, problem.location.line) == ("environments/acme/prod.yaml", 12)
    assert "remove expires" in problem.remediation
    # protected by its tier alone (beta/b tracks main: production)
    assert only(
        problems_of({"environments/beta/b.yaml": f"branch: main\nexpires: '{LATER}'\n"}),
        "expires_on_protected",
    )
    # a staging environment may carry one: it is not protected
    assert not problems_of(
        {"environments/acme/staging.yaml": f"branch: release/1.0\nexpires: '{LATER}'\n"}
    )
