"""The house's shape: no import circle between modules of ``src/enclavekit``, and no import
from a lower layer into a higher one, the layers being the table under "Layers" in
``docs/development/architecture.md`` (read here, so the doc and the check cannot drift).

What counts as an edge (module A imports module B), read with ``ast`` from A's source:

* **Every import statement anywhere in A**: module level, inside functions and methods,
  under ``if TYPE_CHECKING:``. Type-only imports are not exempt: a type that A needs from B
  is a dependency of A's design on B even if the interpreter never runs it, and a circle
  that exists only for the type checker is still a circle the next engineer has to think
  through (and becomes a real one as soon as the type is needed at run time). A
  function-level import that would close a circle is a circle too: moving an import into a
  function changes when it runs, not what depends on what.
* ``import enclavekit.a.b`` is an edge to the module ``a.b`` (``a/b.py``, or ``a/b/__init__.py``
  when ``a.b`` is a package); a name that is no module of the package is cut back to the
  longest prefix that is one.
* ``from enclavekit.a import n`` (or the relative ``from . import n``): an edge to the
  submodule ``a.n`` when there is one, else to ``a`` itself — for a package its
  ``__init__.py``, whose own imports then lead on to wherever it re-exports ``n`` from. So
  ``from enclavekit.host import VM`` is the edge -> ``host/__init__`` and, through it,
  -> ``host/vm``.
* The parent packages that Python initialises before a submodule are **not** edges of the
  submodule: the package ``__init__`` always runs first and completes before anything that
  only its submodules import from each other, so a package that re-exports its submodules
  is no circle. A submodule that imports a *name from its own package* (an edge to the
  ``__init__``) while that ``__init__`` imports the submodule is one, and is reported.
* A module importing itself is ignored; ``importlib.import_module`` of a computed name is
  not read (the one use loads the enclave app, which is not a module of the package).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "enclavekit"
ARCHITECTURE = ROOT / "docs" / "development" / "architecture.md"
DOC = "docs/development/architecture.md"

Module = tuple[str, ...]
"""A module of the package by its dotted path below ``enclavekit``; ``()`` is the root
``__init__``, ``("host",)`` the package ``host/__init__.py``."""


def doc_layers(text: str) -> dict[str, int]:
    """The layer table of the architecture doc: top-level module or package → rank.

    Rows of the table under the ``## Layers`` heading: ``| RANK | `name`, `name` | ... |``.
    """
    section = re.search(r"^## Layers\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if section is None:
        raise AssertionError(f"{DOC} has no '## Layers' section")
    ranks: dict[str, int] = {}
    for row in re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", section.group(1), re.M):
        for name in re.findall(r"`([^`]+)`", row[1]):
            if name in ranks:
                raise AssertionError(f"{DOC}: {name} is in two layers")
            ranks[name] = int(row[0])
    if not ranks:
        raise AssertionError(f"{DOC}: the Layers section has no table rows")
    return ranks


RANK = doc_layers(ARCHITECTURE.read_text())


def module_of(path: Path) -> Module:
    """The dotted module path of a file of the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


MODULES: dict[Module, Path] = {module_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: Module, modules: Iterable[Module]) -> Module:
    known = set(modules)
    while name and name not in known:
        name = name[:-1]
    return name


def imports(source: str, here: Module, is_package: bool,
            modules: Iterable[Module]) -> list[tuple[Module, int]]:
    """Every (module of the package, line) that ``source``, the module ``here``, imports."""
    known = set(modules)
    package = here if is_package else here[:-1]
    found: list[tuple[Module, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = tuple(alias.name.split("."))
                if parts[0] == "enclavekit":
                    found.append((_resolve(parts[1:], known), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                if node.level - 1 > len(package):
                    raise AssertionError(f"{here}: relative import beyond the package")
            elif node.module and node.module.split(".")[0] == "enclavekit":
                base = ()
            else:
                continue
            if node.module:
                parts = tuple(node.module.split("."))
                base = base + (parts[1:] if not node.level else parts)
            for alias in node.names:
                sub = (*base, alias.name)
                target = sub if sub in known else _resolve(base, known)
                found.append((target, node.lineno))
    return [(t, line) for t, line in found if t != here]


def graph(modules: Mapping[Module, Path]) -> dict[Module, dict[Module, int]]:
    """module → {imported module: line of its first import}."""
    edges: dict[Module, dict[Module, int]] = {}
    for mod, path in modules.items():
        out: dict[Module, int] = {}
        for target, line in imports(path.read_text(), mod, path.name == "__init__.py", modules):
            out.setdefault(target, line)
        edges[mod] = out
    return edges


def circles(edges: Mapping[Module, Iterable[Module]]) -> list[list[Module]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[Module, int] = {}
    low: dict[Module, int] = {}
    stack: list[Module] = []
    on_stack: set[Module] = set()
    found: list[list[Module]] = []

    def visit(node: Module) -> None:  # recursion depth is bounded by the module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _name(mod: Module) -> str:
    return ".".join(("enclavekit", *mod))


def layer(mod: Module) -> str:
    """The top-level module or package ``mod`` belongs to (``__init__`` for the root)."""
    return mod[0] if mod else "__init__"


EDGES = graph(MODULES)


def test_no_import_circle_between_modules() -> None:
    found = circles(EDGES)
    described = []
    for component in found:
        inside = set(component)
        ties = [f"{_name(a)} -> {_name(b)} (line {line})" for a in component
                for b, line in sorted(EDGES[a].items()) if b in inside]
        described.append("; ".join(ties))
    assert not found, "import circles: " + " | ".join(described)


def test_every_top_level_module_has_a_layer() -> None:
    unknown = sorted({layer(mod) for mod in MODULES} - set(RANK))
    assert not unknown, (f"{', '.join(unknown)}: no layer; add it to the Layers table in {DOC}")


@pytest.mark.parametrize("mod", sorted(MODULES), ids=_name)
def test_module_imports_no_higher_layer(mod: Module) -> None:
    own = layer(mod)
    if own not in RANK:
        pytest.skip(f"{own} has no layer (reported by test_every_top_level_module_has_a_layer)")
    for target, line in EDGES[mod].items():
        theirs = layer(target)
        if theirs in RANK:
            assert RANK[theirs] <= RANK[own], (
                f"{_name(mod)} (layer {own}, rank {RANK[own]}) imports {_name(target)} "
                f"(layer {theirs}, rank {RANK[theirs]}) at line {line}")


# ------------------------------------------------------------------ the check can fail


def test_the_circle_check_finds_a_circle_in_a_synthetic_graph() -> None:
    edges = {("a",): [("b",)], ("b",): [("c",)], ("c",): [("a",), ("d",)], ("d",): [],
             ("e",): [("e", "f")], ("e", "f"): [("e",)]}
    assert circles(edges) == [[("a",), ("b",), ("c",)], [("e",), ("e", "f")]]
    assert circles({("a",): [("b",)], ("b",): [("c",)], ("c",): []}) == []


def test_the_edges_resolve_relative_absolute_lazy_and_type_only_imports() -> None:
    modules = [(), ("sgx",), ("sgx", "consts"), ("sgx", "probe"), ("cli",), ("vm",),
               ("vm", "device"), ("host",), ("host", "vm")]
    source = ("from typing import TYPE_CHECKING\n"
              "from ..cli import main\n"
              "import enclavekit.vm.device.Thing\n"
              "from . import consts\n"
              "from enclavekit.host import VM\n"
              "if TYPE_CHECKING:\n    from ..vm import device\n"
              "def f():\n    import enclavekit\n")
    targets = [t for t, _ in imports(source, ("sgx", "probe"), False, modules)]
    assert targets == [("cli",), ("vm", "device"), ("sgx", "consts"), ("host",),
                       ("vm", "device"), ()]
    # in a package __init__, "." is the package itself; a name of it is no edge to itself
    init = [t for t, _ in imports("from . import consts\nfrom .consts import X\n"
                                  "from . import nothing\n", ("sgx",), True, modules)]
    assert init == [("sgx", "consts"), ("sgx", "consts")]


def test_a_circle_through_a_package_init_is_found() -> None:
    """``host/vm`` takes a name from ``host/__init__``, which re-exports ``host/vm``."""
    modules = [("host",), ("host", "vm"), ("host", "enclave")]
    sources = {("host",): "from .vm import VM\nfrom .enclave import Enclave\n",
               ("host", "vm"): "from enclavekit.host import Enclave\n",
               ("host", "enclave"): "import enclavekit.host.enclave\n"}
    edges = {m: [t for t, _ in imports(s, m, m == ("host",), modules)]
             for m, s in sources.items()}
    assert circles(edges) == [[("host",), ("host", "vm")]]
    sources[("host", "vm")] = "from .enclave import Enclave\n"  # straight to the submodule
    edges = {m: [t for t, _ in imports(s, m, m == ("host",), modules)]
             for m, s in sources.items()}
    assert circles(edges) == []


def test_the_layer_table_is_read_from_the_doc() -> None:
    table = "## Layers\n\n| rank | modules | role |\n|---|---|---|\n| 0 | `a`, `b` | x |\n" \
            "| 2 | `c` | y |\n\n## Next\n| 9 | `z` | no |\n"
    assert doc_layers(table) == {"a": 0, "b": 0, "c": 2}
    with pytest.raises(AssertionError, match="no '## Layers' section"):
        doc_layers("# nothing\n")
    assert RANK["jose"] == 0 and RANK["cli"] > RANK["ray"] > RANK["kms"] > RANK["host"]
