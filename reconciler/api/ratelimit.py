"""Per-subject rate limits: a token bucket for each token subject."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.errors import OdooOpsError


class RateLimited(OdooOpsError):
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many requests; retry in {retry_after} s",
            remediation=f"wait {retry_after} s, then run the command again",
        )
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per subject: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(
        self, rate: float = 10.0, burst: int = 40, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, subject: str) -> None:
        now = self._clock()
        bucket = self._buckets.setdefault(subject, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            raise RateLimited(max(1, int((1 - bucket.tokens) / self.rate) + 1))
        bucket.tokens -= 1


class TooManyStreams(OdooOpsError):
    code = "too_many_streams"

    def __init__(self, subject: str, limit: int) -> None:
        super().__init__(
            f"{subject} already follows {limit} log streams",
            remediation="end another odooops logs --follow first, or read without --follow",
        )
        self.retry_after = 5


class StreamSlot:
    """One open stream of a subject; ``close`` gives the slot back (once)."""

    def __init__(self, budget: StreamBudget, subject: str) -> None:
        self._budget, self._subject, self._open = budget, subject, True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._budget.release(self._subject)


class StreamBudget:
    """At most ``per_subject`` long-lived streams (``logs?follow=true``) per token subject."""

    def __init__(self, per_subject: int = 8) -> None:
        self.per_subject = per_subject
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def open(self, subject: str) -> StreamSlot:
        with self._lock:
            count = self._open.get(subject, 0)
            if count >= self.per_subject:
                raise TooManyStreams(subject, self.per_subject)
            self._open[subject] = count + 1
        return StreamSlot(self, subject)

    def release(self, subject: str) -> None:
        with self._lock:
            left = self._open.get(subject, 1) - 1
            if left > 0:
                self._open[subject] = left
            else:
                self._open.pop(subject, None)

    def open_streams(self, subject: str) -> int:
        with self._lock:
            return self._open.get(subject, 0)
