"""Layers depend inward: imageledger -> infrastructure -> projections -> domain.

Read from the source with `ast`, so a violating import fails here even if no
test happens to execute it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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
    ),
}


def imports(source: Path) -> list[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


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


def test_the_layers_are_flat_folders_without_subpackages() -> None:
    for layer in (*ALLOWED, "application"):
        folders = [p for p in (ROOT / layer).iterdir() if p.is_dir()]
        assert [p.name for p in folders if p.name != "__pycache__"] == []
