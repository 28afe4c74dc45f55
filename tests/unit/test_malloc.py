"""The memory of large answers goes back when they are freed (atkproxy.malloc), in a process
of its own so that this one's allocator is left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atkproxy.malloc import ENV, is_glibc, keep_large_blocks_mapped

REPO = Path(__file__).resolve().parents[2]

# Answers of 10 MiB come and go as jobs do; smaller allocations made meanwhile sit above
# them in the heap, so a heap that served the answers cannot shrink when they are freed.
AFTER_JOBS = """
import sys
from atkproxy.malloc import keep_large_blocks_mapped

def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

if sys.argv[1] == "tuned":
    assert keep_large_blocks_mapped({})
first = b"x" * (10 << 20)
del first  # glibc unmaps it, and raises its threshold to its size
before = rss_mib()
answers, pins = [], []
for _ in range(8):
    answers.append(b"x" * (10 << 20))
    pins.append(b"y" * (256 << 10))  # too large for the holes below: after the answer
del answers
print(rss_mib() - before)
"""


def rss_kept_mib(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != ENV} | {"PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", AFTER_JOBS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return float(done.stdout)


@pytest.mark.skipif(not (is_glibc() and Path("/proc/self/status").exists()), reason="glibc")
def test_freed_answers_are_given_back_to_the_system() -> None:
    assert rss_kept_mib("as-is") > 40  # glibc's default: the heap keeps them
    assert rss_kept_mib("tuned") < 8


def test_an_operators_own_threshold_is_left_alone() -> None:
    assert keep_large_blocks_mapped({ENV: "65536"}) is False
