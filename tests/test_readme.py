"""The README's two commands stay true: CI runs its test command, and its demo
prints exactly the output the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import descriptor
from imageledger import ImageStore

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _code_blocks() -> list[str]:
    return re.findall(r"```(?:sh|python)?\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_readmes_test_command() -> None:
    test_command = next(b for b in _code_blocks() if "pytest" in b).strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readmes_first_command_prints_what_the_readme_shows(tmp_path: Path) -> None:
    first = _code_blocks()[0]
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install -q . &&")
    program = first.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0]
    shown = next(b for b in _code_blocks() if b.startswith("docker.io/library/alpine"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown
    assert (tmp_path / "imageledger.db").exists()


def _chain_script() -> str:
    return next(b for b in _code_blocks() if b.startswith("# chain_head.py"))


def test_the_readmes_chain_script_is_about_ten_lines() -> None:
    lines = [line for line in _chain_script().splitlines() if line.strip()]
    assert len(lines) <= 12


@pytest.mark.parametrize("events", [0, 1, 40])
def test_the_readmes_chain_script_recomputes_the_stores_checkpoint(
    db_path: Path, events: int
) -> None:
    with ImageStore.open(db_path) as store:
        for i in range(events):
            if i % 5 == 4:  # delete the name the previous step registered
                store.delete(f"app/n{(i - 1) % 7}:v1", reason="gone")
            else:
                store.register(
                    f"app/n{i % 7}:v1", descriptor(i), {"k": str(i)}, actor=f"u{i}"
                )
        checkpoint = store.checkpoint()
    # -I: no site-packages and no user paths, so only the standard library.
    result = subprocess.run(
        [sys.executable, "-I", "-c", _chain_script(), str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{checkpoint}\n"
    assert checkpoint.position == events
