"""The long-running daemon: triggers in, keyed work queues, the engine's runs out.

Every trigger is a keyed event on a work queue (``reconciler.engine.queue``), so none is lost
and none waits behind an unrelated environment:

- the poll timer, webhooks, API writes and change-request merges put the ``refresh`` key: one
  worker fetches, resolves, observes and plans everything, and puts each environment that
  needs work on the environment queue;
- Docker events (one of our containers died, was removed, went unhealthy), data jobs that end,
  and a copy's source becoming ready put one environment's key directly;
- with a proxy, the access log is read twice a second (``reconciler.engine.sleeper``): a
  request for a sleeping environment, or an environment idle for its ``sleep_after``, puts
  that environment's key;
- the environment queue runs ``quotas.max_concurrent_deployments`` environments at once, one
  run per environment at a time; a trigger during a run makes it run again right after.

Stopping (SIGTERM, SIGINT) ends every run after its current step (waits for health and
one-off Odoo runs are interrupted), well within Docker's stop timeout; the next start
finishes or rolls back whatever a step left open.
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
from reconciler.core.model import EnvKey
from reconciler.engine.engine import Engine
from reconciler.engine.previews import Previews
from reconciler.engine.promotions import Promoter
from reconciler.engine.queue import WorkQueue
from reconciler.engine.reviews import Reviews
from reconciler.engine.sleeper import SCAN_SECONDS

log = logging.getLogger("odooops.daemon")

POLL_JOB = "poll"
DATA_JOB = "data-schedules"
DATA_CHECK_SECONDS = 60
IMAGES_JOB = "image-gc"
IMAGES_CHECK_SECONDS = 600  # whether a day passed since the last image collection
PREVIEWS_POLL_JOB = "previews-poll"
PREVIEWS_POLL_SECONDS = 300  # the forges' open requests, the safety net of deliveries
PREVIEWS_PUBLISH_JOB = "previews-publish"
PREVIEWS_PUBLISH_SECONDS = 15  # previews' comments brought up to date with their status
PROMOTE_JOB = "promote-rules"
PROMOTE_CHECK_SECONDS = 60  # whether a promote rule of policies.yaml is due
REFRESH = "refresh"
STOP_TIMEOUT = 8.0  # Docker's default stop timeout is 10 s
EVENTS_RETRY_CAP = 30.0
REFRESH_RETRY_CAP = 60.0


class Daemon:
    def __init__(
        self,
        engine: Engine,
        interval: int | None = None,
        jitter: int | None = None,
        on_change: Callable[[], None] | None = None,
        previews: Previews | None = None,
        previews_poll: int = PREVIEWS_POLL_SECONDS,
        reviews: Reviews | None = None,
    ) -> None:
        self.engine = engine
        self.previews = previews
        self.reviews = reviews
        self._previews_poll = previews_poll
        self._interval_override = interval
        self._jitter_override = jitter
        self._on_change = on_change or (lambda: None)
        self._stopped = threading.Event()
        self.refreshes: WorkQueue[str] = WorkQueue("refresh", self._refresh, workers=1)
        self.envs: WorkQueue[EnvKey] = WorkQueue("apply", self._run_env, workers=self._bound())
        # The queues' cancel and the engine's are one: a stop ends every run after its step.
        self.envs.cancel = engine.cancel
        self._scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._schedule: tuple[int, int] | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._catcher_settings: object = None
        self._refresh_failures = 0
        # The automatic promote rules; None when the daemon has no state writer.
        self.promoter: Promoter | None = None
        engine.on_change = self.trigger
        engine.on_env = self.put_env
        # aiosmtpd warns about its own deprecated attribute on every login.
        logging.getLogger("mail.log").setLevel(logging.ERROR)

    # -------------------------------------------------------------------------- triggers
    def trigger(self, reason: str = "trigger") -> None:
        """A refresh now (a webhook, an API write, a merge): queued, never dropped."""
        self.refreshes.put(REFRESH, reason)

    def put_env(self, key: EnvKey, reason: str) -> None:
        self.envs.put(key, reason)
        self.engine.metrics.queue_depth.set(self.envs.depth())

    # ----------------------------------------------------------------------------- runs
    def _refresh(self, _key: str, reasons: tuple[str, ...]) -> float | None:
        result = self.engine.refresh(busy=self.envs.pending)
        if result.error is not None and result.error.retryable:
            # The state or a service could not be read: try again soon, backing off, rather
            # than waiting for the next poll (a restarted server is picked up in seconds).
            self._refresh_failures += 1
            return float(min(REFRESH_RETRY_CAP, 2.0 * 2 ** (self._refresh_failures - 1)))
        self._refresh_failures = 0
        self.envs.resize(self._bound())
        for key in result.to_run:
            self.envs.put(key, f"refresh ({', '.join(reasons)})")
        self.engine.metrics.queue_depth.set(self.envs.depth())
        self._mail_catcher()
        self._sweep()
        timing = self._timing()
        if timing != self._schedule and self._scheduler.running:
            self._schedule = timing
            self._scheduler.reschedule_job(
                POLL_JOB, trigger=IntervalTrigger(seconds=timing[0], jitter=timing[1])
            )
        self._notify()
        return None

    def _run_env(self, key: EnvKey, reasons: tuple[str, ...]) -> float | None:
        log.debug("%s: run (%s)", key, ", ".join(reasons))
        try:
            return self.engine.reconcile_env(key, reasons)
        finally:
            self.engine.metrics.queue_depth.set(self.envs.depth())
            self._notify()

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:  # a display callback must never stop the daemon
            log.exception("status display failed")

    def _bound(self) -> int:
        config = self.engine.last_good
        return max(1, config.platform.quotas.max_concurrent_deployments) if config else 4

    def _timing(self) -> tuple[int, int]:
        platform = self.engine.last_good.platform if self.engine.last_good else None
        interval = self._interval_override or (platform.interval if platform else 60)
        jitter = (
            self._jitter_override
            if self._jitter_override is not None
            else (platform.jitter if platform else 15)
        )
        return interval, jitter

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

    def _sweep(self) -> None:
        """The TTL sweeper after a pass, at most once a minute (``engine.sweeper``); what it
        committed is applied by the pass it triggers. Its failure (the remote refused the
        push, or is away) is logged and retried at the next run, never raised."""
        try:
            result = self.engine.sweeper.sweep_if_due(self.engine.last_good)
        except OdooOpsError as exc:
            log.error("TTL sweep failed, tried again after the next pass: %s", exc.render())
            return
        except Exception:
            log.exception("TTL sweep crashed")
            return
        if result is not None and result.commits:
            self.trigger("ttl sweep")

    def _collect_images(self) -> None:
        """The daily image collection, when due (``engine.images``); its failure is logged
        and retried at the next check, never raised into the scheduler."""
        try:
            self.engine.images.collect_if_due()
        except OdooOpsError as exc:
            log.error("image collection failed: %s", exc.render())
        except Exception:
            log.exception("image collection crashed")

    def _poll_previews(self) -> None:
        """The forges' open requests (``engine.previews``); failures are logged there."""
        if self.previews is None:
            return
        try:
            self.previews.poll(self.engine.last_good)
        except Exception:
            log.exception("previews: polling crashed")

    def _publish_previews(self) -> None:
        if self.previews is None:
            return
        try:
            self.previews.publish(self.engine.last_good)
        except Exception:
            log.exception("previews: publishing crashed")

    def _promote(self) -> None:
        """The promote rules that are due (``engine.promotions``); never raises."""
        config = self.engine.last_good
        if self.promoter is None or config is None or not config.policies.promote:
            return  # no rule: the state repository is not asked every minute
        try:
            self.promoter.run(datetime.now(UTC))
        except Exception:
            log.exception("promote rules crashed")

    def _watch_events(self) -> None:
        """Docker's events put the environment of a container that died or went away on the
        queue at once (a ``docker rm`` heals in seconds, not at the next poll). When the
        stream breaks (dockerd restarted), reconnect with back-off and refresh everything."""
        delay = 1.0
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                for event in self.engine.docker.events(self._stopped):
                    self.put_env(event.key, f"docker: {event.action} {event.container}")
            except OdooOpsError as exc:
                log.warning("Docker events unavailable: %s", exc.message)
            if self._stopped.is_set():
                return
            delay = 1.0 if time.monotonic() - started > 60 else min(EVENTS_RETRY_CAP, delay * 2)
            self._stopped.wait(delay)
            self.trigger("docker events reconnected")

    def _watch_requests(self) -> None:
        """The proxy's access log, read every ``SCAN_SECONDS``: the environments it wakes or
        finds idle go on the queue. A failure is logged and the next read tries again."""
        while not self._stopped.wait(SCAN_SECONDS):
            try:
                for key, why in self.engine.sleeper.scan():
                    self.put_env(key, why)
            except Exception:  # the watch must survive anything; the next read retries
                log.exception("reading the proxy's access log failed")

    # ------------------------------------------------------------------------------ api
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

    # ---------------------------------------------------------------------------- life
    def start(self) -> None:
        """Recover what a crash left open, then start the queues, timers and event watch."""
        for outcome in self.engine.recover():
            log.warning("recovered: %s", outcome)
        interval, jitter = self._timing()
        self._schedule = (interval, jitter)
        self._scheduler.add_job(
            self.trigger,
            IntervalTrigger(seconds=interval, jitter=jitter),
            id=POLL_JOB,
            args=["poll"],
        )
        self._scheduler.add_job(
            self._run_schedules, IntervalTrigger(seconds=DATA_CHECK_SECONDS), id=DATA_JOB
        )
        self._scheduler.add_job(
            self._collect_images, IntervalTrigger(seconds=IMAGES_CHECK_SECONDS), id=IMAGES_JOB
        )
        if self.previews is not None:
            self.previews.start()
            self._scheduler.add_job(
                self._poll_previews,
                IntervalTrigger(seconds=self._previews_poll),
                id=PREVIEWS_POLL_JOB,
                next_run_time=datetime.now(UTC),
            )
            self._scheduler.add_job(
                self._publish_previews,
                IntervalTrigger(seconds=PREVIEWS_PUBLISH_SECONDS),
                id=PREVIEWS_PUBLISH_JOB,
            )
        if self.reviews is not None:
            self.reviews.start()
        self._scheduler.add_job(
            self._promote, IntervalTrigger(seconds=PROMOTE_CHECK_SECONDS), id=PROMOTE_JOB
        )
        self._scheduler.start()
        self.refreshes.start()
        self.envs.start()
        threading.Thread(target=self._watch_events, name="docker-events", daemon=True).start()
        threading.Thread(target=self._watch_requests, name="requests", daemon=True).start()
        self.trigger("start")

    def shutdown(self) -> None:
        """Every run ends after its current step; then the API and the timers stop."""
        self._stopped.set()
        self.engine.cancel.set()
        self.refreshes.stop(STOP_TIMEOUT)
        if self.previews is not None:
            self.previews.stop(STOP_TIMEOUT)
        if self.reviews is not None:
            self.reviews.stop(STOP_TIMEOUT)
        if not self.envs.stop(STOP_TIMEOUT):
            log.warning(
                "some runs did not end within %s s; their steps resume at start", STOP_TIMEOUT
            )
        if self._server is not None:
            self._server.should_exit = True
        self._scheduler.shutdown(wait=False)
        if self._server_thread is not None:
            self._server_thread.join(timeout=2)

    def run(self) -> None:
        """Block until SIGINT/SIGTERM; the first refresh starts immediately."""

        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current step", signum)
            self._stopped.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.start()
        self._stopped.wait()
        self.shutdown()

    def stop(self) -> None:
        self._stopped.set()
