"""The built image and the pod under podman; run by `make e2e` (deploy/e2e.sh builds the image).

Skipped unless ATKPROXY_IMAGE names the image to test, so `make test` needs no podman.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf")}


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ.get("ATKPROXY_IMAGE")
    if not name:
        pytest.skip("ATKPROXY_IMAGE is not set: run `make e2e`")
    return name


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(
        ["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def logs(container: str) -> list[dict[str, Any]]:
    """What the container wrote to stdout, every line parsed as one JSON object."""
    done = subprocess.run(["podman", "logs", container], env=ENV, capture_output=True, text=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def poll(check: Callable[[], Any], what: str, deadline: float = 30) -> Any:
    """The first true result of `check`, tried until `deadline` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.1)
