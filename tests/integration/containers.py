"""Throwaway containers for the integration tests, started and waited for by testcontainers.

Every container a test starts itself (a fixture PostgreSQL, a serving or one-shot Odoo
stand-in, a one-off helper) goes through ``running``, so three things hold for all of them:
it carries the label ``odooops.test-run=<RUN_ID>``, readiness comes from a testcontainers wait
strategy rather than a hand-written poll, and it is removed together with its anonymous
volumes when its block ends, passed, failed or interrupted, also when the start itself or
its wait strategy gives up (``DockerContainer.start`` raises after ``create``, so a bare
``start()`` would leave it behind).

testcontainers' own reaper (Ryuk) is off (``TESTCONTAINERS_RYUK_DISABLED=true``, exported by
scripts/test.sh): its image cannot be pulled on an offline machine, and the removal above
already does its job. What it would catch after a crash, the session-end check
``no_container_outlives_the_run`` catches instead: anything still labelled with this run's id,
and any anonymous volume of a container started here that still exists, is removed and fails
the run. After a hard kill, list the leftovers of every run with
``docker ps -a --filter label=odooops.test-run``.

Containers the product starts (the engine's Odoo, its dedicated PostgreSQL, its helpers) are
not started here: ``World`` labels them with its daemon instance and removes them itself.
"""

from __future__ import annotations

import contextlib
import functools
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.exceptions import ContainerStartException
from testcontainers.core.labels import SESSION_ID
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import ExecWaitStrategy, LogMessageWaitStrategy

RUN_LABEL = "odooops.test-run"
RUN_ID = SESSION_ID  # testcontainers' id for this process, also on its org.testcontainers labels
LABELS = {RUN_LABEL: RUN_ID}
ANONYMOUS = re.compile(r"[0-9a-f]{64}")  # Docker names an anonymous volume by a random hex id


def name(kind: str) -> str:
    """``odooops-test-<kind>-<random>``: readable in ``docker ps``, unique across runs."""
    return f"odooops-test-{kind}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- the ledger
@dataclass
class Ledger:
    """What this run made: how many containers, and their anonymous volumes by container id.

    Docker puts no label on an anonymous volume, so the session-end check could not find one
    that outlived its container; the names noted here are what it looks for.
    """

    built: int = 0
    volumes: dict[str, set[str]] = field(default_factory=dict)

    def note(self, container: Container) -> None:
        container.reload()
        self.volumes[str(container.id)] = {
            str(m["Name"])
            for m in container.attrs.get("Mounts") or []
            if m.get("Type") == "volume" and ANONYMOUS.fullmatch(str(m.get("Name", "")))
        }


LEDGER = Ledger()


@dataclass(frozen=True)
class Leftovers:
    """Docker objects of this run that should be gone."""

    containers: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)


def leftovers(client: docker.DockerClient) -> Leftovers:
    """Containers and networks labelled with this run, and anonymous volumes of its containers
    that still exist."""
    label: dict[str, str | list[str] | bool] = {"label": f"{RUN_LABEL}={RUN_ID}"}
    noted = set().union(*LEDGER.volumes.values())
    existing = {str(v.name) for v in client.volumes.list()}
    labelled = {str(v.name) for v in client.volumes.list(filters=label)}
    return Leftovers(
        containers=tuple(
            sorted(str(c.name) for c in client.containers.list(all=True, filters=label))
        ),
        networks=tuple(sorted(str(n.name) for n in client.networks.list(filters=label))),
        volumes=tuple(sorted((noted & existing) | labelled)),
    )


def sweep(client: docker.DockerClient, left: Leftovers) -> None:
    """Remove ``left``: containers (with their anonymous volumes), then networks, then volumes."""
    for container_name in left.containers:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(container_name).remove(force=True, v=True)
    for network_name in left.networks:
        with contextlib.suppress(docker.errors.NotFound):
            client.networks.get(network_name).remove()
    for volume_name in left.volumes:
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(volume_name).remove(force=True)


# ------------------------------------------------------------------------------ starting
@functools.cache
def _check_reaper() -> None:
    """Fail before the first start, not in a registry pull, when Ryuk is on and not here."""
    if testcontainers_config.ryuk_disabled:
        return
    client = docker.from_env()
    try:
        client.images.get(testcontainers_config.ryuk_image)
    except docker.errors.ImageNotFound:
        pytest.fail(
            f"testcontainers' reaper image {testcontainers_config.ryuk_image} is not on this "
            "machine and no registry is reachable; the fixtures remove their own containers: "
            "export TESTCONTAINERS_RYUK_DISABLED=true (scripts/test.sh does)"
        )
    finally:
        client.close()


def throwaway(
    image: str,
    kind: str,
    *,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
    network: Network | None = None,
    aliases: Sequence[str] = (),
    **create: Any,
) -> DockerContainer:
    """A container of ``image`` named for ``kind`` and labelled with this run, not started.

    ``volumes`` has docker-py's shape (``{source: {"bind": path, "mode": "ro"}}``, a source
    being a host path or a volume name); ``create`` goes to ``docker create`` as is
    (``entrypoint``, ``user``, ``network_mode``, ...).
    """
    LEDGER.built += 1
    container = DockerContainer(image, name=name(kind), env=dict(env or {}))
    if command is not None:
        container.with_command(list(command))
    for source, mount in (volumes or {}).items():
        container.with_volume_mapping(source, mount["bind"], mount.get("mode", "ro"))
    if network is not None:
        container.with_network(network)
    if aliases:
        container.with_network_aliases(*aliases)
    # with_kwargs replaces what was set before: the labels go in the same call.
    return container.with_kwargs(labels={**create.pop("labels", {}), **LABELS}, **create)


def publish_on_loopback(container: DockerContainer, port: int) -> DockerContainer:
    """Publish ``port`` on 127.0.0.1 only, at a port Docker picks.

    testcontainers publishes on every interface; a fixture database with a known password
    must not be reachable from the network for the length of a test.
    """
    container.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]
    return container


def remove(container: DockerContainer) -> None:
    """Remove ``container`` with its anonymous volumes, once noted in the ledger; a container
    that was never created, or is already gone, is fine."""
    try:
        wrapped = container.get_wrapped_container()
    except ContainerStartException:  # create failed: there is nothing to remove
        container.get_docker_client().client.close()
        return
    try:
        with contextlib.suppress(docker.errors.NotFound):
            LEDGER.note(wrapped)
        container.stop(force=True, delete_volume=True)
    except docker.errors.NotFound:
        container.get_docker_client().client.close()


@contextlib.contextmanager
def running(container: DockerContainer) -> Iterator[DockerContainer]:
    """Start ``container``, wait by its strategy, and remove it with its anonymous volumes when
    the block ends, however it ends (also when the start or the wait fails)."""
    try:
        _check_reaper()
        container.start()
        LEDGER.note(container.get_wrapped_container())
        yield container
    finally:
        remove(container)


@contextlib.contextmanager
def bridge(kind: str = "net") -> Iterator[Network]:
    """A user-defined bridge network labelled with this run, removed when the block ends."""
    LEDGER.built += 1
    net = Network(docker_network_kw={"driver": "bridge", "labels": dict(LABELS)})
    net.name = name(kind)
    client = net._docker.client  # testcontainers' Network neither exposes nor closes it
    try:
        net.create()
        try:
            yield net
        finally:
            _remove_network(client, net.name)
    finally:
        client.close()


def _remove_network(client: docker.DockerClient, network_name: str) -> None:
    """Fixtures of one scope are torn down in the order a test asked for them, so a container
    of another fixture may still be attached: it is on its way out too, and is detached first
    (Docker refuses to remove a network with endpoints)."""
    with contextlib.suppress(docker.errors.NotFound):
        found = client.networks.get(network_name)
        for attached in found.containers:
            found.disconnect(attached, force=True)
        found.remove()


@dataclass(frozen=True)
class Exited:
    """A one-shot container after it ended: its exit code and what it wrote."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    output: bytes  # both streams, interleaved as written

    @property
    def logs(self) -> str:
        return self.output.decode(errors="replace")


def run_once(container: DockerContainer, timeout: float = 120) -> Exited:
    """Run ``container`` to its end (at most ``timeout`` seconds), then remove it and its
    anonymous volumes: ``docker run --rm -v`` with the streams kept apart."""
    with running(container) as started:
        wrapped = started.get_wrapped_container()
        exit_code = int(wrapped.wait(timeout=timeout)["StatusCode"])
        return Exited(
            exit_code,
            bytes(wrapped.logs(stdout=True, stderr=False)),
            bytes(wrapped.logs(stdout=False, stderr=True)),
            bytes(wrapped.logs()),
        )


# --------------------------------------------------------------------- wait strategies
def postgres_ready(timeout: float = 60) -> ExecWaitStrategy:
    """The final server accepts TCP connections: the entrypoint's temporary server listens on
    the socket only, so by then the initialisation (user, database) is over."""
    return (
        ExecWaitStrategy(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"])
        .with_startup_timeout(int(timeout))
        .with_poll_interval(0.3)
    )


def odoo_serving(timeout: float = 60) -> LogMessageWaitStrategy:
    """Odoo (and the stand-in) logs this line once its HTTP socket is bound; the strategy also
    gives up at once if the container exits first."""
    return (
        LogMessageWaitStrategy(re.compile(r"HTTP service \(werkzeug\) running on"))
        .with_startup_timeout(int(timeout))
        .with_poll_interval(0.3)
    )


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def start_container() -> Iterator[Callable[[DockerContainer], DockerContainer]]:
    """``start_container(container)``: started and waited for now, removed with its anonymous
    volumes at the end of the test, whatever its outcome."""
    with contextlib.ExitStack() as stack:
        yield lambda container: stack.enter_context(running(container))


@pytest.fixture(scope="session", autouse=True)
def no_container_outlives_the_run() -> Iterator[None]:
    """At the end of the session nothing this run started is left: what is, is removed and
    fails the run (the fixture that should have removed it has a bug)."""
    yield
    if not LEDGER.built:  # nothing was made: no Docker needed to know nothing is left
        return
    client = docker.from_env()
    try:
        left = leftovers(client)
        if left:
            sweep(client, left)
            pytest.fail(f"test run {RUN_ID} left Docker objects behind (now removed): {left}")
    finally:
        client.close()
