"""Layers depend inward (imageledger -> infrastructure -> projections -> domain),
and each module is imported only by the modules docs/architecture.md allows.

Read from the source with `ast`, so a violating import fails here even if no
test happens to execute it. The module map in docs/architecture.md is the
rule: a table with one row per module, naming who may import it.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from conftest import descriptor
from imageledger import ImageStore

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "imageledger": "application",
    "imageledger.domain": "domain",
    "imageledger.projections": "projections",
    "imageledger.infrastructure": "infrastructure",
}

# What each layer's modules may import, besides the standard library.
ALLOWED: dict[str, tuple[str, ...]] = {
    # re2: Go's regular expressions for the filters' ~= (no I/O, like pydantic).
    "domain": ("imageledger.domain", "pydantic", "eventsourcing.domain", "re2"),
    "projections": ("imageledger.domain", "imageledger.projections", "pydantic"),
    "infrastructure": (
        "imageledger.domain",
        "imageledger.projections",
        "imageledger.infrastructure",
        "pydantic",
        "eventsourcing",
        "orjson",
        "psycopg",  # the postgres extra; imported only when a URL is opened
        # the containerd extra; imported only by follow containerd
        "grpc",
        "grpc_tools",
        "google.protobuf",
    ),
}
SOURCES = sorted(
    path
    for layer in LAYERS.values()
    for path in (ROOT / layer).glob("*.py")
    if path.name != "__init__.py"
)


def imports(source: Path) -> list[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            # `from imageledger import transfer` imports a module too.
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_file(name: str) -> str | None:
    """The repository path of an imageledger module, or None."""
    for package, folder in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(package + "."):
            path = f"{folder}/{name[len(package) + 1 :]}.py"
            return path if (ROOT / path).is_file() else None
    return None


def module_map() -> dict[str, list[str]]:
    """docs/architecture.md's table: module path -> who may import it."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+/[a-z_]+\.py)` \|[^|]*\| ([^|]+) \|$", text, re.M)
    return {
        path: [who.strip().strip("`") for who in importers.split(",")]
        for path, importers in rows
    }


def may_import(importer: str, allowed: list[str]) -> bool:
    return any(rule == "any module" or fnmatch(importer, rule) for rule in allowed)


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return True
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize(
    "source",
    [path for layer in ALLOWED for path in sorted((ROOT / layer).glob("*.py"))],
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_each_module_imports_only_from_its_own_or_inner_layers(source: Path) -> None:
    prefixes = ALLOWED[source.parent.name]
    outward = [m for m in imports(source) if not allowed(m, prefixes)]
    assert outward == []


def test_the_module_map_names_every_module_and_no_other() -> None:
    named = set(module_map())
    present = {f"{path.parent.name}/{path.name}" for path in SOURCES}
    assert sorted(present - named) == []
    assert sorted(named - present) == []


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_module_imports_only_what_the_module_map_allows_it(source: Path) -> None:
    rules = module_map()
    importer = f"{source.parent.name}/{source.name}"
    refused = sorted(
        target
        for name in imports(source)
        if (target := module_file(name)) is not None
        and target != importer
        and not may_import(importer, rules.get(target, []))
    )
    assert refused == []


def test_the_layers_are_flat_folders_without_subpackages() -> None:
    # A folder of package data (the pages' templates/ and static/) is no
    # subpackage: it holds no Python.
    for layer in (*ALLOWED, "application"):
        folders = [p for p in (ROOT / layer).iterdir() if p.is_dir()]
        subpackages = [p for p in folders if any(p.rglob("*.py"))]
        assert [p.name for p in subpackages if p.name != "__pycache__"] == []


def entries_into_infrastructure(call: Callable[[], object]) -> list[str]:
    """The functions of imageledger.infrastructure that `call` calls from the
    outer layers (by module name, so it holds for an installed wheel too)."""
    entered: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_back is None:
            return
        callee = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "")
        if _in_infrastructure(callee) and _in_outer_layers(caller):
            entered.append(f"{callee}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return entered


def _in_infrastructure(module: str) -> bool:
    return module.startswith("imageledger.infrastructure.")


def _in_outer_layers(module: str) -> bool:
    """Our code outside infrastructure (not the standard library's context
    managers that resume a generator of ours, say)."""
    return module.startswith("imageledger.") and not _in_infrastructure(module)


def test_one_register_enters_the_storage_layer_once(store: ImageStore) -> None:
    store.register("app:1", descriptor(1))
    entered = entries_into_infrastructure(
        lambda: store.register("app:1", descriptor(2), actor="a")
    )
    assert [entry.split(":")[1] for entry in entered] == ["write"]
    assert store.get("app:1").version == 2
