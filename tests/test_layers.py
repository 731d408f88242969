"""The layering rule: a module never imports a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "enclavekit"

RANK = {
    "errors": 0,
    "_fs": 0,
    "_net": 0,
    "_guard": 0,
    "_codec": 0,
    "_version": 0,
    "sgx": 0,
    "dcap": 0,
    "wire": 0,
    "vm": 1,
    "enclave": 2,
    "host": 2,
    "attest": 3,
    "kms": 3,
    "ray": 4,
    "cli": 4,
}


def _layer(parts: tuple[str, ...]) -> str | None:
    return parts[0] if parts and parts[0] in RANK else None


def _imports(source: str, here: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every enclavekit module that ``source`` (at package path ``here``) imports."""
    tree = ast.parse(source)
    found: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = tuple(alias.name.split("."))
                if parts[0] == "enclavekit":
                    found.append(parts[1:])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                mod = tuple(node.module.split(".")) if node.module else ()
                found.append(base + mod)
            elif node.module and node.module.split(".")[0] == "enclavekit":
                found.append(tuple(node.module.split("."))[1:])
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_no_higher_layer(path: Path) -> None:
    own = _layer(path.relative_to(PACKAGE).with_suffix("").parts)
    if own is None:
        return  # the package root may import anything (it is the public surface)
    here = path.relative_to(PACKAGE).with_suffix("").parts
    for target in _imports(path.read_text(), here):
        layer = _layer(target)
        if layer is not None:
            assert RANK[layer] <= RANK[own], f"{path.name} (layer {own}) imports {'.'.join(target)}"


def test_the_check_resolves_relative_and_absolute_imports() -> None:
    source = "from ..cli import main\nimport enclavekit.vm.device\nfrom . import consts\n"
    targets = _imports(source, ("sgx", "probe"))
    assert targets == [("cli",), ("vm", "device"), ("sgx",)]
