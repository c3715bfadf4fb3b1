"""Promotion decided from the daemon's view; promote rules parsed, validated and paired; the
commit message of a promotion; the release gathered from status, resolution and ledger."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from reconciler.core.config import load_state
from reconciler.core.errors import OdooOpsError
from reconciler.core.imagegc import Deployment
from reconciler.core.model import EnvKey, GatePolicy, PromotedFrom, PromoteRule, Tier
from reconciler.core.promotion import Release, decide, image_check, rule_pairs
from reconciler.core.testgate import gate_key
from reconciler.engine.releases import release_of
from reconciler.engine.status import Condition, EnvironmentStatus, Health, Sync
from reconciler.gitops import changes
from tests.factories import desired, spec
from tests.unit.test_validation import POLICIES, only, problems_of, state

REV = "5" * 40
STAGING = EnvKey("acme", "staging")
PROD = spec("prod", Tier.PRODUCTION)
EARNED = Release(
    key=STAGING,
    serving=REV,
    wanted=REV,
    image="odooops/acme:5555555555555555",
    health="Healthy",
    sync="Synced",
    gated=True,
    tested=True,
)


def test_a_healthy_synced_tested_source_is_promoted_at_the_commit_it_serves() -> None:
    promotion = decide(EARNED, STAGING, PROD)
    assert (promotion.source, promotion.target, promotion.revision) == (STAGING, PROD.key, REV)
    assert promotion.image == EARNED.image
    assert promotion.previous == "track" and promotion.changes
    assert promotion.fields() == {
        "revision": REV,
        "promoted": {"from": "acme/staging", "revision": REV, "image": EARNED.image},
    }


def test_a_source_whose_tier_is_not_gated_needs_no_test_report() -> None:
    assert decide(replace(EARNED, gated=False, tested=False), STAGING, PROD).revision == REV


def test_the_modules_that_change_are_the_addons_whose_folder_differs() -> None:
    source = replace(EARNED, addons=(("a", "t1"), ("b", "t2"), ("c", "t3")))
    target = replace(EARNED, key=PROD.key, addons=(("a", "t1"), ("b", "old")))
    assert decide(source, STAGING, PROD, target).modules == ("b", "c")
    assert decide(source, STAGING, PROD).modules is None
    assert decide(source, STAGING, PROD, replace(target, addons=())).modules is None


def test_a_target_pinned_there_already_is_no_change() -> None:
    assert not decide(EARNED, STAGING, replace(PROD, revision=REV)).changes


@pytest.mark.parametrize(
    ("release", "why"),
    [
        (None, "serves nothing"),
        (replace(EARNED, serving=""), "serves nothing"),
        (replace(EARNED, health="Degraded"), "it is Degraded, not Healthy"),
        (replace(EARNED, sync="OutOfSync"), "it is not synced"),
        (replace(EARNED, wanted="6" * 40), "while its state asks for 666666666666"),
        (replace(EARNED, ready=False), "its last run at 555555555555 did not succeed"),
        (replace(EARNED, image=""), "no record of the image"),
        (replace(EARNED, tested=False), "the tests of odooops/acme:5555555555555555"),
    ],
)
def test_a_source_that_has_not_earned_it_is_refused_with_the_reason(
    release: Release | None, why: str
) -> None:
    with pytest.raises(OdooOpsError) as exc:
        decide(release, STAGING, PROD)
    assert exc.value.code == "promotion_refused"
    assert why in exc.value.message
    assert exc.value.remediation == "odooops status acme/staging"


@pytest.mark.parametrize("source", [EnvKey("beta", "staging"), EnvKey("acme", "prod")])
def test_a_promotion_across_projects_or_onto_itself_is_invalid(source: EnvKey) -> None:
    with pytest.raises(OdooOpsError) as exc:
        decide(replace(EARNED, key=source), source, PROD)
    assert exc.value.code == "invalid_promotion"


def test_the_commit_names_the_source_its_revision_and_the_image() -> None:
    promotion = decide(EARNED, STAGING, PROD)
    op = changes.Operation(
        "promote", PROD.key, promotion.fields(), promotion.title, promotion.trailers()
    )
    message = op.message("r1", "api")
    title = "feat(promote): promote acme/staging@555555555555 to acme/prod"
    assert message.splitlines()[0] == title
    assert f"Promoted-From: acme/staging@{REV}\n" in message
    assert "Image: odooops/acme:5555555555555555\n" in message
    assert message.endswith("Request-Id: r1\nOdooOps-Via: api\n")


# ------------------------------------------------------------------------------ the release
def status(**kw: object) -> EnvironmentStatus:
    base = EnvironmentStatus(
        "acme", "staging", revision=REV, serving=REV, sync=Sync.SYNCED, health=Health.HEALTHY
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_the_release_vouches_for_the_gate_of_the_image_it_serves() -> None:
    want = replace(
        desired("staging", Tier.STAGING, revision=REV), tests=GatePolicy(tiers=(Tier.STAGING,))
    )
    untested = release_of(STAGING, status(), want, [], frozenset())
    tested = release_of(STAGING, status(), want, [], {gate_key(want)})
    assert untested is not None and tested is not None
    assert (untested.gated, untested.tested, tested.tested) == (True, False, True)
    assert tested.image == want.image


def test_a_release_not_resolved_at_its_serving_commit_takes_the_image_from_the_ledger() -> None:
    want = desired("staging", Tier.STAGING, revision="6" * 40)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    history = [
        Deployment("acme/staging", "odooops/acme:old", "sha256:1", "4" * 40, at),
        Deployment("acme/staging", "odooops/acme:served", "sha256:2", REV, at),
    ]
    release = release_of(STAGING, status(revision="6" * 40), want, history, {gate_key(want)})
    assert release is not None
    assert (release.image, release.tested, release.wanted) == (
        "odooops/acme:served",
        False,
        "6" * 40,
    )


def test_a_failed_last_run_is_not_ready() -> None:
    failed = status(conditions=(Condition("Ready", False, "deploy_failed"),))
    release = release_of(STAGING, failed, None, [], frozenset())
    assert release is not None and not release.ready
    assert release_of(STAGING, None, None, [], frozenset()) is None


# ------------------------------------------------------------------------ promote rules
def test_promote_rules_reach_the_model_with_their_defaults() -> None:
    text = POLICIES + "promote:\n  - {from: staging, to: prod, schedule: '0 2 * * *'}\n"
    text += "  - {from: dev, to: staging}\n"
    config = load_state(state({"policies.yaml": text}), "c")
    assert config.policies.promote == (
        PromoteRule("staging", "prod", "0 2 * * *", "gates-passed"),
        PromoteRule("dev", "staging", "1h", "gates-passed"),
    )


@pytest.mark.parametrize(
    ("rule", "code", "said"),
    [
        ("{from: staging, to: prod, schedule: 'at two'}", "invalid_value", "promote[0].schedule"),
        ("{from: staging, to: staging}", "invalid_value", "promotes staging onto itself"),
        ("{from: staging, to: prod, when: always}", "invalid_value", "when"),
        ("{from: staging}", "missing_key", "to"),
        ("{from: Staging, to: prod}", "invalid_value", "from"),
    ],
)
def test_a_bad_promote_rule_is_refused_where_it_is(rule: str, code: str, said: str) -> None:
    problems = problems_of({"policies.yaml": POLICIES + f"promote:\n  - {rule}\n"})
    problem = only(problems, code)
    assert problem.location.file == "policies.yaml" and problem.location.line == 13
    assert said in problem.message


def test_rules_pair_the_environments_of_each_project_that_has_both() -> None:
    envs = [
        spec("staging", Tier.STAGING),
        spec("prod"),
        replace(spec("staging", Tier.STAGING), key=EnvKey("beta", "staging")),
    ]
    rule = PromoteRule("staging", "prod")
    assert rule_pairs([rule], envs) == [(rule, STAGING, envs[1])]
    assert rule_pairs([PromoteRule("qa", "prod")], envs) == []


# ------------------------------------------------------------------- the promoted image
def test_a_promoted_environment_says_whether_it_runs_the_vetted_image() -> None:
    want = desired("prod", Tier.PRODUCTION, revision=REV)
    same = replace(
        want, spec=replace(want.spec, promoted=PromotedFrom("acme/staging", REV, want.image))
    )
    other = replace(
        want, spec=replace(want.spec, promoted=PromotedFrom("acme/staging", REV, "odooops/acme:x"))
    )
    moved = replace(other, revision="6" * 40)
    checked = image_check(same)
    assert checked is not None and (checked.same, checked.reason) == (True, "SameImage")
    differs = image_check(other)
    assert differs is not None and (differs.same, differs.reason) == (False, "ImageDiffers")
    assert "not odooops/acme:x that acme/staging@555555555555 ran" in differs.message
    assert image_check(moved) is None and image_check(want) is None


def test_the_promoted_block_reaches_the_model() -> None:
    text = (
        f"branch: main\nrevision: '{REV}'\npromoted: {{from: acme/staging, revision: '{REV}', "
        "image: 'odooops/acme:5555555555555555'}\n"
    )
    config = load_state(state({"environments/acme/prod.yaml": text}), "c")
    prod = next(s for s in config.environments if s.key == EnvKey("acme", "prod"))
    assert prod.promoted == PromotedFrom("acme/staging", REV, "odooops/acme:5555555555555555")
    problems = problems_of({"environments/acme/prod.yaml": "branch: main\npromoted: {from: x}\n"})
    assert {p.code for p in problems} == {"missing_key", "invalid_value"}
