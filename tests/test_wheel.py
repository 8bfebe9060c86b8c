"""The built wheel: every layer module ships in `imageledger` and imports from a venv.

The layers live in top-level folders that install as one package (pyproject's
package-dir mapping); this builds the real wheel, checks its file list against
the folders, installs it into a fresh virtual environment and imports every
module there, away from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "application": "imageledger",
    "domain": "imageledger/domain",
    "projections": "imageledger/projections",
    "infrastructure": "imageledger/infrastructure",
}
TIMEOUT = 300.0  # seconds for one pip or venv command
# What the serve extra brings, and its modules import first.
EXTRA_SERVE = ("anyio", "starlette", "uvicorn", "jinja2")

IMPORT_ALL = """
import importlib, json, sys
failed = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as e:
        failed[module] = f"{type(e).__name__}: {e}"
import imageledger
print(json.dumps({"file": imageledger.__file__, "failed": failed}))
"""

SMOKE = """
import sys
from imageledger import ImageStore
target = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
          "digest": "sha256:" + "ab" * 32, "size": 7}
with ImageStore.open(sys.argv[1]) as store:
    store.register("registry.example/app:v1", target)
with ImageStore.open(sys.argv[1]) as store:
    print(store.get("registry.example/app:v1").target.digest)
"""


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def output(done: subprocess.CompletedProcess[str]) -> str:
    """The command (scripts elided), its exit status and its output, for messages."""
    shown = " ".join("<script>" if "\n" in arg else arg for arg in map(str, done.args))
    return f"$ {shown}\n(exit {done.returncode})\n{done.stdout}{done.stderr}"


def build_wheel(out: Path, cwd: Path) -> Path:
    """Build the project's wheel into `out` with the running interpreter's pip.

    From a copy of the sources, so setuptools' build/ and egg-info land in the
    temporary folder, not in the work tree. Without build isolation first (it
    needs setuptools able to build wheels in this interpreter); if that build
    fails, the same build with isolation.
    """
    source = cwd / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    for folder in LAYERS:
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    pip = [sys.executable, "-m", "pip"]
    command: list[str | Path] = [*pip, "wheel", "-q", "--no-deps", "-w", out, source]
    attempts = [run([*command, "--no-build-isolation"], cwd)]
    if attempts[-1].returncode != 0:
        attempts.append(run(command, cwd))
    assert attempts[-1].returncode == 0, "\n".join(output(a) for a in attempts)
    wheels = sorted(out.glob("imageledger-*.whl"))
    assert len(wheels) == 1, f"{wheels}\n" + "\n".join(output(a) for a in attempts)
    return wheels[0]


def expected_members() -> dict[str, Path]:
    """Path in the wheel -> source file, for every module of the four layers."""
    members: dict[str, Path] = {}
    for folder, package in LAYERS.items():
        sources = sorted((ROOT / folder).rglob("*.py"))
        assert sources, f"no modules found in {ROOT / folder}"
        for source in sources:
            inside = source.relative_to(ROOT / folder).as_posix()
            members[f"{package}/{inside}"] = source
    return members


def module_name(member: str) -> str:
    parts = member.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def venv_python(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def test_the_wheel_ships_every_layer_module_and_imports_them_from_a_fresh_venv(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path / "dist", tmp_path)

    expected = expected_members()
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    missing = sorted(set(expected) - shipped)
    assert not missing, f"{wheel.name} lacks {missing}; it holds {sorted(shipped)}"
    assert "imageledger/py.typed" in shipped
    # The pages' templates and static files (package data, not modules).
    data = sorted(
        f"imageledger/{path.relative_to(ROOT / 'application').as_posix()}"
        for folder in ("templates", "static")
        for path in (ROOT / "application" / folder).iterdir()
    )
    assert data
    assert sorted(set(data) - shipped) == []

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", venv], tmp_path)
    assert made.returncode == 0, output(made)
    python = venv_python(venv)
    installed = run([python, "-m", "pip", "install", "-q", wheel], tmp_path)
    assert installed.returncode == 0, output(installed)

    # -I: no PYTHONPATH, no user site, no current directory on sys.path.
    modules = sorted(module_name(member) for member in expected)
    assert {"imageledger", "imageledger.store", "imageledger.domain.names"} <= set(
        modules
    )
    imported = run([python, "-I", "-c", IMPORT_ALL, *modules], tmp_path)
    assert imported.returncode == 0, output(imported)
    report = json.loads(imported.stdout)
    # The base install has no extra: only the PostgreSQL modules need psycopg,
    # and only the HTTP service and its pages need the serve extra.
    needs_extra = {
        "imageledger.infrastructure.postgres": ("psycopg",),
        "imageledger.serve": EXTRA_SERVE,
        "imageledger.web": EXTRA_SERVE,
    }
    assert set(needs_extra) <= set(modules)
    assert set(report["failed"]) == set(needs_extra), output(imported)
    for module, error in report["failed"].items():
        assert error in {
            f"ModuleNotFoundError: No module named '{name}'"
            for name in needs_extra[module]
        }, output(imported)
    package_file = Path(report["file"]).resolve()
    assert package_file.is_relative_to(venv.resolve()), package_file
    assert not package_file.is_relative_to(ROOT), package_file

    used = run([python, "-I", "-c", SMOKE, tmp_path / "smoke.db"], tmp_path)
    assert used.returncode == 0, output(used)
    assert used.stdout.strip() == "sha256:" + "ab" * 32

    # Without the serve extra, `serve` says which extra it needs, in one line.
    script = venv / "bin" / "imageledger"
    served = run([script, "--db", tmp_path / "serve.db", "serve"], tmp_path)
    assert (served.returncode, served.stdout, served.stderr) == (
        1,
        "",
        "Error: serve needs the serve extra: pip install 'imageledger[serve]' "
        "(No module named 'uvicorn')\n",
    )
    assert not (tmp_path / "serve.db").exists()
