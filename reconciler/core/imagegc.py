"""Which images to remove, and why every other one stays: a pure function of what was seen.

Builds are content addressed, so every commit leaves an image behind (an Odoo image with its
Python dependencies is a gigabyte or two), and a host that deploys a few times a day fills its
disk in weeks. Removing them blindly would break two promises: a rollback to one of the last
deployed revisions needs no build, and a daemon never touches what is not its own. So each
image is judged on facts, never on a guess:

- an image any container uses, running or stopped, of any daemon instance or none, stays
  (Docker refuses to remove it anyway; deciding it here lets the listing say so);
- an image an environment's desired state names stays: a rollout may be about to create its
  container (a rollback to an old commit asks for the old image);
- the last ``keep_deployed`` distinct images deployed to each environment that still exists
  stay, for a rollback;
- an image built or last in use less than ``min_age`` ago stays (a review of yesterday's
  commit should not cost a rebuild);
- an image the daemon's ledger does not record as built or deployed by it stays: the labels
  that say "built by OdooOps" are written by whoever runs the build (an app's own Dockerfile
  can set them too), and another instance on the same engine builds the same names.

Ownership is matched by image id only (the ledger's word); keeping is matched by id or tag,
since keeping too much is safe and a tag names what a rollback would run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

KEEP_DEPLOYED = 10
MIN_AGE = timedelta(days=7)


@dataclass(frozen=True)
class Policy:
    """How many deployed images each environment keeps, and how old an unused one must be."""

    keep_deployed: int = KEEP_DEPLOYED
    min_age: timedelta = MIN_AGE


POLICY = Policy()


@dataclass(frozen=True)
class Image:
    """One image as the engine lists it. ``size`` counts the layers it shares with others,
    ``shared_size`` is those shared bytes (None when the engine does not say). ``project`` is
    its label: shown to humans, never used to decide."""

    id: str
    tags: tuple[str, ...]
    created: datetime
    size: int
    shared_size: int | None = None
    project: str = ""


@dataclass(frozen=True)
class Deployment:
    """An environment's Odoo container was switched to ``image`` (tag) at ``at``, from the
    ledger. ``base`` is the app's own base image the image was built on ("" if none): kept
    with it, so a rebuild of the next commit on the same base is a cache hit."""

    env: str
    image: str
    image_id: str
    revision: str
    at: datetime
    base: str = ""


@dataclass(frozen=True)
class Facts:
    """One look at the engine and the ledger.

    ``users``: image id -> who uses it (environments, or container names of other owners).
    ``built``: image ids the ledger records this daemon built.
    ``environments``: the environments that exist (declared, held, or with live objects);
    None counts every environment of the history (no state to say which are gone).
    ``wanted``: image tag -> environments whose desired state names it.
    """

    images: tuple[Image, ...]
    users: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    history: tuple[Deployment, ...] = ()
    built: frozenset[str] = frozenset()
    environments: frozenset[str] | None = None
    wanted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Reason(StrEnum):
    """Why an image is kept; an image with none is removed."""

    NOT_OURS = "not-ours"
    IN_USE = "in-use"
    WANTED = "wanted"
    ROLLBACK = "rollback"
    YOUNG = "young"


@dataclass(frozen=True)
class Kept:
    reason: Reason
    message: str


@dataclass(frozen=True)
class ImageVerdict:
    """What becomes of one image, and everything the listing shows about it.

    ``collect_at``: when it goes if nothing changes: ``now`` when removed, the end of its
    ``min_age`` when only its age keeps it, None while anything else keeps it.
    """

    image: Image
    kept: tuple[Kept, ...]
    used_by: tuple[str, ...]
    wanted_by: tuple[str, ...]
    rollback_for: tuple[str, ...]
    last_used: datetime
    collect_at: datetime | None

    @property
    def remove(self) -> bool:
        return not self.kept

    @property
    def reasons(self) -> frozenset[Reason]:
        return frozenset(k.reason for k in self.kept)


def judge(facts: Facts, now: datetime, policy: Policy = POLICY) -> tuple[ImageVerdict, ...]:
    """Every image of ``facts``, oldest first, with what keeps it (nothing: removed)."""
    ours = facts.built | {d.image_id for d in facts.history if d.image_id}
    timelines = _timelines(facts.history)
    rollback_ids, rollback_tags = _rollback(timelines, facts.environments, policy.keep_deployed)
    ended_ids, ended_tags = _last_use(timelines)
    verdicts = []
    for image in sorted(facts.images, key=lambda i: (i.created, i.id)):
        used_by = tuple(sorted(facts.users.get(image.id, ())))
        wanted_by = _union(facts.wanted.get(t, ()) for t in image.tags)
        rollback_for = _union(
            [rollback_ids.get(image.id, ()), *(rollback_tags.get(t, ()) for t in image.tags)]
        )
        last_used = max(
            [image.created, *ended_ids.get(image.id, ())]
            + [at for t in image.tags for at in ended_tags.get(t, ())]
        )
        young_until = last_used + policy.min_age
        kept: list[Kept] = []
        if image.id not in ours:
            kept.append(
                Kept(
                    Reason.NOT_OURS,
                    "not built or deployed by this daemon (its ledger has no record of it): "
                    "another instance's, or made by something else",
                )
            )
        if used_by:
            kept.append(Kept(Reason.IN_USE, f"in use by {', '.join(used_by)}"))
        if wanted_by:
            kept.append(Kept(Reason.WANTED, f"the desired image of {', '.join(wanted_by)}"))
        if rollback_for:
            kept.append(
                Kept(
                    Reason.ROLLBACK,
                    f"among the last {policy.keep_deployed} deployed of {', '.join(rollback_for)}",
                )
            )
        if now < young_until:
            kept.append(
                Kept(
                    Reason.YOUNG,
                    f"younger than {_days(policy.min_age)} (built or last in use "
                    f"{last_used:%Y-%m-%d %H:%M})",
                )
            )
        reasons = {k.reason for k in kept}
        if not kept:
            collect_at: datetime | None = now
        elif reasons == {Reason.YOUNG}:
            collect_at = young_until
        else:
            collect_at = None
        verdicts.append(
            ImageVerdict(
                image,
                tuple(kept),
                used_by,
                wanted_by,
                rollback_for,
                last_used,
                collect_at,
            )
        )
    return tuple(verdicts)


def _timelines(history: Iterable[Deployment]) -> dict[str, list[Deployment]]:
    """Each environment's deployments, oldest first (a stable sort keeps the ledger's order
    between two of the same second)."""
    by_env: dict[str, list[Deployment]] = {}
    for d in history:
        by_env.setdefault(d.env, []).append(d)
    return {env: sorted(ds, key=lambda d: d.at) for env, ds in by_env.items()}


def _same(a: Deployment, b: Deployment) -> bool:
    return a.image_id == b.image_id if a.image_id and b.image_id else a.image == b.image


def _rollback(
    timelines: Mapping[str, Sequence[Deployment]],
    environments: frozenset[str] | None,
    keep: int,
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Image ids and tags (with their bases) among the last ``keep`` distinct images of each
    existing environment: a redeploy of the same image (a setting changed) takes no slot."""
    ids: dict[str, set[str]] = {}
    tags: dict[str, set[str]] = {}
    for env, timeline in timelines.items():
        if environments is not None and env not in environments:
            continue  # the environment is gone: nothing to roll back
        chosen: list[Deployment] = []
        for d in reversed(timeline):
            if len(chosen) == keep:
                break
            if not any(_same(d, c) for c in chosen):
                chosen.append(d)
        for d in chosen:
            if d.image_id:
                ids.setdefault(d.image_id, set()).add(env)
            for tag in (d.image, d.base):
                if tag:
                    tags.setdefault(tag, set()).add(env)
    return _sorted(ids), _sorted(tags)


def _last_use(
    timelines: Mapping[str, Sequence[Deployment]],
) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
    """When each deployed image (by id and by tag, and its base) stopped being used: the next
    deployment of another image in the same environment, or its own deployment when none
    followed (then it is in use, which keeps it anyway, or its environment is gone)."""
    ids: dict[str, list[datetime]] = {}
    tags: dict[str, list[datetime]] = {}
    for timeline in timelines.values():
        for i, d in enumerate(timeline):
            ended = next((n.at for n in timeline[i + 1 :] if not _same(n, d)), d.at)
            if d.image_id:
                ids.setdefault(d.image_id, []).append(ended)
            for tag in (d.image, d.base):
                if tag:
                    tags.setdefault(tag, []).append(ended)
    return ids, tags


def _sorted(found: Mapping[str, set[str]]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(sorted(v)) for k, v in found.items()}


def _union(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(sorted({x for g in groups for x in g}))


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g} day" + ("" if days == 1 else "s")
