"""The README and the docs stay true: CI runs the README's test command, its
first command prints the output it shows, its command-line tour is what a real
run prints, and so are the docs' examples (write-once names, the chain script;
the layouts example is in test_cli_layouts.py). The README's links lead to
files that exist (mkdocs checks the links inside docs/).

Times differ from run to run; they are compared as a placeholder of the same
width, so the tables' alignment is still checked exactly.
"""

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
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
FIRST_PREFIX = "python3 -m venv .venv && .venv/bin/pip install -q . && . .venv/bin/activate && \\\n"
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")
# A chain head hashes the events' timestamps, so it differs from run to run too.
_HEADS = re.compile(r"\b\d+:sha256:[0-9a-f]{64}")


def _code_blocks(text: str = README) -> list[str]:
    return re.findall(r"```(?:sh|python)?\n(.*?)```", text, flags=re.DOTALL)


def _doc(page: str) -> str:
    return (DOCS / page).read_text()


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _timeless(text: str) -> str:
    text = _HEADS.sub(lambda m: "H" * len(m.group(0)), text)
    return _TIMES.sub(lambda m: "T" * len(m.group(0)), text)


def _run_first_command(cwd: Path) -> str:
    first = _code_blocks()[0]
    assert first.startswith(FIRST_PREFIX)
    result = _shell(first.removeprefix(FIRST_PREFIX), cwd)
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout


def test_ci_runs_the_readmes_test_command() -> None:
    test_command = next(b for b in _code_blocks() if "pytest" in b).strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readmes_first_command_prints_what_the_readme_shows(tmp_path: Path) -> None:
    shown = next(b for b in _code_blocks() if b.startswith("docker.io/library/alpine"))
    assert _timeless(_run_first_command(tmp_path)) == _timeless(shown)
    assert (tmp_path / "imageledger.db").exists()


def _steps(block: str) -> list[tuple[str, str]]:
    """The (command, output) pairs of a transcript: `$ command` lines and what follows."""
    steps: list[tuple[str, str]] = re.findall(
        r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", block, flags=re.MULTILINE
    )
    return steps


def _replay(steps: list[tuple[str, str]], tmp_path: Path) -> None:
    last_code = 0
    for command, shown in steps:
        if command == "echo $?":
            assert f"{last_code}\n" == shown, command
            continue
        if command.startswith("cat "):  # the tour shows the file it then uses
            (tmp_path / command.split()[1]).write_text(shown)
            continue
        result = _shell(command, tmp_path)
        last_code = result.returncode
        assert _timeless(result.stdout + result.stderr) == _timeless(shown), command


def test_the_readmes_command_line_tour_is_what_a_real_run_prints(
    tmp_path: Path,
) -> None:
    tour = next(b for b in _code_blocks() if b.startswith("$ imageledger get"))
    steps = _steps(tour)
    assert len(steps) == 21
    _run_first_command(tmp_path)
    _replay(steps, tmp_path)


def test_the_docs_write_once_names_example_is_what_a_real_run_prints(
    tmp_path: Path,
) -> None:
    example = next(
        b
        for b in _code_blocks(_doc("write-once.md"))
        if b.startswith("$ imageledger register") and "--immutable" in b
    )
    steps = _steps(example)
    assert len(steps) == 8
    _replay(steps, tmp_path)


def _chain_script() -> str:
    return next(
        b for b in _code_blocks(_doc("integrity.md")) if b.startswith("# chain_head.py")
    )


def test_the_docs_chain_script_is_about_ten_lines() -> None:
    lines = [line for line in _chain_script().splitlines() if line.strip()]
    assert len(lines) <= 12


@pytest.mark.parametrize("events", [0, 1, 40])
def test_the_docs_chain_script_recomputes_the_stores_checkpoint(
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


def test_the_readmes_links_lead_to_files_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert "docs/index.md" in local
    missing = [link for link in local if not (ROOT / link).is_file()]
    assert missing == []


def test_every_docs_page_is_in_the_mkdocs_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(page.name for page in DOCS.glob("*.md"))
    assert [page for page in pages if f": {page}\n" not in nav] == []
