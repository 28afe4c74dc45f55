"""The image alone: as built, read-only and non-root, with and without a mounted config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from .client import call, ready
from .conftest import logs, podman, poll

USER = "65532:65532"


def ip_of(container: str) -> str:
    return podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", container)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A host directory for the store volume, owned by the image's user as a volume would be."""
    store = tmp_path / "store"
    store.mkdir()
    os.chown(store, 65532, 65532)
    return store


def test_version(image: str) -> None:
    assert podman("run", "--rm", image, "--version") == f"atkproxy {version('atkproxy')}"


def start(image: str, store_dir: Path, names: list[str], *options: str) -> str:
    name = podman(
        "run", "--detach", "--read-only", "--user", USER,
        "--volume", f"{store_dir}:/var/lib/atkproxy", *options, image,
    )  # fmt: skip
    names.append(name)
    return name


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_starts_without_config_on_the_defaults_with_the_store_on_the_volume(
    image: str, store_dir: Path, containers: list[str]
) -> None:
    name = start(image, store_dir, containers)
    poll(lambda: ready(f"http://{ip_of(name)}:8080/_atk/ready"), "the proxy to be ready")
    assert (store_dir / "atkproxy-jobs.db").is_file()  # the default relative path, on the volume
    assert podman("exec", name, "id", "-u") == "65532"
    written = podman("exec", name, "sh", "-c", "touch /opt/atkproxy/x 2>/dev/null || echo no")
    assert written == "no"  # the root filesystem is read-only
    podman("stop", "--time", "20", name)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name) == "0"
    lines = logs(name)
    assert lines[0]["event"] == "starting" and lines[-1]["event"] == "stopped"
    assert lines[0]["settings"]["store"]["url"] == "sqlite:///atkproxy-jobs.db"


def test_a_mounted_config_is_used(
    image: str, store_dir: Path, tmp_path: Path, containers: list[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("listen:\n  port: 9090\nstore:\n  url: sqlite:///from-the-file.db\n")
    config.chmod(0o644)
    name = start(image, store_dir, containers, "--volume", f"{config}:/etc/atkproxy/config.yaml:ro")
    poll(lambda: ready(f"http://{ip_of(name)}:9090/_atk/ready"), "the proxy on port 9090")
    assert (store_dir / "from-the-file.db").is_file()  # no ENV in the image overrode the file
    status, headers, _ = call("GET", f"http://{ip_of(name)}:9090/_atk/health")
    assert (status, headers["Server"]) == (200, "atkproxy")
