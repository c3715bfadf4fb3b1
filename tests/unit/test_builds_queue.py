"""Build verdicts read from real builder output, and the build queue: first come first served
within ``max_concurrent_builds``, positions, records and logs on disk, a killed daemon's
builds marked interrupted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.buildresult import BuildResult, verdict
from reconciler.core.errors import DriverError
from reconciler.engine.buildqueue import BuildQueue

PIP_FAILS = """Step 1/9 : FROM odoo:19.0 AS system
 ---> 1a2b
Step 4/9 : RUN pip install --require-hashes -r /opt/odooops/build/requirements.lock
 ---> Running in 77aa
Looking in links: /opt/odooops/build/wheels
Processing /opt/odooops/build/wheels/x-1.0-py3-none-any.whl
ERROR: Could not find a version that satisfies the requirement requests==2.31.0
ERROR: No matching distribution found for requests==2.31.0
""".splitlines()


def test_a_failed_step_is_red_with_the_step_and_the_lines_that_say_why() -> None:
    v = verdict(PIP_FAILS, "The command '/bin/sh -c pip install' returned a non-zero code: 1")
    assert v.result is BuildResult.RED
    assert v.step.startswith("RUN pip install")
    assert "ERROR: No matching distribution found for requests==2.31.0" in v.excerpt
    assert v.excerpt[-1].startswith("The command")
    assert not any("FROM odoo" in line for line in v.excerpt)  # another step's lines


def test_warnings_make_a_built_image_yellow_and_noise_does_not() -> None:
    lines = [
        "Step 2/3 : RUN apt-get install -y libzbar0",
        "debconf: delaying package configuration, since apt-utils is not installed",
        "W: Some index files failed to download. They have been ignored.",
        "WARNING: Running pip as the 'root' user can result in broken permissions",
    ]
    v = verdict(lines, None)
    assert (v.result, v.warnings) == (BuildResult.YELLOW, 2)
    assert verdict(lines[:2], None).result is BuildResult.GREEN


def queue(tmp_path: Path, limit: int = 1, timeout: float = 60.0, keep: int = 200) -> BuildQueue:
    return BuildQueue(tmp_path / "builds", lambda: limit, lambda: timeout, keep=keep)


def test_a_build_is_recorded_with_its_log_and_colour(tmp_path: Path) -> None:
    q = queue(tmp_path)
    record = q.run(
        "odooops/acme:1", "acme", "acme/qa", "a" * 40, lambda log, _: log("\x1b[91mdone\x1b[0m\n")
    )
    assert record.state == "green" and record.started_at and record.finished_at
    assert q.log_path(record.id).read_text() == "done\n"  # a tool's colours left out
    on_disk = json.loads((tmp_path / "builds" / f"{record.id}.json").read_text())
    assert on_disk["state"] == "green"
    assert queue(tmp_path).get(record.id) == record  # read back by the next daemon


def test_a_failing_build_is_red_and_raises_naming_the_build(tmp_path: Path) -> None:
    q = queue(tmp_path)

    def work(log: Callable[[str], None], deadline: float) -> None:
        log("Step 2/2 : RUN false\n")
        raise DriverError("image build failed: exit 1", code="build_failed")

    with pytest.raises(DriverError) as err:
        q.run("odooops/acme:1", "acme", "acme/qa", "a" * 40, work)
    (record,) = q.list()
    assert record.state == "red" and record.step == "RUN false"
    assert err.value.code == "build_failed" and record.id in err.value.message
    assert f"odooops builds logs {record.id}" in err.value.remediation


def test_builds_beyond_the_limit_wait_their_turn_in_order(tmp_path: Path) -> None:
    q = queue(tmp_path, limit=2)
    release = {f"b{n}": threading.Event() for n in range(5)}
    running: list[str] = []
    positions: dict[str, list[int]] = {}
    lock = threading.Lock()

    def work(name: str) -> Callable[[Callable[[str], None], float], None]:
        def run(log: Callable[[str], None], deadline: float) -> None:
            with lock:
                running.append(name)
            release[name].wait(10)

        return run

    def until(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(running) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # and no more than that

    threads = []
    for n in range(5):
        name = f"b{n}"

        def queued(position: int, of: int, name: str = name) -> None:
            positions.setdefault(name, []).append(position)

        t = threading.Thread(
            target=q.run, args=(f"img:{n}", "acme", "acme/qa", "a" * 40, work(name), queued)
        )
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5  # each arrives before the next (the order is tested)
        while len(q.list()) <= n and time.monotonic() < deadline:
            time.sleep(0.01)
    until(2)
    assert sorted(running) == ["b0", "b1"]  # two at once (either first), the others wait
    waiting = sorted((r for r in q.list() if r.state == "queued"), key=lambda r: r.position)
    assert [(r.image, r.position) for r in waiting] == [("img:2", 1), ("img:3", 2), ("img:4", 3)]
    for done, starts in (("b1", "b2"), ("b0", "b3"), ("b2", "b4")):
        release[done].set()  # one slot frees: the first in the queue takes it
        until(len(running) + 1)
        assert running[-1] == starts
    for event in release.values():
        event.set()
    for t in threads:
        t.join(10)
    assert positions["b4"][0] == 3
    assert {r.state for r in q.list()} == {"green"}


def test_a_killed_daemons_running_build_is_red_interrupted_on_restart(tmp_path: Path) -> None:
    folder = tmp_path / "builds"
    folder.mkdir()
    (folder / "b20261205000000000-abcdef.json").write_text(
        json.dumps(
            {
                "id": "b20261205000000000-abcdef",
                "project": "acme",
                "image": "odooops/acme:1",
                "revision": "a" * 40,
                "environment": "acme/qa",
                "state": "running",
                "queued_at": "2026-12-05T00:00:00+00:00",
                "started_at": "2026-12-05T00:00:01+00:00",
            }
        )
    )
    plan_only = BuildQueue(folder, lambda: 1, lambda: 1.0, read_only=True)
    assert plan_only.get("b20261205000000000-abcdef").state == "running"  # type: ignore[union-attr]
    record = queue(tmp_path).get("b20261205000000000-abcdef")
    assert record is not None and record.state == "red" and "interrupted" in record.error


def test_old_records_and_logs_are_trimmed(tmp_path: Path) -> None:
    q = queue(tmp_path, keep=3)
    for n in range(5):
        q.run(f"img:{n}", "acme", "acme/qa", "a" * 40, lambda log, _: log("x\n"))
    assert [r.image for r in q.list()] == ["img:4", "img:3", "img:2"]
    assert len(list((tmp_path / "builds").glob("*.log"))) == 3
