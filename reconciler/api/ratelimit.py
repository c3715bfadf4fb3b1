"""Per-subject rate limits: a token bucket for each token subject."""

from __future__ import annotations

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
