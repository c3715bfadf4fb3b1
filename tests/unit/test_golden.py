"""Golden copies, the pure parts: names, who gets one, which copies use it, when it is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core import golden
from reconciler.core.config import load_state
from reconciler.core.model import (
    Desired,
    EnvKey,
    GoldenPolicy,
    Policies,
    PreviewPolicy,
    Tier,
)
from tests.factories import desired
from tests.unit.test_validation import POLICIES, problems_of, state

ON = Policies(golden=GoldenPolicy("24h"))
PROD = EnvKey("acme", "prod")
AT = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)


def world(*envs: object) -> Desired:
    wants = {w.key: w for w in envs}  # type: ignore[attr-defined]
    return Desired("c" * 40, wants)


def test_a_golden_copy_is_never_named_like_an_environment_database() -> None:
    """Every environment's database has a ``__``; a golden copy's never does."""
    names = golden.GoldenNames.of(PROD, "abcd1234")
    for name in (names.database, names.scratch, names.old):
        assert "__" not in name and len(name) <= 63
        assert name != PROD.database
    assert golden.is_golden(names.database)
    assert not golden.is_golden(PROD.database)
    assert not golden.is_golden(EnvKey("odooops-golden-x", "prod").database)
    assert names.scratch.startswith("odooops_tmp_") and names.old.startswith("odooops_old_")


def test_names_of_projects_and_environments_that_join_alike_stay_apart() -> None:
    """``a-b/c`` and ``a/b-c`` both give ``a_b_c`` once ``-`` is ``_``: the hash keeps them
    apart, and one refresh's scratch names never collide with another's."""
    one, two = EnvKey("a-b", "c"), EnvKey("a", "b-c")
    assert golden.golden_database(one) != golden.golden_database(two)
    first, second = golden.GoldenNames.of(one, "t1"), golden.GoldenNames.of(one, "t2")
    assert first.database == second.database and first.scratch != second.scratch


@pytest.mark.parametrize(
    ("policies", "source", "target", "masked", "through"),
    [
        (ON, Tier.PRODUCTION, Tier.STAGING, True, True),
        (ON, Tier.PRODUCTION, Tier.EPHEMERAL, True, True),
        (ON, Tier.PRODUCTION, Tier.DEV, True, True),
        (ON, Tier.PRODUCTION, Tier.STAGING, False, False),  # asked for unmasked data
        (ON, Tier.PRODUCTION, Tier.PRODUCTION, True, False),  # production is never masked
        (ON, Tier.STAGING, Tier.DEV, True, False),  # only production has a golden copy
        (Policies(), Tier.PRODUCTION, Tier.STAGING, True, False),  # the policy is off
    ],
)
def test_which_copies_go_through_the_golden_copy(
    policies: Policies, source: Tier, target: Tier, masked: bool, through: bool
) -> None:
    assert golden.through_golden(policies, source, target, masked) is through


def test_production_gets_a_golden_copy_for_what_copies_it_and_for_the_previews_seed() -> None:
    envs = world(
        desired("prod"),
        desired("staging", Tier.STAGING, db_source="prod"),
        desired("qa", Tier.STAGING, db_source="prod", mask=False),
        desired("dev", Tier.DEV),
        desired("live", Tier.PRODUCTION),
    )
    assert golden.wanted(envs, ON) == {PROD: ("copied by staging",)}
    with_previews = Policies(
        golden=GoldenPolicy(), previews=PreviewPolicy(bases=("main",), seed="live")
    )
    assert golden.wanted(envs, with_previews) == {
        PROD: ("copied by staging",),
        EnvKey("acme", "live"): ("the previews' seed",),
    }
    assert golden.wanted(envs, Policies()) == {}


@pytest.mark.parametrize(
    ("state", "revision", "scheduled", "why"),
    [
        (None, "r1", False, "there is no golden copy yet"),
        (golden.GoldenState(AT, "r1"), "r1", False, None),
        (golden.GoldenState(AT, "r1"), "r2", False, "production was updated to r2"),
        (golden.GoldenState(AT, "r1"), "r1", True, "scheduled (refresh: 24h)"),
        (golden.GoldenState(AT, ""), "r2", False, None),  # revision unknown: the schedule
    ],
)
def test_when_a_refresh_is_due(
    state: golden.GoldenState | None, revision: str, scheduled: bool, why: str | None
) -> None:
    found = golden.refresh_due(GoldenPolicy("24h"), state, revision, scheduled)
    if why is None:
        assert found is None
    else:
        assert found is not None and found.startswith(why)


def test_the_ledgers_record_reads_back_as_a_state() -> None:
    doc = {"refreshed_at": AT.isoformat(), "revision": "r1", "database": "x"}
    assert golden.state_of(doc) == golden.GoldenState(AT, "r1")
    assert golden.state_of(None) is None
    assert golden.state_of({"database": "x"}) is None


def test_the_golden_policy_reaches_the_model_and_a_bad_schedule_is_refused() -> None:
    config = load_state(state({"policies.yaml": POLICIES + "golden: {refresh: 12h}\n"}), "c")
    assert config.policies.golden == GoldenPolicy("12h")
    default = load_state(state({"policies.yaml": POLICIES + "golden: {}\n"}), "c")
    assert default.policies.golden == GoldenPolicy("24h")
    assert load_state(state({}), "c").policies.golden is None
    for bad in ("{refresh: soon}", "{refresh: 12h, keep: 3}", "yes"):
        problems = problems_of({"policies.yaml": POLICIES + f"golden: {bad}\n"})
        assert problems and {p.location.file for p in problems} == {"policies.yaml"}, bad


@pytest.mark.parametrize(
    ("failures", "minutes"), [(0, 0), (1, 5), (2, 10), (3, 20), (7, 320), (8, 360), (99, 360)]
)
def test_a_failing_refresh_backs_off_before_streaming_production_again(
    failures: int, minutes: int
) -> None:
    assert golden.retry_after(failures) == timedelta(minutes=minutes)
