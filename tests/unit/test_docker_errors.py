"""The Docker driver turns every failure of the engine into a structured error: an engine that
went away mid-pass (a dockerd restart) is ``docker_unreachable``, never an ``internal`` crash
of the step that happened to be talking to it."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import docker
import pytest
import requests

from reconciler.core.errors import DriverError
from reconciler.drivers.docker import DockerDriver

ABORTED = requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")


class Images:
    def __init__(self, get: BaseException, pull: BaseException | None = None) -> None:
        self._get, self._pull = get, pull

    def get(self, ref: str) -> Any:
        raise self._get

    def pull(self, ref: str) -> Any:
        raise self._pull or AssertionError("no pull expected")


class Containers:
    def get(self, name: str) -> Any:
        raise ABORTED


def driver(images: Any) -> DockerDriver:
    made = DockerDriver.__new__(DockerDriver)  # no engine: only the client is reached
    api = SimpleNamespace(build=getattr(images, "build", None))
    made.client = SimpleNamespace(images=images, containers=Containers(), api=api)  # type: ignore[assignment]
    return made


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.has_image("odooops/p:1"),
        lambda d: d.image_id("odoo:19.0"),
        lambda d: d._platform_image("odooops/tools:1"),
    ],
    ids=["has_image", "image_id", "platform_image"],
)
def test_an_engine_gone_mid_request_is_docker_unreachable(call: Any) -> None:
    with pytest.raises(DriverError) as info:
        call(driver(Images(get=ABORTED)))
    assert info.value.code == "docker_unreachable"
    assert info.value.remediation == "docker info"


def test_a_pull_that_cannot_reach_the_engine_is_unreachable_not_a_missing_image() -> None:
    missing = docker.errors.ImageNotFound("no such image")
    with pytest.raises(DriverError) as info:
        driver(Images(get=missing, pull=ABORTED)).image_id("odoo:19.0")
    assert info.value.code == "docker_unreachable"


def test_a_missing_image_is_still_reported_as_missing() -> None:
    missing = docker.errors.ImageNotFound("no such image")
    assert driver(Images(get=missing)).has_image("odooops/p:1") is False
    refused = docker.errors.APIError("pull access denied")
    with pytest.raises(DriverError) as info:
        driver(Images(get=missing, pull=refused)).image_id("odoo:19.0")
    assert info.value.code == "image_missing"
    assert "docker pull odoo:19.0" in info.value.remediation


def test_logs_for_an_error_message_are_empty_when_the_engine_is_gone() -> None:
    assert driver(Images(get=ABORTED)).logs("odooops-acme-qa-odoo") == ""


class Builds:
    """The engine's streamed build (``api.build(decode=True)``) failing as ``failures`` say,
    once each, then succeeding."""

    def __init__(self, *failures: str) -> None:
        self.failures = list(failures)
        self.calls: list[bool] = []

    def build(self, **kwargs: Any) -> Iterator[dict[str, str]]:
        self.calls.append(bool(kwargs["nocache"]))
        yield {"stream": "Step 1/2 : FROM odoo:19.0\n"}
        if self.failures:
            yield {"error": self.failures.pop(0)}
            return
        yield {"stream": "built"}


def app_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("app/README")
        tar.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


RACE = (
    "failed to get digest sha256:78e5: open /var/lib/docker/image/overlay2/imagedb/content/"
    "sha256/78e5: no such file or directory"
)


def test_a_build_that_lost_a_cached_layer_is_built_again_without_the_cache() -> None:
    builds = Builds(RACE)
    assert driver(builds).build_image("odooops/p:1", app_tar(), {}).endswith("built")
    assert builds.calls == [False, True]


def test_a_build_the_app_breaks_fails_at_once_as_build_failed() -> None:
    builds = Builds("COPY failed: stat app/: file does not exist")
    with pytest.raises(DriverError) as info:
        driver(builds).build_image("odooops/p:1", app_tar(), {})
    assert info.value.code == "build_failed" and not info.value.retryable
    assert builds.calls == [False]
