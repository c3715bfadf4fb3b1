"""Image collection on the real Docker engine: what goes after seven days, and what never does.

Small images (a label on the Odoo stand-in) are built the way the daemon builds them, with its
labels; the ledger records which this daemon built and twelve deployments of one environment;
a fake clock moves three days, then eight days on. The last ten deployed stay, the older unused
go, and three images stay whatever the clock says: one a stopped container of another instance
uses, one another instance built, and one OdooOps did not build.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import docker.errors
import pytest

from reconciler.core.errors import DriverError
from reconciler.core.imagegc import Deployment, Reason
from reconciler.core.model import Desired, EnvKey, Tier
from reconciler.core.planner import Kind
from reconciler.drivers.docker import DockerDriver
from reconciler.engine.images import ImageCollector, record
from reconciler.engine.ledger import Ledger
from tests.factories import desired
from tests.integration.containers import RUN_ID, RUN_LABEL
from tests.integration.world import World

pytestmark = pytest.mark.integration


def context(base: str, mark: str) -> bytes:
    """A build context whose Dockerfile only labels ``base``: a distinct image in a second."""
    dockerfile = f"FROM {base}\nLABEL odooops.gc-test={mark}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return buf.getvalue()


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Scene:
    """One test's daemon instance, project and images; everything removed at the end."""

    client: docker.DockerClient
    base: str
    driver: DockerDriver
    other: DockerDriver
    project: str = field(default_factory=lambda: f"gc{uuid.uuid4().hex[:8]}")
    tags: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def tag(self, n: int) -> str:
        return f"odooops/{self.project}:{n:016x}"

    def build(self, n: int, driver: DockerDriver | None = None) -> str:
        """Built as the daemon builds (its labels); the image's id."""
        tag = self.tag(n)
        self.tags.append(tag)
        labels = {"odooops.project": self.project, "odooops.revision": f"r{n}"}
        (driver or self.driver).build_image(tag, context(self.base, f"{self.project}-{n}"), labels)
        return self.driver.image_id(tag, pull=False)

    def stopped_container(self, image_id: str, instance: str) -> None:
        name = f"odooops-test-gc-{uuid.uuid4().hex[:8]}"
        container = self.client.containers.create(
            image_id,
            entrypoint=["true"],
            labels={RUN_LABEL: RUN_ID, "odooops.instance": instance},
            name=name,
        )
        self.containers.append(str(container.id))
        self.names.append(name)
        container.start()
        container.wait(timeout=60)

    def exists(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return False
        return True

    def cleanup(self) -> None:
        for cid in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(cid).remove(force=True)
        for tag in self.tags:
            with contextlib.suppress(docker.errors.ImageNotFound):
                self.client.images.remove(tag, force=True)
        self.driver.close()
        self.other.close()


@pytest.fixture
def scene(docker_engine: docker.DockerClient, images: dict[str, str]) -> Iterator[Scene]:
    run = uuid.uuid4().hex[:8]
    s = Scene(
        docker_engine,
        images["ODOOOPS_FIXTURE_ODOO_IMAGE"],
        DockerDriver(f"gc-{run}"),
        DockerDriver(f"gc-other-{run}"),
    )
    try:
        yield s
    finally:
        s.cleanup()


def test_the_last_ten_deployed_stay_older_unused_go_and_what_is_not_ours_never(
    scene: Scene, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    want = desired("main", Tier.STAGING)
    env = str(want.key)
    ids = {n: scene.build(n) for n in range(1, 13)}  # deployed to acme/main, in order
    ids[20] = scene.build(20)  # built here, never deployed, unused
    ids[21] = scene.build(21)  # built here, used by a stopped container of another instance
    ids[30] = scene.build(30, scene.other)  # built by another instance
    for n in (20, 21):
        # What the build step records (by the same function), each a build of its own.
        record(scene.driver, ledger, replace(want, image=scene.tag(n)), Kind.BUILD_IMAGE)
    plain = scene.tag(40)  # not built by OdooOps: no label, though named like ours
    scene.tags.append(plain)
    scene.client.images.build(
        fileobj=io.BytesIO(f"FROM {scene.base}\nLABEL gc={scene.project}\n".encode()),
        tag=plain,
        rm=True,
    )
    scene.stopped_container(ids[21], instance="someone-else")
    built_at = datetime.now(UTC).replace(microsecond=0)  # the ledger keeps seconds
    for n in range(1, 13):
        at = built_at + timedelta(minutes=n)
        ledger.put_deployment(Deployment(env, scene.tag(n), ids[n], f"r{n}", at))
    state = Desired("c" * 40, {want.key: replace(want, image=scene.tag(12))})
    clock = Clock(built_at + timedelta(days=3))
    collector = ImageCollector(scene.driver, ledger, lambda: state, clock)

    # Three days on: nothing is old enough; each unkept one says when it goes.
    ours = {n: i for n, i in ids.items() if n != 30}
    report = {v.image.id: v for v in collector.report().verdicts}
    assert set(ours.values()) | {ids[30]} <= set(report)
    assert report[ids[1]].reasons == {Reason.YOUNG}
    assert report[ids[1]].collect_at == built_at + timedelta(days=7, minutes=2)
    assert report[ids[20]].reasons == {Reason.YOUNG}
    assert report[ids[3]].rollback_for == (env,)
    assert report[ids[21]].used_by == (f"{scene.names[0]} (instance someone-else)",)
    assert report[ids[30]].reasons >= {Reason.NOT_OURS}
    shared = report[ids[3]].image.shared_size
    assert shared is not None and 0 < shared <= report[ids[3]].image.size
    assert collector.collect().removed == ()

    # Eight days on: the two oldest deployed and the never-deployed one go; the rest stay.
    clock.now = built_at + timedelta(days=8)
    done = collector.collect()
    assert {v.image.id for v in done.removed} == {ids[1], ids[2], ids[20]}
    assert done.failed == ()
    for n in (1, 2, 20):
        assert not scene.exists(ids[n]), n
    for n in (*range(3, 13), 21, 30):
        assert scene.exists(ids[n]), n
    assert scene.exists(plain)
    kept = {v.image.id: v for v in done.verdicts if not v.remove}
    assert all(kept[ids[n]].rollback_for == (env,) for n in range(3, 13))
    assert Reason.WANTED in kept[ids[12]].reasons
    assert kept[ids[21]].reasons == {Reason.IN_USE}
    assert kept[ids[30]].reasons == {Reason.NOT_OURS}
    assert ids[1] not in ledger.built() and ids[21] in ledger.built()


def test_a_removal_is_never_forced_and_never_of_an_image_odooops_did_not_build(
    scene: Scene,
) -> None:
    used = scene.build(1)
    scene.stopped_container(used, instance="someone-else")
    with pytest.raises(DriverError) as refused:
        scene.driver.remove_image(used)
    assert refused.value.code == "image_in_use"
    assert scene.exists(used)
    plain = scene.tag(2)
    scene.tags.append(plain)
    image, _ = scene.client.images.build(
        fileobj=io.BytesIO(f"FROM {scene.base}\nLABEL gc={scene.project}\n".encode()),
        tag=plain,
        rm=True,
    )
    with pytest.raises(DriverError) as foreign:
        scene.driver.remove_image(str(image.id))
    assert foreign.value.code == "image_not_ours"
    assert scene.exists(plain)
    scene.driver.remove_image("sha256:" + "0" * 64)  # gone already: nothing to do


def test_a_daemon_records_its_builds_and_rollouts_and_keeps_what_it_deployed(
    world: World,
) -> None:
    """Through the real engine and steps: each build and each rollout is in the ledger, the
    serving image is in use, the one before it kept for a rollback, and a run removes
    neither."""
    world.declare("staging", branch="release/v1")
    assert world.reconcile().errors == {}
    world.app.write({"acme_base/README.md": "v2\n"}, "acme v2", branch="release/v1")
    assert world.reconcile().errors == {}
    engine = world.engine()
    key = EnvKey(world.project, "staging")
    history = engine.ledger.deployments(key)
    assert len(history) == 2 and history[0].image != history[1].image
    assert {d.image_id for d in history} <= set(engine.ledger.built())
    verdicts = {v.image.id: v for v in engine.images.report().verdicts}
    serving, previous = verdicts[history[1].image_id], verdicts[history[0].image_id]
    assert serving.used_by == (str(key),) and serving.wanted_by == (str(key),)
    assert previous.rollback_for == (str(key),) and previous.used_by == ()
    done = engine.images.collect()
    assert not {v.image.id for v in done.removed} & {d.image_id for d in history}
