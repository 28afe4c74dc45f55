"""Admission: queue places held and released in one `async with`, and the upstream slots
that let an accepted job start at once."""

from __future__ import annotations

import pytest

from atkproxy.admission import Admission, Slots
from atkproxy.errors import Rejected


def test_slots_take_what_is_free_and_never_give_beyond_their_size() -> None:
    slots = Slots(3)
    assert (slots.take(2), slots.take(2), slots.take()) == (2, 1, 0)
    assert slots.busy == 3
    slots.give(5)
    assert (slots.free, slots.busy) == (3, 0)


async def test_a_place_with_a_free_slot_starts_at_once_and_does_not_wait() -> None:
    slots = Slots(1)
    admission = Admission(max_queue=1, retry_after=3, slots=slots)
    async with admission.place() as place:
        assert place.slot
        place.taken = True
    assert (slots.free, admission.waiting) == (0, 0)  # the slot stays with the running job


async def test_without_a_slot_an_accepted_job_waits_and_the_queue_fills() -> None:
    admission = Admission(max_queue=1, retry_after=3, slots=Slots(0))
    async with admission.place() as place:
        assert not place.slot
        place.taken = True
    assert admission.waiting == 1
    with pytest.raises(Rejected) as refused:
        async with admission.place():
            pass
    assert (refused.value.status, refused.value.retry_after) == (503, 3)
    admission.claimed(5)  # the engine took them: never below zero
    assert admission.waiting == 0


@pytest.mark.parametrize("slots_free", [0, 1])
async def test_a_place_not_taken_gives_everything_back(slots_free: int) -> None:
    slots = Slots(1)
    slots.take(1 - slots_free)
    admission = Admission(max_queue=1, retry_after=1, slots=slots)
    with pytest.raises(RuntimeError):
        async with admission.place():
            raise RuntimeError("the store refused it")
    assert (slots.free, admission.waiting) == (slots_free, 0)
    async with admission.place() as place:  # the place is there again
        place.taken = True


async def test_places_being_accepted_count_against_the_queue() -> None:
    admission = Admission(max_queue=2, retry_after=1, slots=Slots(0))
    async with admission.place(), admission.place():
        with pytest.raises(Rejected):
            async with admission.place():
                pass
