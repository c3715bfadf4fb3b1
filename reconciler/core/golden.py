"""The golden copy: what it is called, who needs one, which copies go through it, when it is due.

Masking a production-sized database takes minutes (1 M partners: over a minute) while a
template copy of 1 GB takes about two seconds. So, with ``golden`` in policies.yaml, the
platform keeps one neutralised, masked copy per production environment that something copies
from, the *golden copy*, and every masked copy of that environment is a template copy of it:
masking runs once per refresh, never once per copy.

Everything here is pure (no I/O): the data plane (``reconciler.data.golden``) builds, swaps
and drops golden copies; this module only decides.

Names: an environment's database is ``<project>__<env>`` and project and environment names
never contain ``_``, so every environment's database name holds a ``__``. A golden copy's
name never does (``odooops_golden_<hash>``), and it is recorded in the ledger's own golden
table, never among the environments' databases: the planner, which only ever considers the
names of declared environments and the databases the ledger records for environments, can
neither prune nor adopt nor serve it (an Odoo container serves ``--db-filter=^<its db>$``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.core.model import Desired, EnvKey, GoldenPolicy, Policies, Tier

PREFIX = "odooops_golden_"
SCRATCH_PREFIX = "odooops_tmp_"
OLD_PREFIX = "odooops_old_"


@dataclass(frozen=True)
class GoldenNames:
    """The names of one golden copy and of one refresh of it (``tag``: random per refresh,
    so a refresh never drops what another one, or a journal entry, refers to).

    The filestore lives in the source's own volume, at ``filestore/<database>``: it is made
    of hard links to production's files (Odoo never rewrites a file in place), never written
    by anyone, and copied (never linked) into a target's volume."""

    source: EnvKey
    database: str  # the golden copy, and its filestore directory
    scratch: str  # a refresh builds the new copy here (database and filestore directory)
    old: str  # where the previous copy goes during the swap
    fs_old: str  # where the previous filestore directory goes during the swap

    @classmethod
    def of(cls, source: EnvKey, tag: str = "") -> GoldenNames:
        base = _base(source)
        return cls(
            source=source,
            database=f"{PREFIX}{base}",
            scratch=f"{SCRATCH_PREFIX}g{base}_{tag}",
            old=f"{OLD_PREFIX}g{base}_{tag}",
            fs_old=f"{PREFIX}{base}.old-{tag}",
        )


def golden_database(source: EnvKey) -> str:
    """The golden copy's database name for the production environment ``source``."""
    return GoldenNames.of(source).database


def _base(source: EnvKey) -> str:
    # A hash, not the names: "a-b"/"c" and "a"/"b-c" both give a_b_c once "-" is "_".
    return hashlib.sha256(str(source).encode()).hexdigest()[:12]


def is_golden(name: str) -> bool:
    """Whether a database name is a golden copy's (never an environment's: no ``__``)."""
    return name.startswith(PREFIX) and "__" not in name


def through_golden(
    policies: Policies, source_tier: Tier, target_tier: Tier, target_masked: bool
) -> bool:
    """Whether a copy goes through the golden copy of its source: the policy keeps golden
    copies, the source is production and the target is not, and the target is masked (a
    target that asked for unmasked data, ``mask: false``, is copied and neutralised
    directly: the golden copy is masked)."""
    return (
        policies.golden is not None
        and source_tier is Tier.PRODUCTION
        and target_tier is not Tier.PRODUCTION
        and target_masked
    )


def wanted(desired: Desired, policies: Policies) -> dict[EnvKey, tuple[str, ...]]:
    """The production environments that get a golden copy, each with why: the non-production
    environments that copy it (``db.source``), and the previews policy's ``copy-of``, so the
    golden copy is ready before the first preview asks for it."""
    if policies.golden is None:
        return {}
    out: dict[EnvKey, list[str]] = {}
    envs = desired.environments
    for key, want in sorted(envs.items()):
        spec = want.spec
        if spec.db_source == "fresh":
            continue
        source = EnvKey(key.project, spec.db_source)
        have = envs.get(source)
        if have is None or not through_golden(policies, have.spec.tier, spec.tier, spec.mask):
            continue
        out.setdefault(source, []).append(f"copied by {key.env}")
    previews = policies.previews
    if previews is not None and previews.seed != "demo":
        for key, want in sorted(envs.items()):
            if key.env == previews.seed and want.spec.tier is Tier.PRODUCTION:
                out.setdefault(key, []).append("the previews' seed")
    return {key: tuple(why) for key, why in out.items()}


@dataclass(frozen=True)
class GoldenState:
    """What the ledger records of a golden copy at its last refresh."""

    refreshed_at: datetime
    revision: str  # the production revision its data was at


def refresh_due(
    policy: GoldenPolicy,
    state: GoldenState | None,
    source_revision: str,
    schedule_due: bool,
) -> str | None:
    """Why the golden copy should be made again now, or None.

    ``schedule_due`` is the policy's schedule asked about ``state.refreshed_at`` (the
    schedules module owns cron arithmetic). A production update is seen as a new revision of
    its database: the copy then brings the updated modules' data."""
    if state is None:
        return "there is no golden copy yet"
    if source_revision and state.revision and source_revision != state.revision:
        return (
            f"production was updated to {source_revision[:12]} (the golden copy is at "
            f"{state.revision[:12]})"
        )
    if schedule_due:
        return f"scheduled (refresh: {policy.refresh})"
    return None


RETRY_FIRST = timedelta(minutes=5)
RETRY_MAX = timedelta(hours=6)


def retry_after(failures: int) -> timedelta:
    """How long a golden copy whose refresh failed ``failures`` times in a row waits before
    the next try: a refresh streams all of production, so a cause that persists (an image
    not built, a full disk) must not make it do so every minute. 5 min, doubling, 6 h at most."""
    if failures <= 0:
        return timedelta(0)
    return min(RETRY_FIRST * (1 << min(failures - 1, 16)), RETRY_MAX)


def state_of(doc: Mapping[str, object] | None) -> GoldenState | None:
    """The ledger's golden record as a ``GoldenState`` (None: no golden copy)."""
    if doc is None or not doc.get("refreshed_at"):
        return None
    return GoldenState(
        refreshed_at=datetime.fromisoformat(str(doc["refreshed_at"])),
        revision=str(doc.get("revision", "")),
    )


__all__ = [
    "GoldenNames",
    "GoldenState",
    "golden_database",
    "is_golden",
    "refresh_due",
    "retry_after",
    "state_of",
    "through_golden",
    "wanted",
]
