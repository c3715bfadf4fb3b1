"""Policies: which branch gets which tier, what a tier gets, and who may have how many.

Pure functions over the model. The precedence of settings is the product's promise and is
spelled out once, in ``resolve_settings``: built-in tier default < platform ``tiers`` <
app ``.odooops.yaml`` ``tiers`` < app ``.odooops.yaml`` ``environments.<name>`` < environment
``overrides``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from reconciler.core import durations, globs
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import BranchRule, EnvironmentSpec, EnvKey, Policies, Settings, Tier
from reconciler.core.retention import Retention

GiB = 1024**3

TIER_DEFAULTS: Mapping[Tier, Mapping[str, Any]] = {
    Tier.PRODUCTION: {
        "workers": 8,
        "max_cron_threads": 2,
        "resource_limits": {"cpu": 4, "memory": "8Gi"},
        "backup_schedule": "6h",
        "backup_retention": {"days": 90},
        "ttl": None,
        "demo": False,
        "keep_previous": "24h",
        "sleep_after": None,
    },
    Tier.STAGING: {
        "workers": 4,
        "max_cron_threads": 1,
        "resource_limits": {"cpu": 2, "memory": "4Gi"},
        "backup_schedule": "24h",
        "backup_retention": {"days": 30},
        "ttl": None,
        "demo": False,
        "sleep_after": None,
    },
    Tier.DEV: {
        "workers": 2,
        "max_cron_threads": 1,
        "resource_limits": {"cpu": 1, "memory": "3Gi"},
        "backup_schedule": "never",
        "backup_retention": {"days": 7},
        "ttl": "14d",
        "demo": True,
        # As Odoo.sh puts idle development builds to sleep: a day's pause costs nothing.
        "sleep_after": "2h",
    },
    Tier.EPHEMERAL: {
        "workers": 1,
        "max_cron_threads": 1,
        "resource_limits": {"cpu": 0.5, "memory": "2Gi"},
        "backup_schedule": "never",
        "backup_retention": {"days": 7},
        "ttl": "7d",
        "demo": True,
        "sleep_after": "1h",
    },
}


_REPLACED_WHOLE = frozenset({"backup_retention"})


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge settings layers; nested mappings (``resource_limits``) merge key by key.

    A retention is replaced whole: a layer saying ``{daily: 7, weekly: 4, monthly: 3}`` means
    grandfather-father-son alone, not on top of the tier's ``{days: 90}``.
    """
    out = dict(base)
    for key, value in override.items():
        if key in _REPLACED_WHOLE:
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_settings(
    tier: Tier,
    platform_tiers: Mapping[str, Mapping[str, Any]],
    app_tiers: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Any],
    app_environment: Mapping[str, Any] | None = None,
) -> Settings:
    """Apply the layers in order and parse the result into typed ``Settings``.

    ``app_environment`` is the application's block for this very environment (its
    ``.odooops.yaml`` ``environments.<name>``): what the developers ask for one environment
    beats what they ask for its tier, and the state repository's own ``overrides`` of the
    environment, the platform's last word, beat both."""
    raw: dict[str, Any] = dict(TIER_DEFAULTS[tier])
    layers = (
        platform_tiers.get(tier.value, {}),
        app_tiers.get(tier.value, {}),
        app_environment or {},
        overrides,
    )
    for layer in layers:
        raw = merge(raw, layer)
    limits = raw["resource_limits"]
    ttl: timedelta | None = None if raw["ttl"] is None else durations.parse_duration(raw["ttl"])
    durations.parse_schedule(str(raw["backup_schedule"]))
    worker_memory = limits.get("worker_memory")
    settings = Settings(
        workers=int(raw["workers"]),
        max_cron_threads=int(raw["max_cron_threads"]),
        cpu=durations.parse_cpu(limits["cpu"]),
        memory=durations.parse_size(limits["memory"]),
        backup_schedule=str(raw["backup_schedule"]),
        ttl=ttl,
        demo=bool(raw["demo"]),
        backup_retention=_retention(raw["backup_retention"]),
        init_memory=durations.parse_size(limits.get("init_memory", INIT_MEMORY)),
        worker_memory=None if worker_memory is None else durations.parse_size(worker_memory),
        maintenance=bool(raw.get("maintenance", True)),
        smoke_paths=tuple(str(p) for p in raw.get("smoke_paths", ("/web/login",))),
        keep_previous=_keep(raw.get("keep_previous")),
        sleep_after=_keep(raw.get("sleep_after")),
    )
    odoo_memory(settings, tier)  # refuses a budget the processes cannot fit in
    return settings


def _keep(raw: Any) -> timedelta | None:
    """``keep_previous`` (null keeps nothing), ``sleep_after`` (null never sleeps): the schema
    has checked the duration's form."""
    return None if raw is None else durations.parse_duration(str(raw))


# Odoo's own sample configuration: 600 MiB soft, 1.6 GiB hard per worker. The hard limit is
# an address-space limit (RLIMIT_AS), which a Python process reaches well before its resident
# memory does, so it keeps Odoo's ratio to the soft one rather than the container's size.
WORKER_SOFT_SAMPLE = 600 * 2**20
HARD_PER_SOFT = 8 / 3
MASTER_MEMORY = 200 * 2**20  # the prefork master: no registry, sockets and bookkeeping
INIT_MEMORY = "2Gi"


class MemoryTooSmall(OdooOpsError):
    """A tier's memory cannot hold its Odoo processes at Odoo's sample limits; ``action`` is
    the fix alone, for a caller that says itself how to check it (``odooops validate``)."""

    code = "memory_too_small"

    def __init__(self, message: str, *, action: str) -> None:
        super().__init__(message, remediation=f"{action}, commit, then: odooops plan")
        self.action = action


@dataclass(frozen=True)
class OdooMemory:
    """How one environment's memory is shared by its Odoo processes."""

    processes: int  # HTTP workers + cron workers + the gevent process (0 workers: 1)
    soft: int  # limit_memory_soft per process (bytes)
    hard: int  # limit_memory_hard per process (bytes)


def odoo_memory(settings: Settings, tier: Tier | None = None) -> OdooMemory:
    """The per-process limits from the container's memory and the real process count.

    With ``workers > 0`` Odoo runs a master, one process per HTTP worker, one per cron worker
    and a gevent process for the websocket, each with its own limits; threaded mode
    (``workers: 0``) is one process. The container's memory is what they share, so the soft
    limit is ``(memory - master) / processes``; it must not fall under Odoo's sample (600 MiB)
    unless ``resource_limits.worker_memory`` says so explicitly, and even then the processes
    must fit in the container.
    """
    w, c = settings.workers, settings.max_cron_threads
    processes = w + c + 1 if w > 0 else 1
    master = MASTER_MEMORY if w > 0 else 0
    shared = (settings.memory - master) // processes
    soft = settings.worker_memory or shared
    where = f"the {tier.value} tier" if tier is not None else "this environment"
    arithmetic = (
        f"{_mib(settings.memory)} for {w} HTTP worker(s) + {c} cron worker(s) + 1 gevent "
        f"process + the master ({_mib(master)}) leaves {_mib(shared)} per process"
        if w > 0
        else f"{_mib(settings.memory)} for one threaded process"
    )
    needed = master + processes * (settings.worker_memory or WORKER_SOFT_SAMPLE)
    fix = (
        f"set resource_limits.memory to at least {_gib(needed)} for {where} (or fewer "
        "workers / max_cron_threads, or an explicit resource_limits.worker_memory)"
    )
    if settings.worker_memory is not None and settings.worker_memory > shared:
        raise MemoryTooSmall(
            f"{where}: worker_memory {_mib(settings.worker_memory)} does not fit: {arithmetic}",
            action=fix,
        )
    if settings.worker_memory is None and shared < WORKER_SOFT_SAMPLE:
        raise MemoryTooSmall(
            f"{where}: {arithmetic}, under Odoo's sample of {_mib(WORKER_SOFT_SAMPLE)} per worker",
            action=fix,
        )
    return OdooMemory(processes, soft, int(soft * HARD_PER_SOFT))


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f}Mi"


def _gib(size: int) -> str:
    return f"{-(-size // 2**28) / 4:g}Gi"  # rounded up to a quarter GiB


def _retention(raw: Mapping[str, Any]) -> Retention:
    return Retention(
        days=None if raw.get("days") is None else int(raw["days"]),
        daily=int(raw.get("daily", 0)),
        weekly=int(raw.get("weekly", 0)),
        monthly=int(raw.get("monthly", 0)),
    )


def rule_for(policies: Policies, branch: str) -> BranchRule | None:
    """First matching rule wins (rules are ordered; validation rejects ambiguous ones)."""
    for rule in policies.rules:
        if globs.matches(rule.match, branch):
            return rule
    return None


def tier_for(policies: Policies, branch: str) -> Tier:
    """The tier of an environment file without ``tier``: the first rule matching its branch,
    else dev."""
    rule = rule_for(policies, branch)
    return rule.tier if rule is not None else Tier.DEV


_NOT_NAME = re.compile(r"[^a-z0-9]+")


def env_name_for_branch(branch: str, max_len: int = 30) -> str:
    """``feature/CRM_reports`` -> ``feature-crm-reports``: DNS- and database-safe, stable."""
    name = _NOT_NAME.sub("-", branch.lower()).strip("-")[:max_len].rstrip("-")
    if not name or not name[0].isalpha():
        name = ("b-" + name)[:max_len].rstrip("-")
    return name


def hashed_env_name(branch: str, max_len: int = 30) -> str:
    """The branch's name, shortened, with 6 hex digits of a hash of the whole branch:
    ``feature-crm-3f2a1c``. Stable (a function of the branch alone) and distinct for two
    branches whose plain names are the same."""
    digest = hashlib.sha256(branch.encode()).hexdigest()[:6]
    return f"{env_name_for_branch(branch, max_len - 7)}-{digest}"


def _reads_as_its_name(branch: str) -> bool:
    """``feature/crm`` reads as ``feature-crm``; ``feature/CRM`` and long branches do not."""
    return branch.replace("/", "-") == env_name_for_branch(branch)


def auto_environments(
    project: str,
    policies: Policies,
    branches: Mapping[str, str],
    declared: Iterable[EnvironmentSpec],
    owners: Mapping[str, str],
) -> list[EnvironmentSpec]:
    """Environments that branch rules with ``auto_create`` call for and no file declares.

    A file always wins for its branch; a generated name never takes over a declared one. Two
    branches can make one name (``feature/CRM`` and ``feature/crm``, or two long branches cut
    at 30 characters): none is dropped. The branch that reads as the name keeps it, then the
    first in order; the others, and a branch whose name a file already took, get the name
    with a hash of the branch (``hashed_env_name``), the same on every pass.
    """
    taken_branches = {s.branch for s in declared if s.key.project == project}
    taken_names = {s.key.env for s in declared if s.key.project == project}
    out: list[EnvironmentSpec] = []
    for branch in sorted(branches, key=lambda b: (not _reads_as_its_name(b), b)):
        rule = rule_for(policies, branch)
        if rule is None or not rule.auto_create or branch in taken_branches:
            continue
        name = env_name_for_branch(branch)
        if name in taken_names:
            name = hashed_env_name(branch)
        if name in taken_names:  # only a file declaring this very name: it wins
            continue
        taken_names.add(name)
        out.append(
            EnvironmentSpec(
                key=EnvKey(project, name),
                branch=branch,
                tier=rule.tier,
                revision="track",
                protected=rule.tier in policies.protected_tiers,
                suspended=False,
                owner=owners.get(branch),
                overrides={},
                origin="branch",
            )
        )
    return out


def over_quota(specs: Iterable[EnvironmentSpec], per_user: int) -> dict[EnvKey, str]:
    """Dev-tier environments beyond an owner's quota, oldest names kept first (stable order).

    Returns the held environments with the reason, so the caller can report them.
    """
    counts: dict[str, int] = {}
    held: dict[EnvKey, str] = {}
    for spec in sorted(specs, key=lambda s: (s.origin != "file", s.key)):
        if not counts_for_owner(spec):
            continue
        assert spec.owner is not None
        counts[spec.owner] = counts.get(spec.owner, 0) + 1
        if counts[spec.owner] > per_user:
            held[spec.key] = (
                f"owner {spec.owner} already has {per_user} dev environments "
                f"(quotas.dev_environments_per_user)"
            )
    return held


def counts_for_owner(spec: EnvironmentSpec) -> bool:
    """Whether ``spec`` counts in its owner's ``quotas.dev_environments_per_user``: a dev or
    ephemeral environment with an owner, asleep or not, that is not a pull request's preview
    (previews count per project, in ``previews.max_per_project``)."""
    return spec.tier.dedicated_database and spec.owner is not None and spec.preview is None


class QuotaExceeded(OdooOpsError):
    code = "quota_exceeded"


def check_dev_quota(
    specs: Iterable[EnvironmentSpec], owner: str, tier: Tier, per_user: int
) -> None:
    """Refuse a new dev or ephemeral environment for ``owner`` when they have ``per_user``
    already (``quota_exceeded``, naming the limit and the environments that count)."""
    if not tier.dedicated_database:
        return
    mine = sorted(str(s.key) for s in specs if counts_for_owner(s) and s.owner == owner)
    if len(mine) >= per_user:
        raise QuotaExceeded(
            f"{owner} has {len(mine)} dev environments, the most quotas."
            f"dev_environments_per_user allows ({per_user}): {', '.join(mine)} (dev and "
            "ephemeral environments they own count, asleep or not; previews count per project)",
            remediation=f"odooops destroy {mine[0] if mine else 'PROJECT/ENV'}  (or raise "
            "quotas.dev_environments_per_user in odooops.yaml)",
        )
