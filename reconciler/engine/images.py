"""Image garbage collection: what the daemon keeps and why, and the removal of the rest.

The decision is ``reconciler.core.imagegc.judge``'s, a pure function; this module gathers its
facts (the engine's images and containers, the ledger's deployments and builds, the desired
state), removes what it says once a day and on demand, and records, as steps finish, the facts
the next decision rests on: which images this daemon built, and which image each environment
was switched to. Those come from the ledger, never from labels: an image's labels are written
by whoever builds it, an app's own Dockerfile included.

A run removes by image id and never forces, so an image a container starts to use between the
look and the removal is refused by the engine itself and kept. A run that fails (the engine
away) is logged and tried again at the next check; it never stops the daemon.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.core.errors import ErrorInfo, OdooOpsError
from reconciler.core.imagegc import POLICY, Deployment, Facts, ImageVerdict, Policy, judge
from reconciler.core.model import Desired, DesiredEnvironment
from reconciler.core.planner import Kind
from reconciler.drivers.protocols import Runtime
from reconciler.engine.ledger import Ledger

log = logging.getLogger("odooops.images")

TASK = "image-gc"
EVERY = timedelta(days=1)
# A step after which an environment's Odoo container runs the desired image.
ROLLOUTS = frozenset({Kind.CREATE_ODOO, Kind.REPLACE_ODOO, Kind.FINISH_ROLLOUT})


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Collection:
    """One look (``dry_run``: what a run would remove) or one run: every verdict, what was
    removed, and what the engine refused to remove, with its error."""

    at: datetime
    dry_run: bool
    verdicts: tuple[ImageVerdict, ...]
    removed: tuple[ImageVerdict, ...] = ()
    failed: tuple[tuple[ImageVerdict, ErrorInfo], ...] = ()
    last_run: datetime | None = None
    policy: Policy = POLICY


class ImageCollector:
    """Lists and collects the images of one daemon instance; one run at a time."""

    def __init__(
        self,
        runtime: Runtime,
        ledger: Ledger,
        desired: Callable[[], Desired | None],
        clock: Callable[[], datetime] = _utcnow,
        policy: Policy = POLICY,
    ) -> None:
        self.runtime, self.ledger = runtime, ledger
        self._desired, self._clock, self.policy = desired, clock, policy
        self._lock = threading.Lock()

    def report(self, shared: bool = True) -> Collection:
        """Every image with what keeps it and when it would go; nothing is removed."""
        now = self._clock()
        facts, _built = self._facts(shared)
        return Collection(
            now,
            True,
            judge(facts, now, self.policy),
            last_run=self.ledger.last_run(TASK),
            policy=self.policy,
        )

    def collect_if_due(self) -> Collection | None:
        """A run when the last one is a day old or more (level-triggered: a restart neither
        loses the day nor runs it twice); None when not due."""
        last = self.ledger.last_run(TASK)
        if last is not None and self._clock() - last < EVERY:
            return None
        return self.collect()

    def collect(self, dry_run: bool = False) -> Collection:
        """Remove every image the policy does not keep (``dry_run``: say which); each removal
        and each refusal is logged. Raises only when the engine cannot be listed."""
        with self._lock:
            now = self._clock()
            facts, built = self._facts(shared=True)  # what each removal frees, for the log
            verdicts = judge(facts, now, self.policy)
            removed: list[ImageVerdict] = []
            failed: list[tuple[ImageVerdict, ErrorInfo]] = []
            for verdict in verdicts:
                if not verdict.remove or dry_run:
                    continue
                try:
                    self.runtime.remove_image(verdict.image.id)
                except OdooOpsError as exc:
                    failed.append((verdict, ErrorInfo.of(exc)))
                    log.warning("image %s kept: %s", _name(verdict), exc.message)
                    continue
                removed.append(verdict)
                log.info(
                    "removed image %s (%s, %s MB of its own): last in use or built %s, not "
                    "among the last %d deployed of any environment",
                    _name(verdict),
                    verdict.image.id[:19],
                    _own(verdict) // 2**20,
                    f"{verdict.last_used:%Y-%m-%d}",
                    self.policy.keep_deployed,
                )
            if not dry_run:
                # Records of images that are gone (removed here or by hand); ``built`` was read
                # before the listing, so an image built meanwhile keeps its record.
                listed = {i.id for i in facts.images}
                self.ledger.forget_built(
                    {v.image.id for v in removed} | {i for i in built if i not in listed}
                )
                self.ledger.put_last_run(TASK, now)
                if removed or failed:
                    log.info(
                        "image collection: %d removed (%d MB), %d refused by the engine, %d kept",
                        len(removed),
                        sum(_own(v) for v in removed) // 2**20,
                        len(failed),
                        len(verdicts) - len(removed) - len(failed),
                    )
            return Collection(
                now,
                dry_run,
                verdicts,
                tuple(removed),
                tuple(failed),
                now if not dry_run else self.ledger.last_run(TASK),
                self.policy,
            )

    def _facts(self, shared: bool) -> tuple[Facts, frozenset[str]]:
        """The ledger's records first, then the engine's listing (see ``collect``)."""
        built = frozenset(self.ledger.built())
        history = tuple(self.ledger.deployments())
        desired = self._desired()
        listing = self.runtime.list_images(shared=shared)
        environments: frozenset[str] | None = None
        wanted: dict[str, set[str]] = {}
        if desired is not None:
            live = self.runtime.observe()
            environments = frozenset(
                str(k)
                for k in (
                    *desired.environments,
                    *desired.held,
                    *live.networks,
                    *live.containers,
                    *live.volumes,
                )
            )
            for key, want in desired.environments.items():
                for tag in _images_of(want):
                    wanted.setdefault(tag, set()).add(str(key))
        facts = Facts(
            images=listing.images,
            users=listing.users,
            history=history,
            built=built,
            environments=environments,
            wanted={tag: tuple(sorted(envs)) for tag, envs in wanted.items()},
        )
        return facts, built


def record(runtime: Runtime, ledger: Ledger, want: DesiredEnvironment, kind: Kind) -> None:
    """After a step that did its work: a build makes its images this daemon's own, a rollout
    adds to the environment's deployment history. Never raises: the step succeeded, and a
    missing record only makes the collector keep (an image not recorded as built is not
    ours) or lose one rollback image sooner."""
    try:
        if kind is Kind.BUILD_IMAGE:
            for tag in _images_of(want):
                ledger.put_built(runtime.image_id(tag, pull=False), tag, want.project.name)
        elif kind in ROLLOUTS:
            ledger.put_deployment(
                Deployment(
                    env=str(want.key),
                    image=want.image,
                    image_id=runtime.image_id(want.image, pull=False),
                    revision=want.revision,
                    at=_utcnow(),
                    base=want.build.app_base if want.build is not None else "",
                ),
                state_commit=want.state_commit,
            )
    except (OdooOpsError, sqlite3.Error) as exc:
        log.warning("%s: image record after %s not written: %s", want.key, kind.value, str(exc))


# Errors that say nothing about the revision being deployed: the run was cut short.
NOT_JUDGED = frozenset({"superseded", "interrupted"})


def record_outcome(
    runtime: Runtime,
    ledger: Ledger,
    want: DesiredEnvironment,
    deploying: bool,
    ready: bool,
    error: OdooOpsError | None,
) -> None:
    """When a run ends, the outcome of the deployment it was about (``reconciler.core.history``):
    Ready on the revision makes it healthy; a failed run that was deploying records the
    failure (on the switched deployment, or as an attempt that never served). Never raises:
    the history is an account, and the run's own status says the same."""
    try:
        if error is None:
            if ready:
                ledger.judge(want.key, want.revision, _utcnow())
            return
        if not deploying or error.code in NOT_JUDGED:
            return
        image_id = ""
        if runtime.has_image(want.image):
            image_id = runtime.image_id(want.image, pull=False)
        ledger.put_attempt(
            Deployment(
                env=str(want.key),
                image=want.image,
                image_id=image_id,
                revision=want.revision,
                at=_utcnow(),
                base=want.build.app_base if want.build is not None else "",
            ),
            f"{error.code}: {error.message.splitlines()[0] if error.message else ''}",
            state_commit=want.state_commit,
        )
    except (OdooOpsError, sqlite3.Error) as exc:
        # The text, not the error: a log record keeps its arguments (pytest's, for the whole
        # session), and an error keeps its traceback, its frames and the sockets they held.
        log.warning("%s: the deployment's outcome not recorded: %s", want.key, str(exc))


def _images_of(want: DesiredEnvironment) -> tuple[str, ...]:
    """The environment's image, and the app's own base image it is built on, if any."""
    base = want.build.app_base if want.build is not None else ""
    return (want.image, base) if base else (want.image,)


def _name(verdict: ImageVerdict) -> str:
    return ", ".join(verdict.image.tags) or verdict.image.id[:19]


def _own(verdict: ImageVerdict) -> int:
    return max(0, verdict.image.size - (verdict.image.shared_size or 0))


def describe(collection: Collection) -> dict[str, Any]:
    """The listing as the API and the CLI show it (``GET /v1/images``)."""
    return {
        "at": collection.at.isoformat(timespec="seconds"),
        "last_run": collection.last_run.isoformat(timespec="seconds")
        if collection.last_run
        else None,
        "policy": {
            "keep_deployed": collection.policy.keep_deployed,
            "min_age_days": collection.policy.min_age.total_seconds() / 86400,
        },
        "items": [image_doc(v) for v in collection.verdicts],
    }


def prune_doc(collection: Collection) -> dict[str, Any]:
    """A run as the API and the CLI show it (``POST /v1/images/prune``): with ``dry_run``,
    ``removed`` lists what a run would remove."""
    removed = [v for v in collection.verdicts if v.remove] if collection.dry_run else []
    return {
        "dry_run": collection.dry_run,
        "removed": [image_doc(v) for v in (removed or collection.removed)],
        "failed": [
            {"image": image_doc(v), "error": {"code": e.code, "message": e.message}}
            for v, e in collection.failed
        ],
        "freed": sum(_own(v) for v in (removed or collection.removed)),
        "kept": sum(1 for v in collection.verdicts if not v.remove),
    }


def image_doc(verdict: ImageVerdict) -> dict[str, Any]:
    image = verdict.image
    return {
        "id": image.id,
        "tags": list(image.tags),
        "project": image.project,
        "created": image.created.isoformat(timespec="seconds"),
        "size": image.size,
        "shared_size": image.shared_size,
        "used_by": list(verdict.used_by),
        "wanted_by": list(verdict.wanted_by),
        "kept_for_rollback_by": list(verdict.rollback_for),
        "kept": [{"reason": k.reason.value, "message": k.message} for k in verdict.kept],
        "last_used": verdict.last_used.isoformat(timespec="seconds"),
        "collect_at": verdict.collect_at.isoformat(timespec="seconds")
        if verdict.collect_at
        else None,
    }
