"""When to try again (pure): upstream calls that never reached the backend, callback
attempts, and Retry-After.

A schedule is a list of delays; try n (counted from 0) waits `schedule[n]`, the last delay
repeating, and nothing is tried once `max_age` has passed since the first try. Jitter only
ever lengthens a delay, so a receiver's Retry-After is never undercut.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime

from .jobs import Attempt, Job
from .settings import CallbackRetry, RetrySchedule

JITTER = 0.1  # up to 10% added to a delay, so retries of many jobs spread out

Jitter = Callable[[float], float]


def jitter(delay: float) -> float:
    return delay * (1.0 + random.uniform(0.0, JITTER))


def step(schedule: Sequence[float], n: int) -> float:
    """The delay before try n (0-based): the schedule's, its last step repeating."""
    return schedule[min(n, len(schedule) - 1)]


def upstream_retry_at(
    policy: RetrySchedule, tries: int, now: float, spread: Jitter = jitter
) -> float | None:
    """When to call again after `tries` calls that never reached the upstream; None once the
    delays so far add up to more than max_age."""
    waited = sum(step(policy.schedule, n) for n in range(tries))
    if waited >= policy.max_age:
        return None
    return now + spread(step(policy.schedule, tries))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After value (delay-seconds or an HTTP date) in seconds from now; None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# the error of an attempt whose receiver the destination policy refused (dial.py): the
# policy would refuse it again, so delivery stops
DESTINATION_REFUSED = "callback failed: destination refused"


def delivery_stops(attempt: Attempt, policy: CallbackRetry) -> bool:
    """An answer that ends delivery at once (410 Gone, and the statuses in stop_on), or a
    receiver the destination policy refused."""
    if attempt.status is None:
        return (attempt.error or "").startswith(DESTINATION_REFUSED)
    return attempt.status == 410 or attempt.status in policy.stop_on


def next_delivery_at(
    job: Job, policy: CallbackRetry, now: float, spread: Jitter = jitter
) -> float | None:
    """When the next callback attempt is due after the job's last failed one; None when the
    schedule is exhausted or max_age has passed since the first attempt of this schedule."""
    attempts = job.delivery_attempts
    if not attempts or len(attempts) >= len(policy.schedule):
        return None
    if now - attempts[0].at >= policy.max_age:
        return None
    delay = spread(policy.schedule[len(attempts)])
    asked = attempts[-1].retry_after
    if asked is not None:  # honoured, but no longer than the schedule's longest step
        delay = max(delay, min(asked, max(policy.schedule)))
    return now + delay


def first_delivery_at(policy: CallbackRetry, now: float) -> float:
    return now + policy.schedule[0]
