"""The layering of the library, read from its source: no import cycles, imports point down, small modules.

Every ``import`` statement counts, wherever it stands: at module level, inside a function or under
``if TYPE_CHECKING`` (an import hidden in a function is still a dependency). ``from pkg import name``
is an edge to the submodule ``pkg.name`` when that is a module, else to ``pkg`` (its ``__init__``).
Cycles are looked for between modules and between the parts of a package (``downscale.inference``,
``downscale.training``, ``downscale.bundle`` …): two subpackages must not lean on each other either.
``docs/architecture.md`` draws these layers and gives every module one line; it may not miss a module nor name one
that does not exist.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "downscale", "data_catalog")
#: Top-level names a package must never import; the layers are flows → downscale → data_catalog.
FORBIDDEN = {
    "data_catalog": ("downscale", "flows", "prefect"),
    "downscale": ("flows", "prefect"),
}
MAX_LINES = 500
ARCHITECTURE = REPO / "docs" / "architecture.md"


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (a module name, internal or not) at line ``line`` of ``source``."""

    source: str
    target: str
    line: int


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of ``packages`` under ``root``."""
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module named by a (possibly relative) ``from … import``."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path, modules: set[str]) -> list[Edge]:
    """Every import of ``module`` (all statements, at any depth), resolved to the module it loads."""
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            edges += [Edge(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                edges.append(Edge(module, sub if sub in modules else base, node.lineno))
    return edges


def import_graph(root: Path, packages: tuple[str, ...]) -> tuple[dict[str, Path], list[Edge]]:
    """The modules of ``packages`` and every import edge out of them."""
    files = module_files(root, packages)
    names = set(files)
    return files, [e for m, p in files.items() for e in imports_of(m, p, names)]


def cycles(modules: set[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted; internal edges only."""
    succ: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if e.target in modules and e.target != e.source:
            succ[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return sorted(found)


def part_of(module: str) -> str:
    """The part of its package a module belongs to: its subpackage (``downscale.inference.runtime`` →
    ``downscale.inference``), or itself for a top-level module or package (``downscale.bundle``)."""
    return ".".join(module.split(".")[:2])


def part_edges(modules: set[str], edges: list[Edge]) -> list[Edge]:
    """The internal edges between different parts (see :func:`part_of`), line numbers kept."""
    return [Edge(part_of(e.source), part_of(e.target), e.line) for e in edges
            if e.target in modules and part_of(e.source) != part_of(e.target)]


def _describe(component: list[str], edges: list[Edge]) -> str:
    inside = set(component)
    lines = sorted({f"  {e.source}:{e.line} imports {e.target}" for e in edges
                    if e.source in inside and e.target in inside and e.source != e.target})
    return "cycle " + " ↔ ".join(component) + "\n" + "\n".join(lines)


def layer_violations(edges: list[Edge], forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    """``source:line imports target`` for each import of a name its package must not import."""
    return sorted(f"{e.source}:{e.line} imports {e.target}" for e in edges
                  if e.target.split(".")[0] in forbidden.get(e.source.split(".")[0], ()))


def modules_named_in(text: str, packages: tuple[str, ...]) -> set[str]:
    """The modules of ``packages`` that ``text`` names, dotted (``downscale.inference.store``) or as a path
    (``downscale/inference/store.py``, ``data_catalog/synthetic/``, ``…/__init__.py``), as dotted names. A name
    must stand alone: ``fv3-downscale``, ``tests/downscale/…`` and ``downscaling`` name nothing; a sentence's
    full stop after a name is not part of it."""
    roots = "|".join(re.escape(p) for p in packages)
    named = set()
    for token in re.findall(rf"(?<![\w./-])(?:{roots})\b[\w./]*", text):
        token = token.rstrip("./").removesuffix(".py").replace("/", ".")
        named.add(token.removesuffix(".__init__"))
    return named


# -- the checks on this repository ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    return import_graph(REPO, PACKAGES)


def test_the_graph_covers_the_library(graph):
    files, edges = graph
    assert {"data_catalog.catalog", "data_catalog.intake", "downscale.cli", "flows.pipeline"} <= set(files)
    targets = {(e.source, e.target) for e in edges}
    assert ("data_catalog.catalog", "data_catalog.intake") in targets      # catalog reads the intake form …
    assert ("data_catalog.intake", "data_catalog.catalog") not in targets  # … and intake knows nothing of it


def test_no_import_cycles(graph):
    files, edges = graph
    found = cycles(set(files), edges)
    assert not found, "import cycles (every import counts, also inside functions):\n" + "\n".join(
        _describe(c, edges) for c in found)


def test_no_import_cycles_between_subpackages(graph):
    files, edges = graph
    found = cycles({part_of(m) for m in files}, part_edges(set(files), edges))
    lines = [f"cycle {' ↔ '.join(c)}:\n" + "\n".join(
        sorted({f"  {e.source}:{e.line} imports {e.target}" for e in edges
                if e.target in files and {part_of(e.source), part_of(e.target)} <= set(c)
                and part_of(e.source) != part_of(e.target)})) for c in found]
    assert not found, "subpackages that import each other:\n" + "\n".join(lines)


def test_imports_point_down_the_layers(graph):
    _, edges = graph
    bad = layer_violations(edges, FORBIDDEN)
    assert not bad, "imports against the layers flows → downscale → data_catalog (no prefect below flows):\n" + (
        "\n".join(bad))


def test_no_library_module_is_over_500_lines(graph):
    files, _ = graph
    long = {m: n for m, p in files.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def test_the_architecture_page_names_every_module_and_no_other(graph):
    files, _ = graph
    named = modules_named_in(ARCHITECTURE.read_text(), PACKAGES)
    missing = sorted(set(files) - named)
    assert not missing, f"modules without their line in {ARCHITECTURE.relative_to(REPO)}: {missing}"
    unknown = sorted(named - set(files))
    assert not unknown, f"{ARCHITECTURE.relative_to(REPO)} names modules that do not exist: {unknown}"


# -- the checker itself finds what it must --------------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_checker_sees_cycles_through_functions_init_reexports_and_relative_imports(tmp_path):
    _write(tmp_path, {
        "low/__init__.py": "from low.b import helper\n",
        "low/a.py": "def f():\n    from low import b\n    return b\n",          # function-level, submodule
        "low/b.py": "from low import helper_name\n",                             # a name of the __init__
        "low/c.py": "from . import d\n",                                          # relative
        "low/d.py": "import low.c\n",
        "low/e.py": "import low.a\n",                                             # into a cycle, not in one
        "high/__init__.py": "",
        "high/x.py": "import prefect\nfrom low.a import f\n",
    })
    files, edges = import_graph(tmp_path, ("low", "high"))
    assert Edge("low.a", "low.b", 2) in edges                    # `from low import b` is the submodule
    assert Edge("low.b", "low", 1) in edges                      # `from low import helper_name` is __init__
    assert cycles(set(files), edges) == [["low", "low.b"], ["low.c", "low.d"]]
    assert layer_violations(edges, {"low": ("high",), "high": ("prefect",)}) == ["high.x:1 imports prefect"]
    parts = {part_of(m) for m in files}
    assert cycles(parts, part_edges(set(files), edges)) == [["low", "low.b"], ["low.c", "low.d"]]  # parts = modules
    _write(tmp_path, {"low/b.py": "def g():\n    import high.x\n"})
    _, edges = import_graph(tmp_path, ("low", "high"))
    assert layer_violations(edges, {"low": ("high",)}) == ["low.b:2 imports high.x"]


def test_checker_sees_subpackages_that_lean_on_each_other(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/bundle.py": "",
        "pkg/inference/__init__.py": "",
        "pkg/inference/runtime.py": "import pkg.bundle\ndef load():\n    from pkg.training.trainer import f\n",
        "pkg/inference/baselines.py": "",
        "pkg/training/__init__.py": "",
        "pkg/training/trainer.py": "import pkg.bundle\ndef f():\n    from pkg.inference import baselines\n",
    })
    files, edges = import_graph(tmp_path, ("pkg",))
    assert cycles(set(files), edges) == []                     # no two modules import each other …
    found = cycles({part_of(m) for m in files}, part_edges(set(files), edges))
    assert found == [["pkg.inference", "pkg.training"]]        # … but the two subpackages do


def test_checker_reads_module_names_dotted_and_as_paths():
    text = ("`downscale.inference.store` writes; downscale/bundle.py, data_catalog/synthetic/ and "
            "downscale/inference/__init__.py; not fv3-downscale, tests/downscale/test_bundle.py nor downscaling; "
            "downscale.cli.")
    assert modules_named_in(text, ("downscale", "data_catalog")) == {
        "downscale.inference.store", "downscale.bundle", "data_catalog.synthetic", "downscale.inference",
        "downscale.cli"}
