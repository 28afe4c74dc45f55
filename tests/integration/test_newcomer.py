"""The README's demo command, run as a newcomer runs it: a fresh clone, no virtualenv active.

To stay fast, the clone's `.venv` is made beforehand and sees the packages of the interpreter
running the tests (a `.pth` file), so `make demo` installs only the project itself into it
instead of downloading every dependency again. `make demo` still creates and fills that
`.venv` the same way when it is missing; only the download is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The commands of the README's 'Two commands on a fresh machine' block, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands on a fresh machine\s+```sh\n(.*?)```", readme, re.S)
    assert block is not None, "README lost its two commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def venv_reusing_installed_packages(clone: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True, timeout=60)
    site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "reuse-installed.pth").write_text("\n".join(sorted(here)) + "\n")


def test_the_readme_demo_command_works_in_a_fresh_clone(tmp_path: Path) -> None:
    demo = readme_commands()[0]
    assert demo == "make demo"
    clone = tmp_path / "atkproxy"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    venv_reusing_installed_packages(clone)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        ["bash", "-c", demo], cwd=clone, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--- 202 from the proxy: 202" in done.stdout
    assert "--- callback POST /callbacks" in done.stdout
    assert "X-ATK-Status: Completed" in done.stdout
    assert (clone / ".venv" / ".atkproxy-installed").is_file()


@pytest.mark.parametrize(
    ("active", "python"),
    [(None, ".venv/bin/python"), ("/nonexistent/venv", "/nonexistent/venv/bin/python")],
    ids=["no-virtualenv", "active-virtualenv"],
)
def test_make_uses_the_active_virtualenv_else_a_project_venv(
    active: str | None, python: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    if active is not None:
        env["VIRTUAL_ENV"] = active
    planned = subprocess.run(
        ["make", "--dry-run", "demo"], cwd=ROOT, env=env, capture_output=True, text=True
    ).stdout.splitlines()
    assert f"{python} -m atkproxy demo" in planned
    if active is not None:  # it does not exist: make would create it, then install into it
        assert f"python3 -m venv {active}" in planned
        assert any(line.startswith(f"{python} -m pip install") for line in planned)
