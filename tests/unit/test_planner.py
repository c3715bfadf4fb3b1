"""The planner's decision table: what to do, in which order, and why (no services)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from reconciler.core.model import Desired, EnvKey, Tier
from reconciler.core.observed import Observed, ObservedEnvironment, Role
from reconciler.core.planner import Action, Kind, plan
from tests.factories import desired, live


def kinds(
    want_envs: list,
    have_envs: list,
    images: set[str] | None = None,
    held: dict | None = None,
    allow_empty: bool = False,
) -> list[tuple[str, Kind]]:
    d = Desired("c" * 40, {w.key: w for w in want_envs}, held or {}, allow_empty=allow_empty)
    imgs = images if images is not None else {w.image for w in want_envs}
    o = Observed({h.key: h for h in have_envs}, frozenset(imgs))
    return [(a.key.env, a.kind) for a in plan(d, o).actions]


def plan_of(want_envs: list, have_envs: list) -> tuple[Action, ...]:
    d = Desired("c" * 40, {w.key: w for w in want_envs})
    o = Observed({h.key: h for h in have_envs}, frozenset(w.image for w in want_envs))
    return plan(d, o).actions


def test_fresh_production_environment_is_created_in_dependency_order() -> None:
    """Network and volume, then database, image, initialisation, then the server."""
    want = desired()
    assert kinds([want], [], images=set()) == [
        ("prod", Kind.CREATE_NETWORK),
        ("prod", Kind.CREATE_VOLUME),
        ("prod", Kind.CREATE_DATABASE),
        ("prod", Kind.BUILD_IMAGE),
        ("prod", Kind.INIT_DATABASE),
        ("prod", Kind.CREATE_ODOO),
    ]


def test_fresh_dev_environment_gets_a_dedicated_database_container_first() -> None:
    want = desired("dev", Tier.DEV)
    assert kinds([want], []) == [
        ("dev", Kind.CREATE_NETWORK),
        ("dev", Kind.CREATE_VOLUME),
        ("dev", Kind.CREATE_VOLUME),
        ("dev", Kind.CREATE_DB_CONTAINER),
        ("dev", Kind.CREATE_DATABASE),
        ("dev", Kind.INIT_DATABASE),
        ("dev", Kind.CREATE_ODOO),
    ]


def test_matching_live_state_plans_nothing() -> None:
    want = desired()
    result = plan(
        Desired("c", {want.key: want}), Observed({want.key: live(want)}, frozenset({want.image}))
    )
    assert not result.has_changes
    assert "No changes" in result.render()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"state": "exited"}, [Kind.START_ODOO]),
        ({"spec_hash": "0" * 16}, [Kind.REPLACE_ODOO]),
        ({"spec_hash": "0" * 16, "revision": "b" * 40}, [Kind.UPDATE_MODULES, Kind.REPLACE_ODOO]),
    ],
    ids=["stopped-by-hand", "settings-changed", "new-revision"],
)
def test_drift_is_healed(change: dict, expected: list[Kind]) -> None:
    """Each kind of drift maps to the smallest set of actions that heals it."""
    want = desired()
    assert [k for _, k in kinds([want], [live(want, **change)])] == expected


def test_an_interrupted_initialisation_starts_over_on_a_fresh_database() -> None:
    want = desired("qa", Tier.STAGING)
    assert [k for _, k in kinds([want], [live(want, initialised=False)])] == [
        Kind.RECREATE_DATABASE,
        Kind.INIT_DATABASE,
    ]


def test_a_protected_database_is_never_recreated_only_initialised_again() -> None:
    """Production whose first ``-i`` failed is initialised again in place, never dropped."""
    want = desired()
    actions = kinds([want], [live(want, initialised=False)])
    assert [k for _, k in actions] == [Kind.INIT_DATABASE]
    assert not any(a.destructive for a in plan_of([want], [live(want, initialised=False)]))


def test_a_database_the_ledger_does_not_record_is_adopted_never_recreated() -> None:
    """A database with our name but no ledger record (its labels may be forged) is adopted
    non-destructively: the adopt step checks it live; it is never dropped or recreated."""
    for want in (desired(), desired("qa", Tier.STAGING)):
        actions = plan_of([want], [live(want, initialised=False, owned=False)])
        assert [a.kind for a in actions][:1] == [Kind.ADOPT_DATABASE]
        assert not any(a.destructive for a in actions)


def test_an_undeclared_database_the_ledger_does_not_record_is_kept() -> None:
    gone = desired("qa", Tier.STAGING)
    result = plan(Desired("c", {}, allow_empty=True), Observed({gone.key: live(gone, owned=False)}))
    assert Kind.DROP_DATABASE not in [a.kind for a in result.actions]
    assert any("not in its ledger" in note for note in result.retained)


def test_removed_container_is_recreated() -> None:
    want = desired()
    have = live(want)
    have = replace(have, containers={})
    assert [k for _, k in kinds([want], [have])] == [Kind.CREATE_ODOO]


def test_changing_workers_changes_the_spec_hash_and_replaces() -> None:
    old, new = desired(workers=2), desired(workers=3)
    assert old.odoo_spec_hash() != new.odoo_spec_hash()
    assert [k for _, k in kinds([new], [live(old)])] == [Kind.REPLACE_ODOO]


def test_suspended_environment_is_stopped_not_removed() -> None:
    want = desired(suspended=True)
    assert [k for _, k in kinds([want], [live(want)])] == [Kind.STOP_ODOO]
    stopped = live(want, state="exited")
    assert kinds([want], [stopped]) == []


def test_undeclared_environment_is_pruned_with_its_data() -> None:
    gone = desired("feat", Tier.EPHEMERAL)
    assert [k for _, k in kinds([], [live(gone)], allow_empty=True)] == [
        Kind.REMOVE_ODOO,
        Kind.REMOVE_DB_CONTAINER,
        Kind.REMOVE_VOLUME,
        Kind.REMOVE_VOLUME,
        Kind.REMOVE_NETWORK,
    ]


def test_undeclared_staging_drops_its_shared_database() -> None:
    gone = desired("staging", Tier.STAGING)
    assert Kind.DROP_DATABASE in [k for _, k in kinds([], [live(gone)], allow_empty=True)]


def test_protected_environment_keeps_database_and_filestore_when_pruned() -> None:
    """Production data is never dropped by a prune: only containers and network go."""
    gone = desired()
    d = Desired("c", {}, allow_empty=True)
    result = plan(d, Observed({gone.key: live(gone)}))
    assert [a.kind for a in result.actions] == [Kind.REMOVE_ODOO, Kind.REMOVE_NETWORK]
    assert not any(a.destructive for a in result.actions)
    assert any("acme__prod" in note for note in result.retained)


def test_held_environment_is_left_alone() -> None:
    """An environment that cannot be resolved now (repo down) must not be pruned."""
    have = live(desired("staging", Tier.STAGING))
    assert kinds([], [have], held={have.key: "app repository unreachable"}) == []


def test_a_branch_past_its_ttl_gets_no_environment_and_the_plan_says_why() -> None:
    """An expired branch is neither made nor silently skipped: the plan names it and why."""
    gone = EnvKey("acme", "feature-old")
    why = "branch feature/old has had no commit for more than 7 days (ttl)"
    result = plan(Desired("c", {}, expired={gone: why}), Observed())
    assert not result.has_changes
    assert result.expired == {gone: why}
    assert f"no environment: acme/feature-old: {why}" in result.render()


def test_stale_containers_are_removed_first() -> None:
    want = desired()
    have = replace(live(want), stale=(want.key.init_container,))
    assert kinds([want], [have])[0] == ("prod", Kind.REMOVE_STALE)


def test_environments_are_planned_in_stable_order() -> None:
    a, b = desired("alpha"), desired("beta")
    envs = [e for e, _ in kinds([b, a], [])]
    assert envs == sorted(envs)


def test_render_counts_like_terraform() -> None:
    want = desired()
    text = plan(Desired("c", {want.key: want}), Observed({}, frozenset())).render()
    assert "# acme/prod" in text
    assert "Plan: 6 to add, 0 to change, 0 to remove." in text


def test_plan_is_deterministic() -> None:
    wants = [desired(f"e{i}") for i in range(5)]
    d = Desired("c", {w.key: w for w in wants})
    o = Observed({EnvKey("acme", "old"): ObservedEnvironment(EnvKey("acme", "old"), network=True)})
    assert plan(d, o) == plan(d, o)


def test_dedicated_database_of_a_stopped_container_is_started() -> None:
    want = desired("dev", Tier.DEV)
    have = live(want)
    db = replace(have.containers[Role.DB], state="exited")
    have = replace(have, containers={**have.containers, Role.DB: db})
    assert [k for _, k in kinds([want], [have])] == [Kind.START_DB_CONTAINER]


def test_a_state_without_environment_files_does_not_empty_the_platform() -> None:
    """Like Argo CD's allowEmpty: dropping every environment file is taken for a mistake."""
    gone = desired("staging", Tier.STAGING)
    result = plan(Desired("c", {}), Observed({gone.key: live(gone)}))
    assert not result.has_changes
    assert "prune.allow_empty" in result.retained[0]
    allowed = plan(Desired("c", {}, allow_empty=True), Observed({gone.key: live(gone)}))
    assert Kind.DROP_DATABASE in [a.kind for a in allowed.actions]


def test_branch_environments_are_pruned_even_when_nothing_else_is_declared() -> None:
    """Deleting the branch is the decision; the empty-state guard is for files."""
    gone = replace(live(desired("feat", Tier.EPHEMERAL)), origin="branch")
    assert Kind.REMOVE_NETWORK in [k for _, k in kinds([], [gone])]


def test_one_remaining_file_lets_other_removals_through() -> None:
    keep, gone = desired("prod"), desired("staging", Tier.STAGING)
    assert Kind.DROP_DATABASE in [k for _, k in kinds([keep], [live(keep), live(gone)])]


@pytest.mark.parametrize(
    ("tier", "mask", "reason"),
    [
        (Tier.STAGING, True, "copy of prod (neutralised, masked), then odoo -u"),
        (Tier.DEV, False, "copy of prod (neutralised), then odoo -u"),
        (Tier.STAGING, False, "copy of prod (neutralised), then odoo -u"),
    ],
)
def test_a_declared_copy_says_what_it_will_do(tier: Tier, mask: bool, reason: str) -> None:
    """`odooops plan` shows a copy as one, with what is done to it before it starts."""
    want = desired("stg", tier, db_source="prod", mask=mask, protected=False)
    result = plan(Desired("c", {want.key: want}), Observed({}, frozenset({want.image})))
    init = next(a for a in result.actions if a.kind is Kind.INIT_DATABASE)
    assert init.reason == reason


def test_an_environment_whose_server_did_not_answer_gets_no_action() -> None:
    """No answer is never read as no database: nothing is created, dropped or replaced."""
    want = desired("qa", Tier.STAGING)
    gone = desired("old", Tier.STAGING)
    observed = Observed(
        {gone.key: live(gone)},
        frozenset({want.image}),
        unreachable={want.key: "server down", gone.key: "server down"},
    )
    result = plan(Desired("c", {want.key: want}, allow_empty=True), observed)
    assert result.actions == ()


def test_the_plan_names_the_modules_a_new_revision_updates() -> None:
    """From git alone: the addon whose folder's tree changed since the recorded update."""
    want = desired(revision="b" * 40, addons={"acme_base": "t2", "acme_x": "t9"})
    have = live(want, spec_hash="0" * 16, revision="a" * 40)
    assert have.database is not None
    recorded = {"addons": {"acme_base": "t1", "acme_x": "t9"}, "base": want.base_image_id,
                "wanted": ["acme_base", "base"]}  # fmt: skip
    have = replace(have, database=replace(have.database, modules=recorded))
    result = plan(
        Desired("c", {want.key: want}), Observed({want.key: have}, frozenset({want.image}))
    )
    update = next(a for a in result.actions if a.kind is Kind.UPDATE_MODULES)
    assert update.reason == (
        f"revision {'a' * 12} -> {'b' * 12}: -u acme_base (changed since the last update)"
    )


def asleep(have: ObservedEnvironment, **container_state: str) -> ObservedEnvironment:
    """``have`` recorded asleep in the ledger, its containers in the given states."""
    containers = {
        role: replace(c, state=container_state.get(role.value, c.state))
        for role, c in have.containers.items()
    }
    return replace(have, containers=containers, asleep_since=datetime(2026, 1, 1, tzinfo=UTC))


def test_an_asleep_environment_s_containers_are_stopped_odoo_first() -> None:
    want = desired("dev", Tier.DEV)
    assert [(a.kind, a.target) for a in plan_of([want], [asleep(live(want))])] == [
        (Kind.STOP_ODOO, want.key.odoo_container),
        (Kind.STOP_DB_CONTAINER, want.key.db_container),
    ]


def test_an_asleep_environment_is_not_started_again() -> None:
    """Stopped on purpose: neither a pass nor a Docker event starts it (only a request)."""
    want = desired("dev", Tier.DEV)
    assert plan_of([want], [asleep(live(want), odoo="exited", db="exited")]) == ()
    staging = desired("qa", Tier.STAGING)
    assert plan_of([staging], [asleep(live(staging), odoo="exited")]) == ()


def test_a_deploy_to_an_asleep_environment_wakes_it_first() -> None:
    want = desired("dev", Tier.DEV, revision="b" * 40)
    have = asleep(live(desired("dev", Tier.DEV)), odoo="exited", db="exited")
    kinds_ = [a.kind for a in plan_of([want], [have])]
    assert kinds_[0] is Kind.WAKE
    assert kinds_[1:] == [Kind.START_DB_CONTAINER, Kind.UPDATE_MODULES, Kind.REPLACE_ODOO]


def test_a_waking_environment_is_started() -> None:
    """Waking is not asleep: the ledger's ``asleep_since`` is None, the plan starts it."""
    want = desired("dev", Tier.DEV)
    stopped = asleep(live(want), odoo="exited", db="exited")
    waking = replace(stopped, asleep_since=None)
    assert [a.kind for a in plan_of([want], [waking])] == [
        Kind.START_DB_CONTAINER,
        Kind.START_ODOO,
    ]


def test_a_suspended_environment_is_not_woken_by_being_asleep() -> None:
    want = desired("dev", Tier.DEV, suspended=True)
    assert [a.kind for a in plan_of([want], [asleep(live(want))])] == [Kind.STOP_ODOO]
