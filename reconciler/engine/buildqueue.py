"""Image builds in a queue: at most ``quotas.max_concurrent_builds`` at once, first come first
served, each with a deadline, a log on disk and a record of its result.

A build is what users watch after a push (Odoo.sh shows it as a colour and a log), so every
build gets a record the API and CLI list (``odooops builds list``), a log streamed as the
builder writes it (``odooops builds logs ID --follow``), and a verdict: green, yellow or red
with the failing step and the lines that matter. Records and logs are files in the data
directory, written atomically; a daemon killed mid-build leaves a record it marks
``interrupted`` red on its next start, never one that stays "running" for ever.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.buildresult import BuildResult, verdict
from reconciler.core.errors import DriverError, OdooOpsError, sanitize

log = logging.getLogger("odooops.builds")

KEEP = 200  # records (and logs) kept, newest first
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours and cursor moves of a tool's output
QUEUED, RUNNING = "queued", "running"


@dataclass(frozen=True)
class BuildRecord:
    id: str
    project: str
    image: str
    revision: str
    environment: str  # the environment whose run asked for it first
    state: str  # queued, running, green, yellow or red
    queued_at: str
    started_at: str | None = None
    finished_at: str | None = None
    step: str = ""  # red: the instruction that failed
    excerpt: tuple[str, ...] = ()
    error: str = ""  # red: code and message of the failure
    warnings: int = 0
    position: int = 0  # queued: its place in the queue (1 is next)
    # The test gates run with the image, by environment: their reports (testgate.TestReport).
    tests: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state not in (QUEUED, RUNNING)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["excerpt"] = list(self.excerpt)
        doc["tests"] = dict(self.tests)
        if self.started_at and self.finished_at:
            doc["seconds"] = round(
                (_parse(self.finished_at) - _parse(self.started_at)).total_seconds(), 1
            )
        return doc


@dataclass
class _Waiting:
    id: str
    ready: threading.Event = field(default_factory=threading.Event)


# What a build does, given where its log lines go and its deadline (monotonic seconds).
BuildWork = Callable[[Callable[[str], None], float], None]


class BuildQueue:
    def __init__(
        self,
        folder: Path,
        limit: Callable[[], int],
        timeout: Callable[[], float],
        keep: int = KEEP,
        read_only: bool = False,
    ) -> None:
        self.folder = folder
        self._read_only = read_only  # a plan beside the daemon: reads, never recovers
        if not read_only:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._limit, self._timeout, self._keep = limit, timeout, keep
        self._lock = threading.Condition()
        self._records: dict[str, BuildRecord] = {}
        self._queue: list[str] = []
        self._running = 0
        self._last_ms = 0
        self._load()

    # ------------------------------------------------------------------------- reading
    def list(self, limit: int = 50, project: str | None = None) -> list[BuildRecord]:
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.id, reverse=True)
            return [self._with_position(r) for r in records if project in (None, r.project)][:limit]

    def get(self, build_id: str) -> BuildRecord | None:
        with self._lock:
            record = self._records.get(build_id)
            return self._with_position(record) if record else None

    def log_path(self, build_id: str) -> Path:
        return self.folder / f"{build_id}.log"

    def latest(self, image: str) -> BuildRecord | None:
        """The newest build of ``image``."""
        with self._lock:
            found = [r for r in self._records.values() if r.image == image]
        return max(found, key=lambda r: r.id) if found else None

    def attach_tests(self, image: str, environment: str, report: Mapping[str, Any]) -> None:
        """Keep a test gate's report with the newest build of ``image`` (a cached image
        tested for another environment has no build of its own this time: then the newest
        one it ever had, if still recorded)."""
        with self._lock:
            record = self.latest(image)
            if record is None:
                return
            record = replace(record, tests={**record.tests, environment: dict(report)})
            self._records[record.id] = record
            self._save(record)

    def _with_position(self, record: BuildRecord) -> BuildRecord:
        if record.state != QUEUED or record.id not in self._queue:
            return record
        return replace(record, position=self._queue.index(record.id) + 1)

    # ------------------------------------------------------------------------- running
    def run(
        self,
        image: str,
        project: str,
        environment: str,
        revision: str,
        work: BuildWork,
        on_queued: Callable[[int, int], None] | None = None,
    ) -> BuildRecord:
        """Queue the build, wait for a slot, run ``work``, judge it; the final record. A red
        build raises ``build_failed`` (or what the builder raised) naming the record."""
        build_id = self._new_id()
        record = BuildRecord(build_id, project, image, revision, environment, QUEUED, _now())
        with self._lock:
            self._records[build_id] = record
            self._queue.append(build_id)
            self._save(record)
            while self._queue[0] != build_id or self._running >= max(1, self._limit()):
                if on_queued is not None:
                    on_queued(self._queue.index(build_id) + 1, len(self._queue))
                self._lock.wait(timeout=5)
            self._queue.remove(build_id)
            self._running += 1
            self._lock.notify_all()
            record = replace(record, state=RUNNING, started_at=_now())
            self._records[build_id] = record
            self._save(record)
        lines: list[str] = []
        error: OdooOpsError | None = None
        try:
            with self.log_path(build_id).open("a", encoding="utf-8") as out:

                def on_line(text: str) -> None:
                    text = _ANSI.sub("", sanitize(text))
                    lines.extend(text.splitlines())
                    out.write(text if text.endswith("\n") else text + "\n")
                    out.flush()

                try:
                    work(on_line, time.monotonic() + self._timeout())
                except OdooOpsError as exc:
                    error = exc
                    on_line(f"[odooops] {exc.code}: {exc.message.splitlines()[0]}")
        finally:
            judged = verdict(lines, None if error is None else error.message.splitlines()[0])
            record = replace(
                record,
                state=judged.result.value,
                finished_at=_now(),
                step=judged.step,
                excerpt=judged.excerpt,
                warnings=judged.warnings,
                error="" if error is None else f"{error.code}: {error.message.splitlines()[0]}",
            )
            with self._lock:
                self._running -= 1
                self._records[build_id] = record
                self._save(record)
                self._trim()
                self._lock.notify_all()
        if error is not None:
            shown = record.step if len(record.step) <= 100 else record.step[:97] + "..."
            step = f" at step {shown!r}" if record.step else ""
            raise DriverError(
                f"build {build_id} of {image} is red{step}: "
                + "\n".join(record.excerpt[-8:] or (error.message,)),
                code=error.code if error.code == "build_timed_out" else "build_failed",
                retryable=False,
                remediation=f"odooops builds logs {build_id}; fix the app repository and push "
                "a new commit",
            ) from error
        return record

    def _new_id(self) -> str:
        """``b<UTC time to the millisecond>-<random>``: ids sort as the builds were asked
        for, even several in one millisecond."""
        with self._lock:
            now = max(int(time.time() * 1000), self._last_ms + 1)
            self._last_ms = now
        stamp = datetime.fromtimestamp(now / 1000, UTC)
        return f"b{stamp:%Y%m%d%H%M%S}{now % 1000:03d}-{secrets.token_hex(3)}"

    # ------------------------------------------------------------------------- storage
    def _save(self, record: BuildRecord) -> None:
        path = self.folder / f"{record.id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record.to_dict()))
        os.replace(tmp, path)

    def _load(self) -> None:
        """Read the records back; one a killed daemon left queued or running is red now."""
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else ():
            try:
                doc = json.loads(path.read_text())
                fields = {k: doc[k] for k in BuildRecord.__dataclass_fields__ if k in doc}
                fields["excerpt"] = tuple(fields.get("excerpt", ()))
                fields["tests"] = dict(fields.get("tests") or {})
                record = BuildRecord(**fields)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("unreadable build record %s: %s", path.name, exc)
                continue
            if not record.done and not self._read_only:
                record = replace(
                    record,
                    state=BuildResult.RED.value,
                    finished_at=record.finished_at or _now(),
                    error="interrupted: the daemon stopped during the build",
                    position=0,
                )
                self._save(record)
            self._records[record.id] = record

    def _trim(self) -> None:
        done = sorted((r for r in self._records.values() if r.done), key=lambda r: r.id)
        for record in done[: max(0, len(self._records) - self._keep)]:
            del self._records[record.id]
            for suffix in (".json", ".log"):
                (self.folder / f"{record.id}{suffix}").unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
