"""Fixtures for integration tests: the real Docker engine, PostgreSQL and git remotes.

A missing service fails the test loudly with the command that starts it; nothing is skipped.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest

from tests.integration import pgadmin
from tests.integration.containers import (  # noqa: F401 - fixtures, found by name
    no_container_outlives_the_run,
    start_container,
)
from tests.integration.s3server import S3Server
from tests.integration.world import World, fixture_images


def _port_ranges() -> Iterator[int]:
    """Each pytest-xdist worker (gw0, gw1, ...) publishes Odoo ports from its own band of
    2,400 so parallel tests never ask Docker for the same host port; the serial phase (no
    worker) takes the band after the last worker's. A band is reused in a cycle: a world's
    containers are gone when its test ends."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 3
    base = 20000 + (index % 4) * 2400
    return itertools.cycle(range(base, base + 2400, 20))


_PORTS = _port_ranges()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        client.ping()
    except Exception as exc:  # any failure here means the engine is not there
        client.close()
        pytest.fail(f"Docker engine unreachable ({exc}); start it: bash scripts/setup.sh services")
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """The shared server, reached as its admin with the password setup.sh made (exported to
    ``PGPASSWORD`` for every client of the test run)."""
    try:
        pgadmin.export()
    except pgadmin.PasswordUnavailable as exc:
        pytest.fail(str(exc))
    try:
        psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", connect_timeout=5
        ).close()
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL on 127.0.0.1:5432 unreachable ({exc}); "
            "start it: bash scripts/setup.sh services"
        )


@pytest.fixture(scope="session")
def images(docker_engine: docker.DockerClient) -> dict[str, str]:
    found = fixture_images()
    for ref in found.values():
        docker_engine.images.get(ref)
    return found


@pytest.fixture
def world(tmp_path: Path, images: dict[str, str], postgres_server: None) -> Iterator[World]:
    w = World(tmp_path, images, next(_PORTS))
    try:
        yield w
    finally:
        w.cleanup()
        # A socket or file the test leaked is reported now, against this test (with its
        # warning filters), not at the end of the session against none.
        gc.collect()


@pytest.fixture
def twin_world(world: World, images: dict[str, str]) -> Iterator[World]:
    """A second daemon instance on the same engine and server, whose state declares a project
    of the same name as ``world``'s (two installs that both call their customer ``acme``)."""
    w = World(world.root / "twin", images, next(_PORTS), project=world.project)
    try:
        yield w
    finally:
        w.cleanup()
        gc.collect()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server on loopback for the whole session (fails loudly, never skips)."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
