#!/usr/bin/env python3
"""Backing up an environment and masking a copy of it: throughput against plain pg_dump.

What is measured, on one generated Odoo-like database (``bench/_odoo_db.py``; 512 MB by
default) with a small filestore (200 files, 20 MB) in a Docker volume:

* baselines: ``pg_dump -Fc`` (its default zlib compression) to nowhere, which is what a
  plain backup costs before it is stored anywhere; ``pg_dump -Fc -Z0`` (what the product runs)
  and ``pg_dump -Fc -Z0 | zstd -3 -T1`` (the same compression by the C tool) for reference.
  Each output goes through ``wc -c`` to be counted, not stored.
* ``Lifecycle.backup`` end to end with a real ``Site``, a ``FileStorage`` in a temporary
  directory and a fresh key: ``pg_dump -Fc -Z0`` -> framing -> zstd -> AES-256-GCM -> file
  (fsync), the filestore exported through Docker into the same stream, then the backup read
  back whole (``verify``: every tag, the checksum, ``pg_restore --list``) before the manifest
  is written. The progress reports split the write from that read-back.
* ``Lifecycle.verify`` alone, timed apart: the read-back throughput.
* masking: ``masking.mask(conn, load_rules(None), salt)`` (the built-in rules) on a template
  copy of the database, against a plain ``UPDATE`` that sets the same columns of the same
  tables to themselves on another copy (the cost of rewriting those rows without hashing).

How to read it: ``MB/s`` is the uncompressed input over the time (the ``-Z0`` dump's size for
``pg_dump``; for the backup also the filestore, a few percent more); ``rate x`` is a row's
MB/s over that of ``pg_dump -Fc``, and ``time x`` its seconds over that baseline's, both
measured in the same run. The data's compressibility is synthetic (``md5`` hex text shrinks
about 2x, real text more; attachments are incompressible), so the stored size and ratio say
more about zstd against zlib on the same bytes than about a real database. Nothing here
asserts: a benchmark reports, a test decides. Run from the repository root::

    .venv/bin/python bench/backup.py [--quick] [--size-mb 512]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/backup.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

from psycopg import sql  # noqa: E402

from bench._cli import Options, count, run_main, timed, title, uninterruptible  # noqa: E402
from bench._odoo_db import (  # noqa: E402
    ADMIN,
    MB,
    FixtureImages,
    Scratch,
    check_services,
    create_role,
    fill_filestore,
    fixture_images,
    generate,
    mb,
    open_driver,
)
from reconciler.core.model import Tier  # noqa: E402
from reconciler.data.backup.crypto import BackupKey  # noqa: E402
from reconciler.data.backup.storage import FileStorage  # noqa: E402
from reconciler.data.database import masking  # noqa: E402
from reconciler.data.database.copy import Strategy, copy_database, drop_database  # noqa: E402
from reconciler.data.database.endpoint import Endpoint, client_tool  # noqa: E402
from reconciler.data.lifecycle import Lifecycle, Site  # noqa: E402
from reconciler.data.moves import Moves  # noqa: E402
from reconciler.drivers.docker import DockerDriver, database_reach  # noqa: E402
from reconciler.engine.ledger import Ledger  # noqa: E402


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    in_bytes: int
    out_bytes: int | None = None


# ================================================================================= backup
def pg_dump_counted(source: Endpoint, options: str, then: str = "") -> tuple[float, int]:
    """``pg_dump OPTIONS [| THEN] | wc -c``: seconds and the bytes it produced."""
    pipeline = f"{client_tool('pg_dump')} {options} {then} | wc -c"
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **source.env()}
    seconds, done = timed(
        lambda: subprocess.run(
            ["bash", "-o", "pipefail", "-c", pipeline],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    )
    return seconds, int(done.stdout.strip())


def measure_backup(
    lifecycle: Lifecycle, site: Site, storage: FileStorage, level: int
) -> tuple[list[Row], dict[str, Any], dict[str, float]]:
    """One backup (with its own verify) and one verify alone; rows, manifest sizes, phases."""
    key = BackupKey.of(os.urandom(32))
    marks: dict[str, float] = {}

    def progress(phase: str, _done: int, _total: int) -> None:
        marks.setdefault(phase, time.perf_counter())

    started = time.perf_counter()
    record = lifecycle.backup(site, storage, key, reason="bench", level=level, progress=progress)
    ended = time.perf_counter()
    sizes = dict(record.doc["sizes"])
    seconds, counts = timed(lambda: lifecycle.verify(storage, key, record, site.key))
    if counts["database_bytes"] != sizes["database_bytes"]:
        raise RuntimeError(f"verify read {counts} back, the manifest says {sizes}")
    plain, stored = int(sizes["plain_bytes"]), int(sizes["stored_bytes"])
    verifying = marks["verifying"]
    phases = {
        "dump": marks["archiving the filestore"] - marks.get("dumping the database", started),
        "filestore": verifying - marks["archiving the filestore"],
        "start": marks.get("dumping the database", started) - started,
    }
    rows = [
        Row("backup: write (dump, frame, zstd, AES, fsync)", verifying - started, plain, stored),
        Row("backup: its own read-back before the manifest", ended - verifying, plain),
        Row("Lifecycle.backup in all", ended - started, plain, stored),
        Row("Lifecycle.verify alone (read back whole)", seconds, plain),
    ]
    return rows, sizes, phases


def print_backup(rows: Sequence[Row], baseline: Row) -> None:
    print(
        f"\n  {'step':<48} {'seconds':>8} {'in MB':>7} {'MB/s':>7} {'out MB':>7} "
        f"{'time x':>7} {'rate x':>7}"
    )
    base_rate = baseline.in_bytes / baseline.seconds
    for row in rows:
        rate = row.in_bytes / row.seconds
        out = mb(row.out_bytes) if row.out_bytes is not None else "-"
        print(
            f"  {row.label:<48} {row.seconds:>8.2f} {mb(row.in_bytes):>7} {rate / MB:>7,.0f} "
            f"{out:>7} {row.seconds / baseline.seconds:>7.2f} {rate / base_rate:>7.2f}"
        )


# ================================================================================ masking
def plain_rewrite(conn: Any, rules: masking.MaskingRules) -> dict[str, int]:
    """Set the columns the rules name to themselves, on every row with a value in one of them,
    in one transaction: the same writes as masking without computing any mask."""
    present = {
        (str(t), str(c))
        for t, c in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    }
    rows: dict[str, int] = {}
    with conn.transaction():
        for rule in rules.rules:
            names = [
                sql.Identifier(m.column)
                for m in rule.columns
                if m.kind is not masking.Kind.KEEP and (rule.table, m.column) in present
            ]
            if not names:
                continue
            cur = conn.execute(
                sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    sql.Identifier(rule.table),
                    sql.SQL(", ").join(sql.SQL("{0} = {0}").format(n) for n in names),
                    sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(n) for n in names),
                )
            )
            rows[rule.table] = cur.rowcount
    return rows


def measure_masking(scratch: Scratch, source: Endpoint, owner: Endpoint) -> None:
    rules = masking.load_rules(None)
    copies = {name: ADMIN.with_db(scratch.database(name)) for name in ("mask_plain", "mask_masked")}
    for target in copies.values():
        copy_database(
            source, target, source_login=owner, target_login=owner, strategy=Strategy.TEMPLATE
        )
    try:  # as the lifecycle masks: logged in as the copy's owner
        with owner.with_db(copies["mask_plain"].dbname).connect() as conn:
            plain_seconds, plain_rows = timed(lambda: plain_rewrite(conn, rules))
        with owner.with_db(copies["mask_masked"].dbname).connect() as conn:
            seconds, report = timed(lambda: masking.mask(conn, rules, secrets.token_hex(16)))
    finally:
        for target in copies.values():
            drop_database(target)
    masked = sum(report.rows.values())
    plain = sum(plain_rows.values())
    print(
        "\nMasking: masking.mask(conn, load_rules(None), salt), the built-in rules, on a "
        "template copy;\n  the plain rewrite sets the same columns to themselves on another copy"
    )
    print(f"  {'table':<22} {'rows masked':>12} {'rows rewritten':>15}")
    for table in sorted(set(report.rows) | set(plain_rows)):
        print(f"  {table:<22} {report.rows.get(table, 0):>12,} {plain_rows.get(table, 0):>15,}")
    print(f"  {'':<22} {'seconds':>12} {'rows/s':>15}")
    print(f"  {'mask':<22} {seconds:>12.2f} {masked / seconds:>15,.0f}")
    print(f"  {'plain rewrite':<22} {plain_seconds:>12.2f} {plain / plain_seconds:>15,.0f}")
    print(
        f"  masking takes {seconds / plain_seconds:.2f}x the time of rewriting the same rows "
        f"(mask's own clock: {report.seconds:.2f} s); {len(report.skipped)} rule entries "
        "skipped (tables or columns this schema lacks)"
    )


# =================================================================================== main
def run(
    args: argparse.Namespace, scratch: Scratch, driver: DockerDriver, images: FixtureImages
) -> None:
    owner = scratch.role("owner")
    source = ADMIN.with_db(scratch.database("src"))
    volume = scratch.volume("filestore")
    login = create_role(owner)
    driver.create_volume(scratch.key, volume, protected=False)
    total = args.filestore_mb * MB
    seconds, files = timed(
        lambda: fill_filestore(driver, images, volume, source.dbname, args.files, total)
    )
    stored_files = sum(f.size for f in files)
    print(
        f"filestore: {len(files):,} files, {mb(stored_files)} MB into {volume} in {seconds:.1f} s"
    )
    generated = generate(source, owner, args.size_mb, files, jobs=args.gen_jobs)
    tables = ", ".join(f"{t} {n:,}" for t, n in generated.rows.items())
    print(
        f"source database {source.dbname}: {mb(generated.size_bytes)} MB "
        f"(pg_database_size) in {generated.seconds:.1f} s ({tables})"
    )

    plain_options = "--format=custom --compress=0 --no-owner --no-acl"
    fc_seconds, fc_bytes = pg_dump_counted(source, "--format=custom")
    z0_seconds, z0_bytes = pg_dump_counted(source, plain_options)
    zstd = f"| zstd -{args.level} -T1 -q -c"
    zs_seconds, zs_bytes = pg_dump_counted(source, plain_options, zstd)
    baseline = Row("pg_dump -Fc > /dev/null (baseline)", fc_seconds, z0_bytes, fc_bytes)
    rows = [
        baseline,
        Row("pg_dump -Fc -Z0 > /dev/null", z0_seconds, z0_bytes, z0_bytes),
        Row(
            f"pg_dump -Fc -Z0 | zstd -{args.level} -T1 > /dev/null", zs_seconds, z0_bytes, zs_bytes
        ),
    ]

    site = Site(
        key=scratch.key,
        endpoint=source,
        login=login.with_db(source.dbname),
        reach=database_reach(scratch.key, None),  # unused: a backup runs no tool container
        volume=volume,
        image=images.platform,
        odoo_image=images.odoo,
        tier=Tier.PRODUCTION,
        protected=False,
        instance=scratch.instance,
    )
    storage = FileStorage(scratch.temp_dir("odooops-bench-backups-"))
    ledger = Ledger(scratch.temp_dir("odooops-bench-ledger-") / "ledger.db")
    moves = Moves(
        driver,
        lambda: ledger,
        lambda key, initialised, revision, modules: None,
        lambda key: "bench",
    )
    lifecycle = Lifecycle(driver, moves)
    backup_rows, sizes, phases = measure_backup(lifecycle, site, storage, args.level)
    print(
        f"\nBackup: database dump {mb(sizes['database_bytes'])} MB (-Z0), filestore tar "
        f"{mb(sizes['filestore_bytes'])} MB; zstd level {args.level}, AES-256-GCM, to "
        f"{storage.url}"
    )
    print_backup(rows + backup_rows, baseline)
    plain, stored = int(sizes["plain_bytes"]), int(sizes["stored_bytes"])
    print(
        f"  stored {mb(stored)} MB of {mb(plain)} MB plain: ratio {plain / stored:.2f} with the "
        f"incompressible filestore; on the database dump alone pg_dump -Fc's zlib gets "
        f"{z0_bytes / fc_bytes:.2f} and the zstd CLI {z0_bytes / zs_bytes:.2f}"
    )
    print(
        f"  the write's phases: {phases['start']:.2f} s before the dump (backup id, module "
        f"inventory), {phases['dump']:.2f} s database (pg_dump through framing, zstd and AES "
        f"into the file), {phases['filestore']:.2f} s filestore through Docker, then closing "
        "the stream and fsync"
    )
    measure_masking(scratch, source, login)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, build the source, measure, and always clean up (also on Ctrl-C)."""
    options = Options(__doc__, "a few seconds: a small database and filestore, same steps")
    options.size("--size-mb", 512, 24, "source size in MB")
    options.size("--files", 200, 20, "filestore files")
    options.size("--filestore-mb", 20, 2, "filestore MB")
    options.parser.add_argument(
        "--level", type=count, default=3, help="zstd level (default 3, as backups)"
    )
    options.parser.add_argument(
        "--gen-jobs", type=count, default=2, help="connections generating the source (default 2)"
    )
    args = options.parse(argv)
    print(title(__doc__))
    images = fixture_images()
    scratch = Scratch()
    driver = open_driver(scratch.instance)
    check_services(driver, images)
    started = time.perf_counter()
    try:
        run(args, scratch, driver, images)
    finally:
        with uninterruptible():
            seconds, summary = timed(lambda: scratch.cleanup(driver))
            print(f"\ncleanup in {seconds:.1f} s: removed {summary}")
            driver.close()
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main, "anything created was removed first")
