"""When to try again: the schedules, Retry-After, and what stops a delivery (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from atkproxy.jobs import Attempt, Job
from atkproxy.retry import (
    delivery_stops,
    first_delivery_at,
    jitter,
    next_delivery_at,
    retry_after_seconds,
    step,
    upstream_retry_at,
)
from atkproxy.settings import CallbackRetry, UpstreamRetry

NOW = 1_000_000.0


def exact(delay: float) -> float:
    return delay


@pytest.mark.parametrize(("n", "expected"), [(0, 0.5), (1, 1.0), (6, 30.0), (7, 30.0), (100, 30.0)])
def test_step_repeats_the_last_delay(n: int, expected: float) -> None:
    assert step(UpstreamRetry().schedule, n) == expected


@pytest.mark.parametrize(
    ("tries", "expected"),
    [
        (0, NOW + 0.5),
        (1, NOW + 1.0),
        (3, NOW + 4.0),
        (7, NOW + 30.0),
        (14, NOW + 30.0),  # 0.5+1+2+4+8+16+30*7 = 271.5 s waited: under 5 min
        (15, None),  # 301.5 s waited: over upstream.retry.max_age
    ],
)
def test_upstream_retry_waits_on_the_schedule_until_max_age(
    tries: int, expected: float | None
) -> None:
    assert upstream_retry_at(UpstreamRetry(), tries, NOW, exact) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("5", 5.0),
        (" 120 ", 120.0),
        ("Mon, 12 Jan 1970 13:46:50 GMT", 10.0),  # NOW + 10 s as an HTTP date
        ("Mon, 12 Jan 1970 13:46:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Mon, 12 Jan 1970 13:46:50", None),  # no zone
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


POLICY = CallbackRetry.model_validate({"schedule": ["0s", "5s", "5m", "30m"], "max_age": "1h"})


def job_with(*attempts: Attempt, base: int = 0) -> Job:
    job = Job(id="j", instance_id="i", method="POST", path_qs="/")
    return replace(job, attempts=attempts, delivery_base=base)


def failed(at: float = NOW, status: int | None = 500, retry_after: float | None = None) -> Attempt:
    return Attempt(at, status, None if status else "callback failed: refused", 0.1, retry_after)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (job_with(failed()), NOW + 5),
        (job_with(failed(), failed()), NOW + 300),
        (job_with(failed(), failed(), failed()), NOW + 1800),
        (job_with(failed(), failed(), failed(), failed()), None),  # schedule exhausted
        (job_with(failed(at=NOW - 3600)), None),  # max_age since the first attempt
        (job_with(failed(retry_after=60)), NOW + 60),  # Retry-After beyond the step
        (job_with(failed(retry_after=1)), NOW + 5),  # never earlier than the schedule
        (job_with(failed(retry_after=86400)), NOW + 1800),  # bounded by the longest step
        (job_with(failed(status=None)), NOW + 5),  # no connection: retried too
        # redelivered: a fresh schedule after the two attempts before it
        (job_with(failed(NOW - 7200), failed(NOW - 7100), failed(), base=2), NOW + 5),
    ],
)
def test_next_delivery_follows_the_schedule(job: Job, expected: float | None) -> None:
    assert next_delivery_at(job, POLICY, NOW, exact) == expected


@pytest.mark.parametrize(
    ("status", "stop_on", "stops"),
    [(410, [], True), (410, [410], True), (422, [422], True), (422, [410], False),
     (500, [410], False), (None, [410], False), (200, [410], False)],
)  # fmt: skip
def test_gone_and_stop_on_statuses_stop_delivery(
    status: int | None, stop_on: list[int], stops: bool
) -> None:
    policy = CallbackRetry(stop_on=stop_on)
    assert delivery_stops(failed(status=status), policy) is stops


@pytest.mark.parametrize(
    ("error", "stops"),
    [("callback failed: destination refused: loopback address", True),
     ("callback failed: ClientConnectorError", False)],
)  # fmt: skip
def test_a_refused_destination_stops_delivery(error: str, stops: bool) -> None:
    attempt = Attempt(NOW, None, error, 0.0)
    assert delivery_stops(attempt, CallbackRetry()) is stops


def test_the_first_delivery_waits_the_schedule_s_first_step() -> None:
    policy = CallbackRetry.model_validate({"schedule": ["2s", "5s"]})
    assert first_delivery_at(policy, NOW) == NOW + 2


def test_jitter_only_lengthens_a_delay_by_at_most_a_tenth() -> None:
    delays = [jitter(10.0) for _ in range(1000)]
    assert all(10.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 900  # it does spread
