"""The access line's own path to stdout (observability.py): one write per turn of the loop."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from atkproxy.observability import ACCESS, LineBuffer, access_line_logger


class CountingOut(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


def lines(out: io.BytesIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_the_lines_of_one_turn_go_out_in_order_in_one_write_at_the_next() -> None:
    out = CountingOut()
    buffer = LineBuffer(out)
    for n in range(3):
        buffer.write(b"%d\n" % n)
        buffer.flush()
    assert out.getvalue() == b""  # held until the loop turns
    await asyncio.sleep(0)  # one turn
    assert (out.getvalue(), out.writes) == (b"0\n1\n2\n", 1)
    buffer.write(b"3\n")
    buffer.flush()
    await asyncio.sleep(0)
    assert (out.getvalue(), out.writes) == (b"0\n1\n2\n3\n", 2)


def test_outside_a_running_loop_a_line_is_written_at_once() -> None:
    out = CountingOut()
    buffer = LineBuffer(out)
    buffer.write(b"x\n")
    buffer.flush()
    assert out.getvalue() == b"x\n"


async def test_drain_writes_what_is_held_as_at_exit() -> None:
    out = io.BytesIO()
    buffer = LineBuffer(out)
    buffer.write(b"last\n")
    buffer.flush()
    buffer.drain()  # what atexit calls when the loop never turned again
    assert out.getvalue() == b"last\n"
    buffer.drain()
    assert out.getvalue() == b"last\n"  # nothing written twice


@pytest.mark.parametrize(
    ("level", "written"), [(logging.INFO, True), (logging.WARNING, False)], ids=["info", "warning"]
)
def test_the_json_access_line_has_the_shared_fields(level: int, written: bool) -> None:
    out = io.BytesIO()
    access_line_logger(True, level, out).info("request", method="GET", path="/x", status=200)
    if not written:
        assert out.getvalue() == b""
        return
    [line] = lines(out)
    assert {k: line[k] for k in ("event", "level", "logger", "method", "path", "status")} == {
        "event": "request",
        "level": "info",
        "logger": ACCESS,
        "method": "GET",
        "path": "/x",
        "status": 200,
    }
    assert list(line) == ["logger", "method", "path", "status", "event", "level", "timestamp"]
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert line["timestamp"].endswith("Z") and stamp.tzinfo == UTC
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
