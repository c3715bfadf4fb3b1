#!/usr/bin/env python3
"""A masked copy of production through its golden copy, against a direct copy masked on the way.

What is measured, on one generated Odoo-like production database (``bench/_odoo_db.py``; 1 GB
by default, about 40% of it partners) and its filestore in a Docker volume:

* **the golden copy's refresh**, reported apart (it runs in the background, on a schedule and
  after production updates, never while someone waits for a copy): ``GoldenCopies.refresh``
  streams production into a scratch database (no pause of production), neutralises and masks
  it, hard-links the filestore in production's volume, and swaps it in by rename;
* **a masked copy through the golden copy** (what a preview or a staging copy of production
  costs with ``golden`` in policies.yaml): ``Lifecycle.clone_golden``, a template copy of the
  golden copy, a new identity and catcher login, the filestore copied into the target's
  volume, swapped in as a journalled move;
* **a direct masked copy** (without the policy): ``Lifecycle.clone``, a template copy of
  production (a short quiesce of it), then neutralisation and masking on the copy, the
  filestore copied, swapped in;
* **a streamed copy of the golden copy**: what a dev tier, whose PostgreSQL is its own
  container, gets (a template copy needs one server); measured into the same server reached
  under another host name, which is all ``clone_golden`` looks at to choose.

How to read it: ``ratio`` is the direct copy's time over the golden copy's, both measured in
this run (aim: the golden copy at least 5x faster on 1 GB, and under 30 s; the refresh is not
counted against it). Odoo's own neutralisation scripts are not run here (no Odoo image runs:
``odoo_sql`` is None), in the refresh and the direct copy alike. Run from the repository root::

    .venv/bin/python bench/golden.py [--quick] [--size-mb 1024]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/golden.py` puts bench/, not the root, first
    sys.path.insert(0, str(REPO_ROOT))

from psycopg import sql  # noqa: E402

from bench._cli import Options, run_main, timed, title, uninterruptible, verdict  # noqa: E402
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
from reconciler.core.model import CopySettings, EnvKey, Tier  # noqa: E402
from reconciler.data.database import masking  # noqa: E402
from reconciler.data.database.copy import database_size  # noqa: E402
from reconciler.data.database.endpoint import Endpoint  # noqa: E402
from reconciler.data.golden import GoldenCopies  # noqa: E402
from reconciler.data.lifecycle import Lifecycle, Sanitising, Site  # noqa: E402
from reconciler.data.moves import Moves  # noqa: E402
from reconciler.drivers.docker import DatabaseReach, DockerDriver  # noqa: E402

SALT = "bench-golden"
AIM_SECONDS = 30.0
AIM_RATIO = 5.0


@dataclass(frozen=True)
class Entry:
    id: int
    key: EnvKey
    kind: str
    doc: Mapping[str, Any]


@dataclass
class MemoryLedger:
    """The ledger's journal and golden table, in memory (the run's daemon is this script)."""

    entries_: dict[int, Entry] = field(default_factory=dict)
    golden_: dict[EnvKey, Mapping[str, Any]] = field(default_factory=dict)
    kept_: dict[EnvKey, Mapping[str, Any]] = field(default_factory=dict)
    restores_: dict[EnvKey, Mapping[str, Any]] = field(default_factory=dict)
    next_id: int = 1

    def open_entry(self, key: EnvKey, kind: str, doc: Mapping[str, Any]) -> int:
        self.next_id += 1
        self.entries_[self.next_id] = Entry(self.next_id, key, kind, dict(doc))
        return self.next_id

    def update_entry(self, entry_id: int, doc: Mapping[str, Any]) -> None:
        self.entries_[entry_id] = replace(self.entries_[entry_id], doc=dict(doc))

    def close_entry(self, entry_id: int) -> None:
        self.entries_.pop(entry_id, None)

    def entries(self, key: EnvKey | None = None) -> list[Entry]:
        return [e for e in self.entries_.values() if key is None or e.key == key]

    def kept(self, key: EnvKey) -> Mapping[str, Any] | None:
        return self.kept_.get(key)

    def put_kept(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        self.kept_[key] = doc

    def forget_kept(self, key: EnvKey) -> None:
        self.kept_.pop(key, None)

    def restore_mark(self, key: EnvKey) -> Mapping[str, Any] | None:
        return self.restores_.get(key)

    def put_restore_mark(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        self.restores_[key] = doc

    def forget_restore_mark(self, key: EnvKey) -> None:
        self.restores_.pop(key, None)

    def golden(self, key: EnvKey) -> Mapping[str, Any] | None:
        return self.golden_.get(key)

    def goldens(self) -> Mapping[EnvKey, Mapping[str, Any]]:
        return dict(self.golden_)

    def put_golden(self, key: EnvKey, doc: Mapping[str, Any]) -> None:
        self.golden_[key] = doc

    def forget_golden(self, key: EnvKey) -> None:
        self.golden_.pop(key, None)


def site(
    scratch: Scratch, env: str, login: Endpoint, volume: str, images: FixtureImages, tier: Tier
) -> Site:
    key = EnvKey(scratch.key.project, env)
    return Site(
        key=key,
        endpoint=ADMIN.with_db(scratch.database(env)),
        login=login,
        reach=DatabaseReach(key.network, "db", 5432),
        volume=volume,
        image=images.platform,
        odoo_image=images.odoo,
        tier=tier,
        protected=tier is Tier.PRODUCTION,
        instance=scratch.instance,
        revision="0" * 40,
    )


def partners_masked(target: Site, original: set[str]) -> int:
    """How many of the target's partner e-mails are production's own: only those masking
    keeps on purpose (the companies' and the administrators')."""
    with target.login.with_db(target.database).connect() as conn:
        rows = conn.execute("SELECT email FROM res_partner WHERE email IS NOT NULL").fetchall()
    return len({str(r[0]) for r in rows} & original)


@contextmanager
def golden_databases(owner: str) -> Iterator[None]:
    """Drop what the run made under names without the scratch prefix (the golden copy and
    any scratch copy of a move): every database the run's roles own, at the end."""
    try:
        yield
    finally:
        with ADMIN.connect() as conn:
            rows = conn.execute(
                "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE r.rolname = %s",
                [owner],
            ).fetchall()
            for (name,) in rows:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(str(name))))


def run(args: Any, scratch: Scratch, driver: DockerDriver, images: FixtureImages) -> None:
    prod_login = create_role(scratch.role("prod"))
    copy_login = create_role(scratch.role("copy"))
    prod_volume, copy_volume = scratch.volume("prod"), scratch.volume("copy")
    for volume in (prod_volume, copy_volume):
        driver.create_volume(scratch.key, volume, protected=False)
    prod = site(scratch, "prod", prod_login, prod_volume, images, Tier.PRODUCTION)
    target = site(scratch, "copy", copy_login, copy_volume, images, Tier.STAGING)
    files = fill_filestore(
        driver, images, prod_volume, prod.database, args.files, args.filestore_mb * MB
    )
    generated = generate(prod.endpoint, prod_login.user, args.size_mb, files, jobs=2)
    size = database_size(prod.endpoint)
    with prod.login.with_db(prod.database).connect() as conn:
        rows = conn.execute("SELECT email FROM res_partner WHERE email IS NOT NULL").fetchall()
    original = {str(r[0]) for r in rows}
    print(
        f"production: {mb(size)} MB, {generated.rows['res_partner']:,} partners, "
        f"{len(files):,} files in the filestore (generated in {generated.seconds:.0f} s)"
    )
    with golden_databases(prod_login.user), golden_databases(copy_login.user):
        measure(args, driver, prod, target, original, size)


def measure(
    args: Any, driver: DockerDriver, prod: Site, target: Site, original: set[str], size: int
) -> None:
    ledger = MemoryLedger()
    moves = Moves(driver, lambda: ledger, lambda *_: None, lambda key: "bench")
    lifecycle = Lifecycle(driver, moves)
    golden = GoldenCopies(driver, lambda: ledger)
    rules = masking.load_rules(None)
    sanitising = Sanitising(mail=None, mask=True, rules=rules, salt=SALT)
    jobs = CopySettings().jobs

    refresh_s, record = timed(
        lambda: golden.refresh(
            prod, sanitising, reason="bench", jobs=jobs, progress=lambda *_: None
        )
    )
    assert record is not None
    source = golden.current(prod)
    assert source is not None
    through_s, through = timed(lambda: lifecycle.clone_golden(source, target, None, jobs=jobs))
    leaked_golden = partners_masked(target, original)
    stream_target = replace(
        target,
        endpoint=replace(target.endpoint, host="localhost"),
        login=replace(target.login, host="localhost"),
    )
    stream_s, streamed = timed(
        lambda: lifecycle.clone_golden(source, stream_target, None, jobs=jobs)
    )
    direct_s, direct = timed(
        lambda: lifecycle.clone(
            prod,
            target,
            sanitising,
            max_quiesce_seconds=CopySettings().max_quiesce_seconds,
            jobs=jobs,
        )
    )
    leaked_direct = partners_masked(target, original)

    print(f"\n  {'operation':<58} {'seconds':>8} {'MB/s':>8}")
    rows = (
        ("golden copy refresh (stream, neutralise, mask, link; apart)", refresh_s),
        (f"masked copy through the golden copy ({through['strategy']})", through_s),
        (f"masked copy through the golden copy ({streamed['strategy']}, a dev tier)", stream_s),
        (f"direct copy + mask ({direct['strategy']})", direct_s),
    )
    for label, seconds in rows:
        print(f"  {label:<58} {seconds:>8.2f} {size / MB / seconds:>8,.0f}")
    print(
        f"\n  refresh: {record['masked_rows']:,} rows masked in {record['masking_seconds']} s, "
        f"copy {record['copy_seconds']} s, {record['filestore_files']} files linked"
    )
    print(
        f"  direct copy: {direct.get('masked_rows', 0):,} rows masked in "
        f"{direct.get('masking_seconds', 0)} s on every copy"
    )
    print(
        f"  production e-mails left in the copies: through the golden copy {leaked_golden}, "
        f"direct {leaked_direct} (the companies' and administrators', which masking keeps)"
    )
    ratio = direct_s / through_s
    print(
        f"\nratio direct / through the golden copy: {ratio:.1f}x "
        f"(aim >= {AIM_RATIO:g}x on 1 GB: {verdict(ratio >= AIM_RATIO)}); "
        f"through the golden copy {through_s:.1f} s (aim < {AIM_SECONDS:g} s: "
        f"{verdict(through_s < AIM_SECONDS)}); a dev tier's streamed copy "
        f"{stream_s / through_s:.1f}x the template copy"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = Options(__doc__, "a few seconds: a small production, same steps")
    options.size("--size-mb", 1024, 24, "production's size in MB")
    options.size("--files", 2000, 40, "filestore files")
    options.size("--filestore-mb", 300, 4, "filestore MB")
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
