"""The start's objects are put out of the garbage collector's sight (lifecycle.settle_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from atkproxy.lifecycle import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as usual


def seen_by_the_collector(thing: object) -> bool:
    return any(tracked is thing for tracked in gc.get_objects())


def test_what_lives_at_the_start_is_frozen_and_what_comes_later_is_not(unfrozen: None) -> None:
    at_start: dict[str, list[int]] = {"settings": []}
    assert seen_by_the_collector(at_start)
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not seen_by_the_collector(at_start)  # a full collection no longer walks it
    later: dict[str, list[int]] = {"request": []}
    assert seen_by_the_collector(later)  # collected as before
