"""glibc's allocator, told to give the memory of large answers back as soon as they are freed.

glibc serves a block of 128 KiB or more with its own mapping and unmaps it when it is freed;
but once such a block is freed, glibc raises that threshold to the block's size (up to 32 MiB
on 64-bit), so that later blocks of that size come from the heap, and a heap keeps what is
freed. A proxy that ran 16 jobs of 10 MiB answers stayed at ~250 MiB of RSS after them
instead of ~105 MiB, and its next round's peak grew with the heap's holes
(benchmarks/RESULTS.md). A fixed threshold keeps every block of 1 MiB or more mapped: its
memory goes back at once, and one that grows (an answer of unknown length) is remapped
rather than copied. Smaller blocks, all of the pass-through path's, are served as before.

Done in the process rather than left to the image's environment, so that every way of
running atkproxy (the image, a pip install, a test) behaves the same. An operator's own
MALLOC_MMAP_THRESHOLD_ wins: glibc read it at start and it is not overridden here.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

MMAP_THRESHOLD = 1024 * 1024
M_MMAP_THRESHOLD = -3  # malloc.h
ENV = "MALLOC_MMAP_THRESHOLD_"


def is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # not a name this system's confstr knows: not glibc
        return False


def keep_large_blocks_mapped(environ: Mapping[str, str] = os.environ) -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD; True when it was set here (not on
    another libc, nor when the environment set it already)."""
    if ENV in environ or not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
