"""The throwaway-container fixtures: labelled with the run, removed with their anonymous volumes
however a block ends, and whatever escapes them is found by the session-end check.

The stand-in Odoo image serves as the container: it declares two anonymous volumes
(/var/lib/odoo and /mnt/extra-addons), as odoo:19.0 does.
"""

from __future__ import annotations

import docker
import docker.errors
import pytest
from testcontainers.core.config import testcontainers_config
from testcontainers.core.exceptions import ContainerStartException
from testcontainers.core.waiting_utils import WaitStrategy

from tests.integration import containers
from tests.integration.containers import (
    LEDGER,
    RUN_ID,
    RUN_LABEL,
    Leftovers,
    bridge,
    leftovers,
    odoo_serving,
    run_once,
    running,
    sweep,
    throwaway,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def image(images: dict[str, str]) -> str:
    return images["ODOOOPS_FIXTURE_ODOO_IMAGE"]


def exists(client: docker.DockerClient, container_id: str, volumes: set[str]) -> set[str]:
    """Which of the container and its volumes Docker still knows."""
    found = set()
    try:
        client.containers.get(container_id)
        found.add(container_id)
    except docker.errors.NotFound:
        pass
    for name in volumes:
        try:
            client.volumes.get(name)
            found.add(name)
        except docker.errors.NotFound:
            pass
    return found


def test_containers_and_networks_carry_the_run_label(
    docker_engine: docker.DockerClient, image: str
) -> None:
    """`docker ps --filter label=odooops.test-run=<id>` finds what this run started."""
    with bridge() as net, running(throwaway(image, "probe", entrypoint=["sleep", "30"])) as c:
        wrapped = c.get_wrapped_container()
        assert wrapped.labels[RUN_LABEL] == RUN_ID
        assert str(wrapped.name).startswith("odooops-test-probe-")
        left = leftovers(docker_engine)
        assert wrapped.name in left.containers
        assert net.name in left.networks


def test_a_failing_block_removes_the_container_and_its_anonymous_volumes(
    docker_engine: docker.DockerClient, image: str
) -> None:
    """An exception inside the block (a failing test) still removes everything it started."""
    with (
        pytest.raises(RuntimeError, match="the test failed"),
        running(throwaway(image, "probe", entrypoint=["sleep", "30"])) as c,
    ):
        container_id = str(c.get_wrapped_container().id)
        volumes = LEDGER.volumes[container_id]
        assert len(volumes) == 2
        assert exists(docker_engine, container_id, volumes) == {container_id, *volumes}
        raise RuntimeError("the test failed")
    assert exists(docker_engine, container_id, volumes) == set()


def test_a_network_goes_even_while_a_container_of_another_fixture_is_attached(
    docker_engine: docker.DockerClient, image: str
) -> None:
    """Fixtures of one scope end in the order a test asked for them: the network may end first."""
    network = bridge()
    net = network.__enter__()
    with running(throwaway(image, "probe", entrypoint=["sleep", "30"], network=net)) as c:
        network.__exit__(None, None, None)
        assert net.name not in leftovers(docker_engine).networks
        assert c.get_wrapped_container().name in leftovers(docker_engine).containers


@pytest.mark.parametrize(
    ("what", "entrypoint", "wait", "error"),
    [
        ("exits first", ["sh", "-c", "exit 3"], odoo_serving(30), RuntimeError),
        ("never ready", ["sleep", "30"], odoo_serving(2), TimeoutError),
    ],
)
def test_a_wait_that_gives_up_removes_the_container_and_its_anonymous_volumes(
    docker_engine: docker.DockerClient,
    image: str,
    what: str,
    entrypoint: list[str],
    wait: WaitStrategy,
    error: type[Exception],
) -> None:
    """testcontainers' start() raises with the container left behind; running() removes it."""
    container = throwaway(image, "probe", entrypoint=entrypoint).waiting_for(wait)
    with pytest.raises(error), running(container):
        pytest.fail(f"the wait should have failed ({what})")
    container_id = str(container.get_wrapped_container().id)
    volumes = LEDGER.volumes[container_id]
    assert len(volumes) == 2
    assert exists(docker_engine, container_id, volumes) == set()


def test_run_once_keeps_the_streams_apart_and_removes_the_container(
    docker_engine: docker.DockerClient, image: str
) -> None:
    """`docker run --rm -v` with stdout and stderr apart, and the exit code."""
    container = throwaway(image, "probe", entrypoint=["sh", "-c", "echo out; echo err >&2; exit 3"])
    ran = run_once(container)
    assert (ran.exit_code, ran.stdout, ran.stderr) == (3, b"out\n", b"err\n")
    assert sorted(ran.logs.split()) == ["err", "out"]
    container_id = str(container.get_wrapped_container().id)
    assert exists(docker_engine, container_id, LEDGER.volumes[container_id]) == set()


def test_leftovers_finds_a_leaked_container_then_its_orphaned_volumes(
    docker_engine: docker.DockerClient, image: str
) -> None:
    """What the session-end check sees: a container started outside running(), and once it is
    removed without -v, the anonymous volumes it left."""
    leaked = throwaway(image, "leak", entrypoint=["sleep", "30"]).start()  # a fixture's bug
    wrapped = leaked.get_wrapped_container()
    LEDGER.note(wrapped)
    volumes = LEDGER.volumes[str(wrapped.id)]
    try:
        assert wrapped.name in leftovers(docker_engine).containers
        wrapped.remove(force=True)  # no v=True: the anonymous volumes stay
        left = leftovers(docker_engine)
        assert wrapped.name not in left.containers
        assert len(volumes) == 2 and volumes <= set(left.volumes)
    finally:
        sweep(docker_engine, Leftovers(containers=(str(wrapped.name),), volumes=tuple(volumes)))
        leaked.get_docker_client().client.close()
    assert not volumes & set(leftovers(docker_engine).volumes)


def test_a_reaper_that_cannot_run_here_fails_before_any_pull(
    image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ryuk on and its image absent: a failure that says which variable to export, and no
    container started."""
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", False)
    monkeypatch.setattr(testcontainers_config, "ryuk_image", "odooops-test/no-such-reaper:0")
    containers._check_reaper.cache_clear()
    container = throwaway(image, "probe", entrypoint=["sleep", "30"])
    try:
        with (
            pytest.raises(pytest.fail.Exception, match="TESTCONTAINERS_RYUK_DISABLED=true"),
            running(container),
        ):
            pass
    finally:
        containers._check_reaper.cache_clear()
    with pytest.raises(ContainerStartException):
        container.get_wrapped_container()
