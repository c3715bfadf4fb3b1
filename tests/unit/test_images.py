"""The image collector and its records in the ledger, on the in-memory runtime, a fake clock."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler.core.errors import DriverError, OdooOpsError
from reconciler.core.imagegc import Deployment, Reason
from reconciler.core.model import Desired, EnvKey, Tier
from reconciler.drivers.memory import MemoryContainer, MemoryRuntime
from reconciler.drivers.protocols import ImageListing
from reconciler.engine.daemon import Daemon
from reconciler.engine.images import TASK, ImageCollector, describe, prune_doc
from reconciler.engine.ledger import Ledger
from tests.factories import desired
from tests.unit.test_steps import World

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MAIN = EnvKey("acme", "main")


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def deployment(env: str, tag: str, runtime: MemoryRuntime, at: datetime) -> Deployment:
    return Deployment(env, tag, runtime.image_id(tag), "r", at)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


# --------------------------------------------------------------------------- the ledger
def test_the_history_keeps_the_newest_rows_of_each_environment(ledger: Ledger) -> None:
    for n in range(8):
        ledger.put_deployment(Deployment("acme/main", f"t{n}", f"i{n}", "r", NOW), keep=5)
    ledger.put_deployment(Deployment("acme/qa", "t0", "i0", "r", NOW), keep=5)
    assert [d.image for d in ledger.deployments(MAIN)] == ["t3", "t4", "t5", "t6", "t7"]
    assert [d.env for d in ledger.deployments()].count("acme/qa") == 1


def test_a_redeploy_of_the_running_image_moves_its_time_instead_of_adding_a_row(
    ledger: Ledger,
) -> None:
    ledger.put_deployment(Deployment("acme/main", "t1", "i1", "r1", NOW))
    ledger.put_deployment(Deployment("acme/main", "t1", "i1", "r1", NOW + timedelta(hours=1)))
    (only,) = ledger.deployments(MAIN)
    assert only.at == NOW + timedelta(hours=1)


def test_built_images_and_the_last_run_are_recorded_and_forgotten(ledger: Ledger) -> None:
    ledger.put_built("i1", "t1", "acme")
    ledger.put_built("i2", "t2", "acme")
    ledger.forget_built(["i1"])
    assert ledger.built() == {"i2": "t2"}
    assert ledger.last_run(TASK) is None
    ledger.put_last_run(TASK, NOW)
    assert ledger.last_run(TASK) == NOW


# -------------------------------------------------------------------------- the steps
def test_a_build_and_every_finished_rollout_are_recorded_a_failed_one_is_not(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    first = desired("qa", Tier.STAGING, revision="a" * 40)
    world.converge(first)
    assert world.ledger.built() == {world.runtime.image_id(first.image): first.image}
    second = desired("qa", Tier.STAGING, revision="b" * 40)
    world.converge(second)
    broken = desired("qa", Tier.STAGING, revision="c" * 40)
    world.runtime.unhealthy.add(broken.image)
    with pytest.raises(OdooOpsError, match="previous container is serving again"):
        world.converge(broken)
    history = world.ledger.deployments(first.key)
    assert [(d.image, d.revision) for d in history] == [
        (first.image, first.revision),
        (second.image, second.revision),
    ]
    assert history[0].image_id == world.runtime.image_id(first.image)


# ---------------------------------------------------------------------- the collector
def collector(
    runtime: MemoryRuntime, ledger: Ledger, clock: Clock, state: Desired | None = None
) -> ImageCollector:
    return ImageCollector(runtime, ledger, lambda: state, clock)


def test_a_run_removes_what_nothing_keeps_and_says_why_the_rest_stays(ledger: Ledger) -> None:
    runtime = MemoryRuntime()
    old, used, foreign = "odooops/acme:old", "odooops/acme:used", "odooops/acme:other"
    for tag in (old, used, foreign):
        runtime.images.add(tag)
        runtime.created[tag] = NOW - timedelta(days=30)
    for tag in (old, used):
        ledger.put_built(runtime.image_id(tag), tag, "acme")
    runtime.containers["c"] = MemoryContainer("c", MAIN, "odoo", state="exited", image=used)
    done = collector(runtime, ledger, Clock()).collect()
    assert [v.image.tags for v in done.removed] == [(old,)]
    assert runtime.images == {used, foreign}
    reasons = {v.image.tags[0]: v.reasons for v in done.verdicts}
    assert reasons[used] == {Reason.IN_USE} and reasons[foreign] == {Reason.NOT_OURS}
    assert ledger.built() == {runtime.image_id(used): used}
    assert ledger.last_run(TASK) == NOW


def test_a_dry_run_removes_nothing_and_is_not_a_run(ledger: Ledger) -> None:
    runtime = MemoryRuntime(images={"odooops/acme:old"})
    ledger.put_built(runtime.image_id("odooops/acme:old"), "odooops/acme:old", "acme")
    done = collector(runtime, ledger, Clock(NOW + timedelta(days=20000))).collect(dry_run=True)
    assert runtime.images == {"odooops/acme:old"}
    assert ledger.last_run(TASK) is None
    assert prune_doc(done)["removed"][0]["tags"] == ["odooops/acme:old"]


def test_the_daily_run_is_level_triggered_on_the_ledger(ledger: Ledger) -> None:
    """Due at once, then not again within a day, whatever restarts happen in between."""
    clock = Clock()
    runtime = MemoryRuntime()
    assert collector(runtime, ledger, clock).collect_if_due() is not None
    clock.now += timedelta(hours=23)
    assert collector(runtime, ledger, clock).collect_if_due() is None
    clock.now += timedelta(hours=1)
    assert collector(runtime, ledger, clock).collect_if_due() is not None


class RacingRuntime(MemoryRuntime):
    """A rollout creates a container of the image right after the collector looked."""

    def list_images(self, *, shared: bool = False) -> ImageListing:
        listing = super().list_images(shared=shared)
        self.containers["late"] = MemoryContainer("late", MAIN, "odoo", image="odooops/acme:a")
        return listing


def test_an_image_taken_into_use_after_the_look_is_refused_by_the_engine_and_kept(
    ledger: Ledger,
) -> None:
    runtime = RacingRuntime(images={"odooops/acme:a"})
    ledger.put_built(runtime.image_id("odooops/acme:a"), "odooops/acme:a", "acme")
    done = collector(runtime, ledger, Clock()).collect()
    assert done.removed == () and runtime.images == {"odooops/acme:a"}
    ((verdict, error),) = done.failed
    assert verdict.image.tags == ("odooops/acme:a",) and error.code == "image_in_use"
    assert ledger.built()  # still recorded: it still exists


def test_the_desired_state_keeps_its_images_and_names_the_environments_that_exist(
    ledger: Ledger,
) -> None:
    want = desired("main", Tier.STAGING)
    gone = "odooops/acme:gone"
    runtime = MemoryRuntime(images={want.image, gone})
    for tag in (want.image, gone):
        ledger.put_deployment(deployment(f"acme/{tag[-4:]}", tag, runtime, NOW))
    ledger.put_deployment(deployment("acme/main", want.image, runtime, NOW))
    state = Desired("c" * 40, {want.key: want})
    doc = describe(collector(runtime, ledger, Clock(NOW + timedelta(days=30)), state).report())
    items = {i["tags"][0]: i for i in doc["items"]}
    assert items[want.image]["wanted_by"] == ["acme/main"]
    assert items[want.image]["kept_for_rollback_by"] == ["acme/main"]
    assert items[gone]["kept"] == [] and items[gone]["collect_at"] is not None
    assert doc["policy"] == {"keep_deployed": 10, "min_age_days": 7.0}


class BrokenCollector:
    def collect_if_due(self) -> None:
        raise DriverError("the Docker engine is unreachable", code="docker_unreachable")


def test_a_failed_collection_is_logged_and_never_raised_into_the_scheduler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = SimpleNamespace(cancel=threading.Event(), last_good=None, images=BrokenCollector())
    Daemon(engine)._collect_images()  # type: ignore[arg-type]
    assert "image collection failed: error[docker_unreachable]" in caplog.text
