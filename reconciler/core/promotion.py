"""Promotion: what one environment runs, pinned onto another, only once it has earned it.

Promoting copies *what SRC serves*, not what SRC declares: a tracking staging's branch head
may have moved past the commit that passed its gates, and promoting the head would ship an
untested commit. So the decision starts from a ``Release`` (the daemon's view of what SRC
runs: its status, the image it deployed, its test gate) and refuses, with the reason, unless
SRC is healthy and synced at that commit and, when its tier is gated by ``tests``, the gate of
that very image passed.

Everything here is pure: the view is gathered by the engine (``reconciler.engine.releases``)
and the commit is made by the state writer; the API, the CLI and the daemon's automatic rules
(``promote`` in policies.yaml) all decide through ``decide``, so they refuse alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import DesiredEnvironment, EnvironmentSpec, EnvKey, PromoteRule

PROMOTED_FROM = "Promoted-From"
IMAGE = "Image"


class PromotionRefused(OdooOpsError):
    """SRC has not earned promotion: not serving, not healthy, not synced, or untested."""

    code = "promotion_refused"


class PromotionInvalid(OdooOpsError):
    """The promotion itself makes no sense (across projects, onto itself)."""

    code = "invalid_promotion"


@dataclass(frozen=True)
class Release:
    """What an environment runs now, as the daemon last saw it.

    ``gated`` says whether its tier is gated by ``tests``; ``tested`` whether the gate of the
    image it serves passed (meaningless when not gated). ``image`` is "" when the daemon has
    no record of the image of the serving commit (a restart before any deployment)."""

    key: EnvKey
    serving: str  # the commit of the running Odoo ("" when none runs)
    wanted: str  # the commit the state asks for
    image: str  # odooops/<project>:<key16> of ``serving``
    health: str
    sync: str
    gated: bool
    tested: bool
    ready: bool = True  # the Ready condition holds (no hold, no failure of the last run)
    # Each addon of ``serving`` with the git tree of its folder; () when not known.
    addons: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Promotion:
    """One decided promotion: pin ``target`` to ``revision`` (``image``) served by ``source``."""

    source: EnvKey
    target: EnvKey
    revision: str
    image: str
    previous: str  # the target's declared revision before ("track" or a commit)
    # The addons whose folder differs from what the target serves (None: not known).
    modules: tuple[str, ...] | None = None

    @property
    def changes(self) -> bool:
        return self.previous != self.revision

    @property
    def title(self) -> str:
        """The commit's title: the same promotion always reads the same (the daemon's rules
        find their own open change request by it)."""
        return f"feat(promote): promote {self.source}@{self.revision[:12]} to {self.target}"

    def trailers(self) -> tuple[tuple[str, str], ...]:
        """What git log keeps of the promotion beside the pin: where from, which image."""
        return ((PROMOTED_FROM, f"{self.source}@{self.revision}"), (IMAGE, self.image))

    def fields(self) -> dict[str, Any]:
        """The merge patch of the target's file: the pin, and where it came from (the image
        the daemon then checks the target resolves to)."""
        promoted = {"from": str(self.source), "revision": self.revision, "image": self.image}
        return {"revision": self.revision, "promoted": promoted}

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": str(self.source),
            "to": str(self.target),
            "revision": self.revision,
            "image": self.image,
            "previous": self.previous,
            "changes": self.changes,
            "modules": list(self.modules) if self.modules is not None else None,
        }


def decide(
    release: Release | None,
    source: EnvKey,
    target: EnvironmentSpec,
    serving: Release | None = None,
) -> Promotion:
    """The promotion of what ``source`` serves onto ``target``, or why not (raises).
    ``serving`` is what the target runs, when known: it names the modules that change."""
    if source.project != target.key.project:
        raise PromotionInvalid(
            f"{source} and {target.key} are in different projects: a promotion stays within "
            "one application repository",
            remediation=f"odooops promote {target.key.project}/ENV {target.key}",
        )
    if source == target.key:
        raise PromotionInvalid(
            f"{source} cannot be promoted onto itself",
            remediation=f"odooops promote {source.project}/staging {target.key}",
        )
    status = f"odooops status {source}"
    if release is None or not release.serving:
        raise PromotionRefused(
            f"{source} serves nothing yet: there is no revision to promote",
            remediation=status,
        )
    why = _unearned(release)
    if why:
        raise PromotionRefused(
            f"{source} cannot be promoted: {why}; {target.key} is left as it is",
            remediation=status,
        )
    modules = None
    if release.addons and serving is not None and serving.addons:
        before = dict(serving.addons)
        modules = tuple(sorted(name for name, tree in release.addons if before.get(name) != tree))
    return Promotion(source, target.key, release.serving, release.image, target.revision, modules)


def _unearned(r: Release) -> str:
    """Why ``r`` is not promotable, or ""."""
    at = r.serving[:12]
    if r.health != "Healthy":
        return f"it is {r.health}, not Healthy, at {at}"
    if r.sync != "Synced" or r.wanted != r.serving:
        wanted = r.wanted[:12] or "an unresolved revision"
        return f"it is not synced: it serves {at} while its state asks for {wanted}"
    if not r.ready:
        return f"its last run at {at} did not succeed (its Ready condition is false)"
    if not r.image:
        return f"the daemon has no record of the image it serves at {at}"
    if r.gated and not r.tested:
        return (
            f"its tier is gated by tests and the tests of {r.image} (at {at}) have not passed there"
        )
    return ""


def rule_pairs(
    rules: Iterable[PromoteRule], environments: Iterable[EnvironmentSpec]
) -> list[tuple[PromoteRule, EnvKey, EnvironmentSpec]]:
    """Each (rule, source, target) the rules name: ``from``/``to`` are environment names,
    paired within each project that has both (a project without one of them has no pair)."""
    by_key: Mapping[EnvKey, EnvironmentSpec] = {s.key: s for s in environments}
    projects = sorted({k.project for k in by_key})
    pairs = []
    for rule in rules:
        for project in projects:
            source, target = EnvKey(project, rule.source), EnvKey(project, rule.target)
            if source in by_key and target in by_key:
                pairs.append((rule, source, by_key[target]))
    return pairs


@dataclass(frozen=True)
class ImageCheck:
    """Whether a promoted environment runs the image its source was vetted with."""

    same: bool
    reason: str  # SameImage, ImageDiffers
    message: str


def image_check(want: DesiredEnvironment) -> ImageCheck | None:
    """The promoted image against the one ``want`` resolves to, while ``want`` is still at
    the promoted revision (None otherwise: a later deploy moved it on).

    The image key hashes the commit's tree with the base image, the lock files and the
    recipe: a target whose project or base image differs builds another image from the same
    commit, which the source's gates never saw."""
    promoted = want.spec.promoted
    if promoted is None or promoted.revision != want.revision:
        return None
    at = f"{promoted.source}@{promoted.revision[:12]}"
    if want.image == promoted.image:
        return ImageCheck(True, "SameImage", f"runs {want.image}, as {at} did")
    return ImageCheck(
        False,
        "ImageDiffers",
        f"resolves to {want.image}, not {promoted.image} that {at} ran and was vetted with: "
        "its base image, lock files or build recipe differ",
    )
