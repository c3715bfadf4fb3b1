#!/usr/bin/env python3
"""Copying an environment's data: each database copy strategy against a raw file copy.

What is measured, on one generated Odoo-like database (``bench/_odoo_db.py``; 1 GB by
default) and its filestore (2,000 files, 300 MB, in a Docker volume):

* the database, by ``copy_database`` with each ``Strategy`` into a fresh target (dropped
  between runs): ``template`` (``CREATE DATABASE ... STRATEGY FILE_COPY``, the source briefly
  quiesced, then the objects handed to the target's owner), ``stream`` (schema by
  ``pg_dump``, then ``COPY`` on ``--jobs`` connection pairs from one snapshot, then indexes
  and constraints) and ``dump`` (plain ``pg_dump -Fc | pg_restore``). The physical floor is
  ``cp -r`` of the source's own directory ``<data_directory>/base/<oid>`` (after a
  ``CHECKPOINT``) to a temporary directory on the same filesystem; a second floor adds an
  fsync of every copied file, which ``FILE_COPY`` also does before it returns.
* the filestore, by ``DockerDriver.filestore_copy`` (``cp --reflink=auto`` in a confined
  helper that sees only the two volumes, the source read-only: a copy-on-write clone on
  btrfs or XFS, a full copy on ext4) against hard links (``cp -al`` in a root helper with
  every volume of the host mounted, the way filestores were copied before), with the cost
  of a helper container that does nothing for reference.

How to read it: ``x raw cp`` is a strategy's time over the raw copy's time, both measured
in the same run, so it says how far a strategy is from what the disk allows (1.0 would be
the floor); ``MB/s`` is the source database's size (``pg_database_size``) over the time.
Seconds are medians: the copies that take a second or so (raw, template, filestore) run three
times per round, ``stream`` and ``dump`` once, ``--repeat`` rounds interleaved. Every timed
step starts after a ``sync``, so writeback left by the previous one is not charged to it. The
source is in the page cache for every run (it was just written and is read again each time),
so these are copy costs without cold reads. ``target MB`` is the copy's own
``pg_database_size`` and every copy's partners are counted, a check that each strategy copied
the whole database. The ``stream`` and ``dump`` rows include building the indexes and
foreign keys again; ``template`` copies them as files. Nothing here asserts: a benchmark
reports, a test decides. Run from the repository root::

    .venv/bin/python bench/db_copy.py [--quick] [--size-mb 1024] [--jobs 4] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/db_copy.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

from bench._cli import Options, count, run_main, timed, title, uninterruptible  # noqa: E402
from bench._odoo_db import (  # noqa: E402
    ADMIN,
    MB,
    FixtureImages,
    Generated,
    Scratch,
    check_services,
    create_role,
    fill_filestore,
    fixture_images,
    generate,
    mb,
    open_driver,
)
from reconciler.core.model import CopySettings  # noqa: E402
from reconciler.data.database.copy import (  # noqa: E402
    Strategy,
    choose_strategy,
    copy_database,
    database_size,
    drop_database,
)
from reconciler.data.database.endpoint import Endpoint  # noqa: E402
from reconciler.drivers.docker import FILESTORE, DockerDriver  # noqa: E402

T = TypeVar("T")
STRATEGY_LABELS = {
    Strategy.TEMPLATE: "template: CREATE DATABASE ... FILE_COPY",
    Strategy.STREAM: "stream: COPY over {jobs} connection pairs",
    Strategy.DUMP: "dump: pg_dump -Fc | pg_restore",
}


FAST_SAMPLES = 3  # runs per round of the copies that take a second or so; median taken


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    samples: int
    target_bytes: int | None = None
    note: str = ""


def settled(fn: Callable[[], T]) -> tuple[float, T]:
    """Time ``fn`` after ``sync``: writeback left over from earlier steps (the generation,
    the previous copy) must not be charged to this one."""
    os.sync()
    return timed(fn)


# ============================================================================== filestore
def helper(driver: DockerDriver, image: str, script: str, volumes: dict[str, str]) -> str:
    """Run ``script`` as root in a throw-away container of ``image`` with ``volumes`` (host
    paths or volume names) mounted read-write: the helper of old, for the comparison.

    The docker SDK on purpose, not the tests' testcontainers fixtures: this container's cost
    is a baseline the driver's filestore copy is measured against, so it must take the same
    path, without testcontainers' extra calls."""
    container = driver.client.containers.create(
        image=image,
        entrypoint=["/bin/sh", "-c", script],
        command=[],
        user="0:0",
        volumes={name: {"bind": path, "mode": "rw"} for name, path in volumes.items()},
        network_mode="none",
        labels={"odooops.instance": driver.instance, "odooops.role": "helper"},
    )
    try:
        container.start()
        code = int(container.wait(timeout=3600)["StatusCode"])
        out = bytes(container.logs()).decode(errors="replace")
    finally:
        container.remove(force=True, v=True)
    if code != 0:
        raise RuntimeError(f"helper script failed (exit {code}): {out.strip()[-500:]}")
    return out


def measure_filestore(
    driver: DockerDriver, images: FixtureImages, src: str, dst: str, db: str, samples: int
) -> list[Row]:
    """Median of ``samples`` runs each: an idle confined helper, ``filestore_copy`` and the
    hard-link copy it replaced.

    Interleaved, so noise from elsewhere hits all alike; the copy is removed (untimed) after
    every run, so each run writes into an empty place.
    """
    times: dict[str, list[float]] = {"idle": [], "copy": [], "link": []}
    counts: set[int] = set()
    image = images.platform
    root = str(driver.client.info().get("DockerRootDir") or "/var/lib/docker") + "/volumes"
    linked = f"{db}.linked"
    script = (
        f'mkdir -p "/volumes/{dst}/_data/filestore" && cp -al "/volumes/{src}/_data/filestore/'
        f'{db}" "/volumes/{dst}/_data/filestore/{linked}"'
    )
    owner = driver._owner(image, dst)
    for _ in range(samples):
        seconds, _ = settled(lambda: driver._helper(image, "true", {}, dst, owner))
        times["idle"].append(seconds)
        seconds, files = settled(lambda: driver.filestore_copy(image, src, db, dst, db))
        times["copy"].append(seconds)
        counts.add(files)
        driver.filestore_remove(image, dst, db)
        seconds, _ = settled(lambda: helper(driver, image, script, {root: "/volumes"}))
        times["link"].append(seconds)
        driver.filestore_remove(image, dst, linked)
    median = {k: statistics.median(v) for k, v in times.items()}
    note = f"{counts.pop()} files" if len(counts) == 1 else f"file counts differ: {counts}"
    return [
        Row("confined helper alone (sh -c true)", median["idle"], samples),
        Row("filestore_copy (cp --reflink=auto, 2 mounts)", median["copy"], samples, note=note),
        Row("hard links (cp -al, all volumes mounted; old)", median["link"], samples),
    ]


def print_filestore(rows: Sequence[Row], files: int, total: int) -> None:
    idle, copy, link = rows
    print(
        f"\nFilestore: {files:,} files, {mb(total)} MB, median of {idle.samples} "
        f"(volumes on the Docker host's disk, {FILESTORE}/filestore/<db>/<ab>/<sha1>)"
    )
    print(f"  {'copy':<46} {'seconds':>8} {'MB/s':>8} {'x links':>8} {'minus idle':>11}")
    for row in rows:
        ratio = f"{row.seconds / link.seconds:>8.2f}" if row is not idle else f"{'':>8}"
        rate = f"{total / MB / row.seconds:>8,.0f}" if row is not idle else f"{'':>8}"
        net = max(row.seconds - idle.seconds, 1e-6)
        minus = f"{net:>11.2f}" if row is not idle else f"{'':>11}"
        print(f"  {row.label:<46} {row.seconds:>8.2f} {rate} {ratio} {minus}  {row.note}")
    net_copy = max(copy.seconds - idle.seconds, 1e-6)
    net_link = max(link.seconds - idle.seconds, 1e-6)
    print(
        f"  without the helper container's own cost, the copy takes {net_copy / net_link:.1f}x "
        "the time of hard links here (on btrfs or XFS the clone writes no file data either)"
    )


# =============================================================================== database
def data_location(source: Endpoint) -> tuple[Path, Path]:
    """The source's directory ``<data_directory>/base/<oid>`` and a place on the same
    filesystem for its copy (the system's temporary directory when it is on it)."""
    with ADMIN.connect() as conn:
        data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", [source.dbname])
        oid = str(row.fetchone()[0])  # type: ignore[index]
    directory = Path(data_dir) / "base" / oid
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    same = tmp.is_dir() and os.stat(tmp).st_dev == os.stat(data_dir).st_dev
    return directory, tmp if same else Path(data_dir).parent


def fsync_tree(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def raw_copy(scratch: Scratch, directory: Path, parent: Path) -> tuple[float, float, int]:
    """``cp -r`` of the database directory; seconds without and with an fsync of every file,
    and the bytes copied. The copy is removed at once (and by the clean-up if cut short)."""
    with ADMIN.connect() as conn:
        conn.execute("CHECKPOINT")  # nothing of the source is left only in shared buffers
    where = scratch.temp_dir("odooops-bench-raw-", parent)
    copy = where / directory.name
    os.sync()
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(directory), str(copy)], check=True)
    copied = time.perf_counter() - started
    fsync_tree(copy)
    synced = time.perf_counter() - started
    size = sum(f.stat().st_size for f in copy.rglob("*") if f.is_file())
    subprocess.run(["rm", "-rf", str(where)], check=True)
    return copied, synced, size


def copy_once(
    source: Endpoint,
    target: Endpoint,
    strategy: Strategy,
    logins: tuple[Endpoint, Endpoint],
    jobs: int,
    partners: int,
) -> tuple[float, int]:
    """One copy into a fresh ``target``: seconds, the target's size; checked, then dropped."""
    drop_database(target)
    try:
        seconds, _ = settled(
            lambda: copy_database(
                source,
                target,
                source_login=logins[0],
                target_login=logins[1],
                strategy=strategy,
                jobs=jobs,
            )
        )
        size = database_size(target)
        with target.connect() as conn:
            row = conn.execute("SELECT count(*) FROM res_partner").fetchone()
        copied = int(str(row[0])) if row else -1
        if copied != partners:
            raise RuntimeError(f"{strategy} copied {copied} partners of {partners}")
        return seconds, size
    finally:
        drop_database(target)


def measure_database(
    scratch: Scratch,
    source: Endpoint,
    logins: tuple[Endpoint, Endpoint],
    jobs: int,
    repeat: int,
    partners: int,
) -> list[Row]:
    """Medians over ``repeat`` rounds of the raw copy and each strategy, interleaved.

    Each round runs the raw copy and the template copy ``FAST_SAMPLES`` times (a second each,
    where one stall elsewhere on the machine would double a single sample) and the logical
    strategies once.
    """
    directory, parent = data_location(source)
    print(f"\n  raw copies of {directory} go to {parent} (same filesystem)")
    raw: list[tuple[float, float, int]] = []
    copies: dict[Strategy, list[tuple[float, int]]] = {s: [] for s in Strategy}
    for round_no in range(1, repeat + 1):
        for _ in range(FAST_SAMPLES):
            raw.append(raw_copy(scratch, directory, parent))
        for strategy in Strategy:
            target = ADMIN.with_db(scratch.database(f"copy_{strategy.value}"))
            for _ in range(FAST_SAMPLES if strategy is Strategy.TEMPLATE else 1):
                copies[strategy].append(copy_once(source, target, strategy, logins, jobs, partners))
        if repeat > 1:
            print(f"  round {round_no}/{repeat} done")
    raw_bytes, n = raw[0][2], len(raw)
    rows = [
        Row("raw: cp -r base/<oid>", statistics.median(r[0] for r in raw), n, raw_bytes),
        Row("raw: cp -r + fsync of every file", statistics.median(r[1] for r in raw), n, raw_bytes),
    ]
    for strategy, runs in copies.items():
        label = STRATEGY_LABELS[strategy].format(jobs=jobs)
        seconds = statistics.median(s for s, _ in runs)
        rows.append(Row(label, seconds, len(runs), runs[0][1], note=strategy.value))
    return rows


def print_database(rows: Sequence[Row], size: int, chosen: Strategy) -> None:
    print(f"\nDatabase: {mb(size)} MB (pg_database_size); seconds are the median of n runs")
    floor = rows[0].seconds
    print(f"  {'copy':<42} {'n':>2} {'seconds':>8} {'MB/s':>8} {'x raw cp':>9} {'target MB':>10}")
    for row in rows:
        mark = "  <- choose_strategy" if row.note == chosen.value else ""
        target = mb(row.target_bytes) if row.target_bytes is not None else "-"
        print(
            f"  {row.label:<42} {row.samples:>2} {row.seconds:>8.2f} "
            f"{size / MB / row.seconds:>8,.0f} {row.seconds / floor:>9.2f} {target:>10}{mark}"
        )
    by_note = {r.note: r for r in rows if r.note}
    dump = by_note[Strategy.DUMP.value].seconds
    print(
        "  vs the plain dump: "
        + ", ".join(
            f"{name} {dump / by_note[name].seconds:.1f}x faster"
            for name in (Strategy.TEMPLATE.value, Strategy.STREAM.value)
        )
    )


# =================================================================================== main
def describe(generated: Generated) -> str:
    rows = ", ".join(f"{table} {n:,}" for table, n in generated.rows.items())
    return f"{mb(generated.size_bytes)} MB in {generated.seconds:.1f} s ({rows})"


def run(
    args: argparse.Namespace, scratch: Scratch, driver: DockerDriver, images: FixtureImages
) -> None:
    src_owner, dst_owner = scratch.role("src_owner"), scratch.role("dst_owner")
    source = ADMIN.with_db(scratch.database("src"))
    src_volume, dst_volume = scratch.volume("src"), scratch.volume("dst")
    logins = (create_role(src_owner), create_role(dst_owner))
    driver.create_volume(scratch.key, src_volume, protected=False)
    driver.create_volume(scratch.key, dst_volume, protected=False)
    driver.filestore_prime(images.odoo, dst_volume)

    total = args.filestore_mb * MB
    seconds, files = timed(
        lambda: fill_filestore(driver, images, src_volume, source.dbname, args.files, total)
    )
    stored = sum(f.size for f in files)
    print(f"filestore: {len(files):,} files, {mb(stored)} MB into {src_volume} in {seconds:.1f} s")
    generated = generate(source, src_owner, args.size_mb, files, jobs=args.gen_jobs)
    print(f"source database {source.dbname}: {describe(generated)}")

    samples = FAST_SAMPLES * args.repeat
    rows = measure_filestore(driver, images, src_volume, dst_volume, source.dbname, samples)
    print_filestore(rows, len(files), stored)

    size = database_size(source)
    scratch_target = ADMIN.with_db(scratch.database("copy"))
    choice = choose_strategy(
        source, scratch_target, size, max_quiesce_seconds=CopySettings().max_quiesce_seconds
    )
    partners = generated.rows["res_partner"]
    rows = measure_database(scratch, source, logins, args.jobs, args.repeat, partners)
    print_database(rows, size, choice.strategy)
    print(
        f"  choose_strategy on one server with max_quiesce_seconds="
        f"{CopySettings().max_quiesce_seconds:g}: {choice.strategy.value} ({choice.reason})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, build the source, measure, and always clean up (also on Ctrl-C)."""
    options = Options(__doc__, "a few seconds: a small database and filestore, same steps")
    options.size("--size-mb", 1024, 24, "source size in MB")
    options.size("--files", 2000, 60, "filestore files")
    options.size("--filestore-mb", 300, 6, "filestore MB")
    parser = options.parser
    parser.add_argument(
        "--jobs", type=count, default=CopySettings().jobs, help="stream connections (default 4)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the source database and volume")
    parser.add_argument(
        "--repeat", type=count, default=1, help="rounds of every measurement (default 1)"
    )
    parser.add_argument(
        "--gen-jobs", type=count, default=2, help="connections generating the source (default 2)"
    )
    args = options.parse(argv)
    print(title(__doc__))
    images = fixture_images()
    scratch = Scratch()
    driver = open_driver(scratch.instance)
    check_services(driver, images)
    started = time.perf_counter()
    keep: tuple[str, ...] = ()
    if args.keep:
        keep = (scratch.database("src"), scratch.role("src_owner"), scratch.volume("src"))
    try:
        run(args, scratch, driver, images)
    finally:
        with uninterruptible():
            seconds, summary = timed(lambda: scratch.cleanup(driver, keep))
            print(f"\ncleanup in {seconds:.1f} s: removed {summary}")
            if keep:
                print(kept_message(keep))
            driver.close()
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def kept_message(keep: Sequence[str]) -> str:
    db, role, volume = keep
    return (
        f"kept (--keep): database {db}, role {role}, volume {volume}; remove them with\n"
        f"  psql -h {ADMIN.host} -U {ADMIN.user} -c 'DROP DATABASE {db} WITH (FORCE)' "
        f"-c 'DROP ROLE {role}'; docker volume rm {volume}"
    )


if __name__ == "__main__":
    run_main(main, "anything created was removed first")
