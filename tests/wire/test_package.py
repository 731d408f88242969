"""The wire package's shape: every module is pinned for enclaves, the codec's modules import
only downwards in the order the package docstring gives, and the public names stay."""

from __future__ import annotations

import ast
from pathlib import Path

import enclavekit.wire as wire
from enclavekit.vm.bootstrap import RUNTIME_MODULES

WIRE = Path(wire.__file__).resolve().parent
CODEC_ORDER = ("_kinds", "_faults", "limits", "_reader", "_nodes", "_encode", "_decode",
               "hints", "values", "calls")
"""The value codec's modules, each allowed to import only those before it."""


def _wire_imports(path: Path) -> set[str]:
    """The sibling modules ``path`` imports (``from .x import``, ``from . import x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_every_wire_module_is_in_the_enclave_runtime_pin() -> None:
    pinned = {rel for rel in RUNTIME_MODULES if rel.startswith("enclavekit/wire/")}
    present = {f"enclavekit/wire/{p.name}" for p in WIRE.glob("*.py")}
    assert present == pinned  # a module left out could not be imported inside an enclave


def test_codec_modules_import_only_earlier_ones() -> None:
    assert {p.stem for p in WIRE.glob("*.py")} >= set(CODEC_ORDER)
    for i, name in enumerate(CODEC_ORDER):
        imported = _wire_imports(WIRE / f"{name}.py")
        assert imported & set(CODEC_ORDER) <= set(CODEC_ORDER[:i]), f"{name} imports {imported}"


def test_no_wire_module_imports_the_package_itself() -> None:
    for path in WIRE.glob("*.py"):
        if path.name != "__init__.py":
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom):
                    continue
                target = "." * node.level + (node.module or "")
                assert target not in ("..wire", "enclavekit.wire"), path.name
                if target == ".":  # only sibling modules, never a name of the package
                    assert all((WIRE / f"{a.name}.py").is_file() for a in node.names), path.name


def test_package_level_names_stay() -> None:
    assert sorted(wire.__all__) == sorted([
        "DEFAULT_LIMITS", "FLAG_ERROR", "FLAG_REPLY", "PROTOCOL_VERSION", "Arguments",
        "CallSignature", "Frame", "FrameReader", "Limits", "check_hint", "decode_value",
        "encode_value", "pack_frame", "read_frame", "recv_frame", "send_frame"])
    for name in wire.__all__:
        assert getattr(wire, name) is not None
