"""Tier defaults, override precedence, branch rules, auto environments and quotas."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from reconciler.core.model import BranchRule, EnvKey, Policies, PreviewOf, Tier
from reconciler.core.policies import (
    MASTER_MEMORY,
    MemoryTooSmall,
    OdooMemory,
    QuotaExceeded,
    auto_environments,
    check_dev_quota,
    env_name_for_branch,
    hashed_env_name,
    odoo_memory,
    over_quota,
    resolve_settings,
    rule_for,
)
from tests.factories import spec

GiB = 1024**3

RULES = Policies(
    (
        BranchRule("main", Tier.PRODUCTION),
        BranchRule("release/*", Tier.STAGING),
        BranchRule("develop", Tier.DEV),
        BranchRule("feature/*", Tier.EPHEMERAL, auto_create=True),
    )
)


@pytest.mark.parametrize(
    ("tier", "workers", "cpu", "memory", "backup", "ttl"),
    [
        (Tier.PRODUCTION, 8, 4.0, 8 * GiB, "6h", None),
        (Tier.STAGING, 4, 2.0, 4 * GiB, "24h", None),
        (Tier.DEV, 2, 1.0, 3 * GiB, "never", timedelta(days=14)),
        (Tier.EPHEMERAL, 1, 0.5, 2 * GiB, "never", timedelta(days=7)),
    ],
)
def test_tier_defaults(
    tier: Tier, workers: int, cpu: float, memory: int, backup: str, ttl: timedelta | None
) -> None:
    s = resolve_settings(tier, {}, {}, {})
    assert (s.workers, s.cpu, s.memory, s.backup_schedule, s.ttl) == (
        workers,
        cpu,
        memory,
        backup,
        ttl,
    )


def test_precedence_is_tier_then_platform_then_app_then_environment() -> None:
    platform = {"production": {"workers": 6, "resource_limits": {"memory": "6Gi"}}}
    app = {"production": {"workers": 5, "resource_limits": {"cpu": "3000m"}}}
    env = {"workers": 3}
    s = resolve_settings(Tier.PRODUCTION, platform, app, env)
    assert (s.workers, s.cpu, s.memory) == (3, 3.0, 6 * GiB)


def test_app_layer_overrides_platform_layer() -> None:
    s = resolve_settings(Tier.STAGING, {"staging": {"workers": 2}}, {"staging": {"workers": 3}}, {})
    assert s.workers == 3


def test_nested_resource_limits_merge_key_by_key() -> None:
    s = resolve_settings(Tier.PRODUCTION, {}, {}, {"resource_limits": {"memory": "7Gi"}})
    assert (s.cpu, s.memory) == (4.0, 7 * GiB)


MiB = 2**20


@pytest.mark.parametrize("tier", list(Tier))
def test_every_tier_default_holds_its_processes_at_odoos_sample(tier: Tier) -> None:
    s = resolve_settings(tier, {}, {}, {})
    m = odoo_memory(s, tier)
    assert m.processes == s.workers + s.max_cron_threads + 1
    assert m.soft >= 600 * MiB
    assert MASTER_MEMORY + m.processes * m.soft <= s.memory
    assert m.hard == int(m.soft * 8 / 3)  # Odoo's sample ratio: 600 MiB soft, 1.6 GiB hard
    assert s.init_memory == 2 * GiB


def test_memory_is_shared_by_workers_cron_gevent_and_the_master() -> None:
    s = resolve_settings(
        Tier.STAGING,
        {},
        {},
        {"workers": 2, "max_cron_threads": 1, "resource_limits": {"memory": "3Gi"}},
    )
    assert odoo_memory(s).soft == (3 * GiB - 200 * MiB) // 4


def test_threaded_mode_is_one_process_with_the_whole_memory() -> None:
    s = resolve_settings(Tier.DEV, {}, {}, {"workers": 0, "resource_limits": {"memory": "1Gi"}})
    assert odoo_memory(s) == OdooMemory(1, GiB, int(GiB * 8 / 3))


def test_a_tier_too_small_for_its_workers_is_refused_with_the_arithmetic() -> None:
    with pytest.raises(MemoryTooSmall) as caught:
        resolve_settings(Tier.DEV, {}, {}, {"resource_limits": {"memory": "2Gi"}})
    message, fix = caught.value.message, caught.value.remediation
    assert "2048Mi for 2 HTTP worker(s) + 1 cron worker(s) + 1 gevent process" in message
    assert "leaves 462Mi per process, under Odoo's sample of 600Mi" in message
    assert "at least 2.75Gi for the dev tier" in fix


def test_an_explicit_worker_memory_may_go_under_the_sample_but_must_fit() -> None:
    small = {"resource_limits": {"memory": "2Gi", "worker_memory": "400Mi"}}
    s = resolve_settings(Tier.DEV, {}, {}, small)
    assert odoo_memory(s).soft == 400 * MiB
    too_big = {"resource_limits": {"memory": "2Gi", "worker_memory": "800Mi"}}
    with pytest.raises(MemoryTooSmall, match="worker_memory 800Mi does not fit"):
        resolve_settings(Tier.DEV, {}, {}, too_big)


def test_init_memory_is_its_own_budget_and_does_not_replace_the_container() -> None:
    a = resolve_settings(Tier.DEV, {}, {}, {})
    b = resolve_settings(Tier.DEV, {}, {}, {"resource_limits": {"init_memory": "4Gi"}})
    assert b.init_memory == 4 * GiB
    assert a.container_settings() == b.container_settings()


def test_production_keeps_its_pre_update_database_a_day_and_others_none_by_default() -> None:
    assert resolve_settings(Tier.PRODUCTION, {}, {}, {}).keep_previous == timedelta(hours=24)
    assert resolve_settings(Tier.STAGING, {}, {}, {}).keep_previous is None
    staging = resolve_settings(Tier.STAGING, {}, {}, {"keep_previous": "36h"})
    assert staging.keep_previous == timedelta(hours=36)
    assert resolve_settings(Tier.PRODUCTION, {}, {}, {"keep_previous": None}).keep_previous is None


def test_smoke_paths_and_data_retention_do_not_replace_the_container() -> None:
    a = resolve_settings(Tier.STAGING, {}, {}, {})
    b = resolve_settings(
        Tier.STAGING, {}, {}, {"smoke_paths": ["/shop", "/web/login"], "keep_previous": "2d"}
    )
    assert a.smoke_paths == ("/web/login",) and b.smoke_paths == ("/shop", "/web/login")
    assert a.container_settings() == b.container_settings()
    assert b.to_dict()["keep_previous"] == 2 * 86400


@pytest.mark.parametrize(
    ("branch", "tier"),
    [
        ("main", Tier.PRODUCTION),
        ("release/v2.1", Tier.STAGING),
        ("develop", Tier.DEV),
        ("feature/crm", Tier.EPHEMERAL),
        ("feature/a/b", None),
        ("hotfix/x", None),
    ],
)
def test_first_matching_rule_wins(branch: str, tier: Tier | None) -> None:
    rule = rule_for(RULES, branch)
    assert (rule.tier if rule else None) == tier


@pytest.mark.parametrize(
    ("branch", "name"),
    [
        ("feature/crm-reports", "feature-crm-reports"),
        ("feature/CRM_Reports", "feature-crm-reports"),
        ("1.2/fix", "b-1-2-fix"),
        ("feature/" + "x" * 60, "feature-" + "x" * 22),
    ],
)
def test_branch_names_become_dns_safe_environment_names(branch: str, name: str) -> None:
    assert env_name_for_branch(branch) == name


def test_auto_environments_come_from_auto_create_rules_only() -> None:
    branches = {"main": "1", "feature/crm": "2", "release/v1": "3", "feature/pos": "4"}
    envs = auto_environments("acme", RULES, branches, [], {"feature/crm": "ann@x"})
    assert [(e.key.env, e.tier, e.owner) for e in envs] == [
        ("feature-crm", Tier.EPHEMERAL, "ann@x"),
        ("feature-pos", Tier.EPHEMERAL, None),
    ]


def test_a_file_wins_over_an_auto_environment_for_its_branch() -> None:
    declared = [spec("crm", Tier.DEV, branch="feature/crm")]
    envs = auto_environments("acme", RULES, {"feature/crm": "2"}, declared, {})
    assert envs == []


def test_dev_quota_holds_the_excess_per_owner() -> None:
    specs = [spec(f"f{i}", Tier.EPHEMERAL, owner="ann@x", origin="branch") for i in range(4)]
    specs.append(spec("prod", Tier.PRODUCTION, owner="ann@x"))
    held = over_quota(specs, per_user=2)
    assert sorted(held) == [EnvKey("acme", "f2"), EnvKey("acme", "f3")]
    assert "ann@x" in held[EnvKey("acme", "f2")]


def test_previews_count_per_project_not_against_their_author() -> None:
    previews = [
        spec(f"pr-{i}", Tier.EPHEMERAL, owner="github:ann", preview=PreviewOf("github", i, "f"))
        for i in range(4)
    ]
    assert over_quota(previews, per_user=1) == {}
    check_dev_quota(previews, "github:ann", Tier.EPHEMERAL, per_user=1)  # nothing counts


def test_the_dev_quota_refusal_names_the_limit_and_what_counts() -> None:
    mine = [spec("a", Tier.DEV, owner="ann"), spec("b", Tier.EPHEMERAL, owner="ann")]
    others = [spec("c", Tier.DEV, owner="bob"), spec("prod", Tier.PRODUCTION, owner="ann")]
    check_dev_quota(mine + others, "ann", Tier.STAGING, per_user=2)  # not a dev tier
    with pytest.raises(QuotaExceeded) as refused:
        check_dev_quota(mine + others, "ann", Tier.DEV, per_user=2)
    assert (
        "ann has 2 dev environments, the most quotas.dev_environments_per_user allows (2): "
        "acme/a, acme/b" in refused.value.message
    )
    assert refused.value.remediation.startswith("odooops destroy acme/a")


LONG = "feature/" + "x" * 40


@pytest.mark.parametrize(
    ("branches", "names"),
    [
        (
            [LONG + "-one", LONG + "-two"],
            {LONG + "-one": "feature-" + "x" * 22, LONG + "-two": hashed_env_name(LONG + "-two")},
        ),
        (
            ["feature/CRM", "feature/crm"],
            {"feature/crm": "feature-crm", "feature/CRM": hashed_env_name("feature/CRM")},
        ),
        (
            ["feature/crm_reports", "feature/crm-reports", "feature/crm.reports"],
            {
                "feature/crm-reports": "feature-crm-reports",
                "feature/crm.reports": hashed_env_name("feature/crm.reports"),
                "feature/crm_reports": hashed_env_name("feature/crm_reports"),
            },
        ),
    ],
    ids=["cut at 30 characters", "case", "punctuation"],
)
def test_branches_whose_names_collide_all_get_an_environment(
    branches: list[str], names: dict[str, str]
) -> None:
    envs = auto_environments("acme", RULES, dict.fromkeys(branches, "1"), [], {})
    assert {e.branch: e.key.env for e in envs} == names


def test_the_branch_that_reads_as_the_name_keeps_it_whatever_else_is_pushed() -> None:
    """Pushing ``feature/CRM`` next to ``feature/crm`` does not rename (rebuild) the latter."""
    alone = auto_environments("acme", RULES, {"feature/crm": "1"}, [], {})
    both = auto_environments("acme", RULES, {"feature/CRM": "2", "feature/crm": "1"}, [], {})
    assert [e.key.env for e in alone] == ["feature-crm"]
    assert {e.branch: e.key.env for e in both}["feature/crm"] == "feature-crm"


def test_a_branch_whose_name_a_file_took_gets_the_hashed_name() -> None:
    declared = [spec("feature-crm", Tier.DEV, branch="develop")]
    envs = auto_environments("acme", RULES, {"feature/crm": "1"}, declared, {})
    assert [(e.branch, e.key.env) for e in envs] == [
        ("feature/crm", hashed_env_name("feature/crm"))
    ]


@pytest.mark.parametrize("branch", [LONG, "feature/CRM", "1.2/fix", "feature/" + "é" * 40])
def test_a_hashed_name_is_a_valid_stable_name_of_the_branch_alone(branch: str) -> None:
    name = hashed_env_name(branch)
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,30}[a-z0-9]", name) and len(name) <= 30
    assert name == hashed_env_name(branch)
    assert name != hashed_env_name(branch + "x")


@pytest.mark.parametrize(
    ("tier", "sleep_after"),
    [
        (Tier.PRODUCTION, None),
        (Tier.STAGING, None),
        (Tier.DEV, timedelta(hours=2)),
        (Tier.EPHEMERAL, timedelta(hours=1)),
    ],
)
def test_sleep_after_defaults_per_tier(tier: Tier, sleep_after: timedelta | None) -> None:
    assert resolve_settings(tier, {}, {}, {}).sleep_after == sleep_after


def test_sleep_after_is_layered_and_restarts_nothing() -> None:
    """A changed sleep_after is runtime state: the Odoo container's settings stay the same."""
    platform = {"production": {"sleep_after": "30m"}}
    a = resolve_settings(Tier.PRODUCTION, platform, {}, {})
    b = resolve_settings(Tier.PRODUCTION, platform, {}, {"sleep_after": "2s"})
    never = resolve_settings(Tier.DEV, {}, {}, {"sleep_after": None})
    assert (a.sleep_after, b.sleep_after, never.sleep_after) == (
        timedelta(minutes=30),
        timedelta(seconds=2),
        None,
    )
    assert a.container_settings() == b.container_settings()
    assert "sleep_after" not in a.container_settings()
    assert a.to_dict()["sleep_after"] == 1800
