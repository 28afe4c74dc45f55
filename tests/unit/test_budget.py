"""The byte budget for answers jobs hold (budget.py), and read_limited reserving through it.

No timing: a reservation that fits is granted without the task ever suspending, so one
turn of the loop (`turn()`) tells a granted reservation from a waiting one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from atkproxy.budget import NOTHING, Budget, Reservation, holding_answers, reserve_answer
from atkproxy.settings import Settings
from atkproxy.upstream import AnswerTooLarge, UpstreamUnavailable, read_limited

from .test_upstream import MemoryAnswer, pieces


async def turn() -> None:
    """Let every task that can run, run (a few turns: a grant wakes a task, which returns)."""
    for _ in range(3):
        await asyncio.sleep(0)


def reserving(budget: Budget, size: int) -> asyncio.Task[Reservation]:
    return asyncio.create_task(budget.reserve(size))


@pytest.mark.parametrize(
    ("limit", "held", "size", "granted"),
    [
        (100, [], 60, True),  # fits
        (100, [60], 40, True),  # fits exactly
        (100, [60], 41, False),  # waits
        (100, [], 500, True),  # larger than the whole budget, nothing held: alone
        (100, [1], 500, False),  # ... but not beside anything
        (100, [], 0, True),
        (0, [10**12], 10**12, True),  # 0: no bound, only counted
    ],
)
async def test_a_reservation_is_granted_when_it_fits(
    limit: int, held: list[int], size: int, granted: bool
) -> None:
    budget = Budget(limit)
    for n in held:
        await budget.reserve(n)

    task = reserving(budget, size)
    await turn()

    assert task.done() is granted
    assert budget.held == sum(held) + (size if granted else 0)
    task.cancel()


async def test_a_waiter_is_granted_when_enough_is_released() -> None:
    budget = Budget(100)
    first = await budget.reserve(70)
    second = await budget.reserve(20)
    task = reserving(budget, 50)
    await turn()
    assert not task.done()

    second.release()  # 70 + 50 is still over
    await turn()
    assert not task.done()
    first.release()
    await turn()

    assert task.done() and task.result().size == 50
    assert budget.held == 50


async def test_waiters_are_served_first_come_first_served() -> None:
    budget = Budget(100)
    first = await budget.reserve(60)
    large = reserving(budget, 50)
    await turn()
    small = reserving(budget, 10)  # would fit now, but the larger one came first
    await turn()
    assert not large.done() and not small.done()

    first.release()
    await turn()

    assert large.done() and small.done()
    assert budget.held == 60


async def test_an_oversize_reservation_runs_alone() -> None:
    budget = Budget(100)
    small = await budget.reserve(10)
    oversize = reserving(budget, 500)
    await turn()
    assert not oversize.done()

    small.release()
    await turn()
    assert oversize.done() and budget.held == 500
    after = reserving(budget, 1)
    await turn()
    assert not after.done()  # nothing beside it

    oversize.result().release()
    await turn()
    assert after.done() and budget.held == 1


async def test_release_is_idempotent() -> None:
    budget = Budget(100)
    held = await budget.reserve(60)
    other = await budget.reserve(40)
    held.release()
    held.release()

    assert budget.held == 40
    waiter = reserving(budget, 70)
    await turn()
    assert not waiter.done()  # a second release gave nothing twice
    other.release()
    await turn()
    assert waiter.done() and budget.held == 70


async def test_a_waiter_cancelled_holds_nothing_and_lets_the_next_one_go() -> None:
    budget = Budget(100)
    first = await budget.reserve(60)
    blocked = reserving(budget, 50)
    await turn()
    behind = reserving(budget, 10)  # fits beside `first`, but waits behind `blocked`
    await turn()

    blocked.cancel()
    await turn()

    assert blocked.cancelled()
    assert behind.done() and budget.held == 70
    assert budget.waiting == 0
    first.release()
    behind.result().release()
    assert budget.held == 0


async def test_a_waiter_cancelled_just_as_it_is_granted_gives_it_back() -> None:
    budget = Budget(100)
    first = await budget.reserve(60)
    task = reserving(budget, 50)
    await turn()

    first.release()  # grants the waiter: held 50 before its task runs again
    task.cancel()
    await turn()

    assert task.cancelled()
    assert budget.held == 0 and budget.waiting == 0


async def test_a_waiter_cancelled_behind_another_leaves_the_queue() -> None:
    budget = Budget(100)
    first = await budget.reserve(60)
    head = reserving(budget, 50)
    behind = reserving(budget, 50)
    await turn()

    behind.cancel()
    await turn()

    assert behind.cancelled() and budget.waiting == 1
    first.release()
    await turn()
    assert head.done() and budget.held == 50 and budget.waiting == 0


async def test_a_waiter_cancelled_then_dropped_by_a_release_ends_cancelled() -> None:
    # the release sees the cancelled waiter first and drops it before its task runs
    budget = Budget(100)
    first = await budget.reserve(60)
    task = reserving(budget, 50)
    behind = reserving(budget, 20)
    await turn()

    task.cancel()
    first.release()
    await turn()

    assert task.cancelled()  # not an error from its own clean-up
    assert behind.done() and budget.held == 20 and budget.waiting == 0


@pytest.mark.parametrize(
    ("sizes", "held"),
    [([40], 40), ([60], 60), ([80], 60), ([40, 50], 40), ([40, 10], 10), ([0], 0)],
)
def test_shrinking_keeps_at_most_what_was_taken(sizes: list[int], held: int) -> None:
    budget = Budget(100)
    reservation = budget.take(60)
    for size in sizes:
        reservation.shrink_to(size)

    assert budget.held == reservation.size == held


def test_a_released_reservation_shrinks_no_more() -> None:
    budget = Budget(100)
    reservation = budget.take(60)
    reservation.release()
    reservation.shrink_to(10)
    reservation.extend(10)

    assert budget.held == 0


async def test_what_comes_without_a_length_is_counted_without_waiting() -> None:
    budget = Budget(100)
    await budget.reserve(90)
    growing = budget.take(0)
    growing.extend(30)
    growing.extend(30)

    assert budget.held == 150  # soft: over the limit by the answer's size
    waiter = reserving(budget, 1)
    await turn()
    assert not waiter.done()
    growing.release()
    await turn()
    assert waiter.done() and budget.held == 91


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Budget(-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 64 * 1024 * 1024), ("1GiB", 1024**3), ("0", 0), (4096, 4096)],
)
def test_the_setting(value: object, expected: int) -> None:
    given = {} if value is None else {"async": {"max_answer_memory": value}}
    assert Settings.model_validate(given).async_.max_answer_memory == expected


@pytest.mark.parametrize("value", [-1, "-1MiB", "lots"])
def test_a_bad_setting_names_the_key(value: object) -> None:
    with pytest.raises(ValidationError, match="max_answer_memory"):
        Settings.model_validate({"async": {"max_answer_memory": value}})


# -- a job task's answers --------------------------------------------------------------


async def test_outside_a_job_task_nothing_is_reserved() -> None:
    assert await reserve_answer(10**12) is NOTHING


async def test_a_job_task_releases_its_answers_when_it_ends() -> None:
    budget = Budget(100)
    with holding_answers(budget, already=5):
        await reserve_answer(60)
        assert budget.held == 65
    assert budget.held == 0
    assert await reserve_answer(1) is NOTHING


async def test_a_job_task_waits_for_its_first_answer_to_fit() -> None:
    budget = Budget(100)
    other = await budget.reserve(80)

    async def job() -> int:
        with holding_answers(budget):
            return (await reserve_answer(50)).size

    task = asyncio.create_task(job())
    await turn()
    assert not task.done() and budget.held == 80

    other.release()
    assert await task == 50
    assert budget.held == 0


async def test_a_job_holding_an_answer_never_waits_for_another() -> None:
    budget = Budget(100)
    with holding_answers(budget):
        await reserve_answer(80)
        async with asyncio.timeout(5):  # would wait for ever: for itself
            await reserve_answer(80)
        assert budget.held == 160
    assert budget.held == 0


# -- read_limited through the budget ---------------------------------------------------


async def read_in_job(budget: Budget, answer: MemoryAnswer, limit: int = 10**6) -> bytes:
    with holding_answers(budget):
        body = await read_limited(answer, limit)
        assert budget.held >= len(body)  # held while the job holds the answer
        return body


async def test_an_answer_with_a_length_waits_before_its_body_is_read() -> None:
    budget = Budget(100)
    other = await budget.reserve(80)
    data = bytes(range(50))
    answer = MemoryAnswer([("Content-Length", "50")], pieces(data, 16))

    task = asyncio.create_task(read_in_job(budget, answer))
    await turn()
    assert not task.done() and answer.read == 0  # not a byte read while it waits

    other.release()
    assert await task == data
    assert budget.held == 0


async def test_an_answer_without_a_length_is_counted_as_it_grows() -> None:
    budget = Budget(100)
    seen: list[int] = []

    class Watched(MemoryAnswer):
        async def chunks(self) -> AsyncIterator[bytes]:
            async for chunk in super().chunks():
                seen.append(budget.held)
                yield chunk

    data = bytes(250)
    with holding_answers(budget):
        assert await read_limited(Watched([], pieces(data, 100)), 10**6) == data
        assert seen == [0, 100, 200]  # no wait although over the limit: counted as it came
        assert budget.held == 250
    assert budget.held == 0


async def test_an_answer_without_a_length_never_waits_behind_others() -> None:
    # "counted as it arrives, without waiting": not even behind an answer that waits
    budget = Budget(100)
    other = await budget.reserve(80)
    waiter = reserving(budget, 50)
    await turn()
    data = bytes(30)

    task = asyncio.create_task(read_in_job(budget, MemoryAnswer([], pieces(data, 10))))
    await turn()

    assert task.done() and task.result() == data
    assert not waiter.done() and budget.held == 80
    other.release()
    await turn()
    assert waiter.done()


async def test_an_answer_shorter_than_its_length_keeps_only_what_came() -> None:
    budget = Budget(1000)
    with holding_answers(budget):
        body = await read_limited(MemoryAnswer([("Content-Length", "600")], [b"abc"]), 10**6)
        assert body == b"abc" and budget.held == 3


class Broken(MemoryAnswer):
    """An answer whose connection fails after its first chunk."""

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in super().chunks():
            yield chunk
            raise UpstreamUnavailable("upstream unavailable: connection closed")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Broken([("Content-Length", "300")], pieces(bytes(300), 100)), UpstreamUnavailable),
        (Broken([], pieces(bytes(300), 100)), UpstreamUnavailable),
        (MemoryAnswer([], pieces(bytes(300), 100)), AnswerTooLarge),  # over 150 as it grows
    ],
    ids=["length-cut-short", "no-length-cut-short", "no-length-too-large"],
)
async def test_a_read_that_fails_releases_at_once(
    answer: MemoryAnswer, error: type[Exception]
) -> None:
    budget = Budget(1000)
    with holding_answers(budget):
        with pytest.raises(error):
            await read_limited(answer, 150 if error is AnswerTooLarge else 10**6)
        assert budget.held == 0
