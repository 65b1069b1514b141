"""A bounded retry loop with exponential backoff that honours Retry-After.

The openai client is created with ``max_retries=0`` and this loop owns retries, because:

* the client's own loop (openai 3.x: 2 retries by default, 0.5 s doubling to at most 8 s,
  Retry-After honoured when 0 < value <= 120 s and a longer one not retried at all) is silent,
  so a run that is being rate limited looks hung; here every retry prints one line on stderr;
* a 429 pauses *all* concurrent requests (the :class:`Throttle`), not only the one that got it,
  so parallel workers do not keep hammering a rate-limited key;
* attempts, delays and the Retry-After ceiling are exact and testable (``sleep`` injectable).

Which failures are retryable is decided by the caller's ``classify``.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from embctl.plugin import EmbctlError, plural

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    """What to do about one failed attempt."""

    message: str  # one line, already scrubbed of secrets
    retryable: bool
    retry_after: float | None = None  # seconds the server asked us to wait
    rate_limited: bool = False  # a 429: pause every worker, not only this one


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based): doubling, capped, 0-25% jitter off."""
        delay = min(self.backoff_s * 2 ** (retry - 1), self.max_backoff_s)
        return delay * (1 - 0.25 * random.random())


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds, or an HTTP date), or None."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if scale == 1000.0:
                continue
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - (now if now is not None else time.time())
        if seconds != seconds:  # NaN
            continue
        return max(0.0, seconds)
    return None


class Throttle:
    """A pause shared by every worker of one embedder: set by a 429, honoured before each try."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._clock = clock

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())


def call_with_retries(
    attempt: Callable[[], T],
    classify: Callable[[BaseException], Verdict | None],
    policy: RetryPolicy,
    *,
    throttle: Throttle | None = None,
    sleep: Callable[[float], None] = time.sleep,
    notify: Callable[[str], None] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, a failure is not retryable, or attempts run out.

    ``classify`` returns None for exceptions it does not know (bugs): those propagate as they
    are.  Known failures end as a one-line :class:`EmbctlError` without a chained traceback.
    """
    for number in range(1, policy.max_attempts + 1):
        if throttle is not None:
            wait = throttle.remaining()
            if wait > 0:
                sleep(wait)
        try:
            return attempt()
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                raise
        if not verdict.retryable:
            raise EmbctlError(verdict.message) from None
        if number == policy.max_attempts:
            raise EmbctlError(
                f"{verdict.message}; gave up after {plural(policy.max_attempts, 'attempt')}"
            ) from None
        if verdict.retry_after is not None:
            if verdict.retry_after > policy.max_retry_after_s:
                raise EmbctlError(
                    f"{verdict.message}; the server asks to retry after "
                    f"{verdict.retry_after:.0f} s (more than {policy.max_retry_after_s:.0f} s): "
                    "try again later"
                ) from None
            delay = verdict.retry_after
        else:
            delay = policy.backoff(number)
        if verdict.rate_limited and throttle is not None:
            throttle.pause(delay)
        if notify is not None:
            notify(f"{verdict.message}; retrying in {delay:.2g} s "
                   f"(attempt {number + 1} of {policy.max_attempts})")
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
