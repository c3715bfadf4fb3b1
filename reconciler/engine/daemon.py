"""The long-running daemon: polls with jitter, reconciles, and can be triggered at once.

APScheduler owns the timing: one interval job with jitter (``max_instances=1``, coalesced),
so passes never overlap and a burst of triggers collapses into one pass. ``trigger()`` is what
webhooks and API writes call: it moves the next run to now instead of waiting for the poll.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from starlette.types import ASGIApp

from reconciler.core.errors import OdooOpsError
from reconciler.engine.engine import Engine, PassResult

log = logging.getLogger("odooops.daemon")

JOB_ID = "reconcile"
DATA_JOB_ID = "data-schedules"
DATA_CHECK_SECONDS = 60


class Daemon:
    def __init__(
        self,
        engine: Engine,
        interval: int | None = None,
        jitter: int | None = None,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self.engine = engine
        self._interval_override = interval
        self._jitter_override = jitter
        self._on_pass = on_pass
        self._stopped = threading.Event()
        self._scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._schedule: tuple[int, int] | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._catcher_settings: object = None
        engine.on_change = self.trigger
        # aiosmtpd warns about its own deprecated attribute on every login.
        logging.getLogger("mail.log").setLevel(logging.ERROR)

    def _timing(self) -> tuple[int, int]:
        platform = self.engine.last_good.platform if self.engine.last_good else None
        interval = self._interval_override or (platform.interval if platform else 60)
        jitter = (
            self._jitter_override
            if self._jitter_override is not None
            else (platform.jitter if platform else 15)
        )
        return interval, jitter

    def _run_pass(self) -> None:
        try:
            result = self.engine.reconcile()
        except Exception:  # the loop must survive anything; the next pass retries
            log.exception("reconcile pass crashed")
            return
        if self._on_pass is not None:
            self._on_pass(result)
        self._mail_catcher()
        timing = self._timing()
        if timing != self._schedule:  # odooops.yaml changed the poll interval
            self._schedule = timing
            self._scheduler.reschedule_job(
                JOB_ID, trigger=IntervalTrigger(seconds=timing[0], jitter=timing[1])
            )

    def _mail_catcher(self) -> None:
        """(Re)start the mail catcher when the platform's settings for it appear or change."""
        config = self.engine.last_good
        if config is None or config.platform.mail_catcher == self._catcher_settings:
            return
        self.engine.data.stop_mail_catcher()
        try:
            self.engine.data.start_mail_catcher()
        except OdooOpsError as exc:
            log.error("mail catcher not started: %s", exc.render())
            return
        self._catcher_settings = config.platform.mail_catcher
        settings = config.platform.mail_catcher
        log.info("mail catcher listening on %s:%s", settings.listen, settings.port)

    def _run_schedules(self) -> None:
        try:
            started = self.engine.schedules.run(datetime.now(UTC))
        except Exception:  # the scheduler must survive anything; the next check retries
            log.exception("data schedules crashed")
            return
        for what in started:
            log.info("scheduled: %s", what)

    def trigger(self) -> None:
        """Run a pass as soon as the current one (if any) is done."""
        job = self._scheduler.get_job(JOB_ID)
        if job is not None:
            job.modify(
                next_run_time=datetime.now(job.next_run_time.tzinfo if job.next_run_time else None)
            )

    def serve(self, app: ASGIApp, host: str, port: int) -> None:
        """Serve the API from a thread of its own; it stops with the daemon."""
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started and self._server_thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not self._server.started:
            raise OdooOpsError(
                f"the API cannot listen on {host}:{port} (in use, or not an address here)",
                code="listen_failed",
                remediation="pass --listen HOST:PORT with a free port, or --listen off",
            )

    def run(self) -> None:
        """Block until SIGINT/SIGTERM; the first pass starts immediately."""
        interval, jitter = self._timing()
        self._schedule = (interval, jitter)
        self._scheduler.add_job(
            self._run_pass,
            IntervalTrigger(seconds=interval, jitter=jitter),
            id=JOB_ID,
            next_run_time=datetime.now().astimezone(),
        )
        self._scheduler.add_job(
            self._run_schedules, IntervalTrigger(seconds=DATA_CHECK_SECONDS), id=DATA_JOB_ID
        )
        self._scheduler.start()

        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current step", signum)
            self._stopped.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self._stopped.wait()
        if self._server is not None:
            self._server.should_exit = True
        self._scheduler.shutdown(wait=True)
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)

    def stop(self) -> None:
        self._stopped.set()
