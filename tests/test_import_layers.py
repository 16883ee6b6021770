"""The project's import graph: no import cycles, and each package imports only the layers below it.

Read with :mod:`ast`, without importing anything. Every import counts: at module level, inside a function
(a lazy import) or under ``if TYPE_CHECKING``. ``import a.b`` and ``from a import b`` point at the module
``a.b`` when there is one, else at ``a``; relative imports are resolved. Importing a submodule is not an
import of its parent package's ``__init__``. The layers are described in docs/developers.md ("Layers").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"audiotag_data": REPO_ROOT / "data"} | {
    name: REPO_ROOT / name for name in ("safeio", "vggish", "classifier", "pipeline")}

# What the modules of a package (or of one module: the longest matching name applies) may import; an
# import of a module inside a listed package or module is allowed, any other project import is not.
MAY_IMPORT = {
    "audiotag_data": ("audiotag_data",),
    "safeio": ("safeio",),
    "vggish": ("vggish", "safeio", "audiotag_data"),
    "classifier": ("classifier", "safeio", "audiotag_data"),
    "classifier.head_file": ("classifier.inference", "safeio"),
    "pipeline": ("pipeline", "classifier", "vggish", "safeio", "audiotag_data"),
}


@dataclass(frozen=True)
class Edge:
    """One import statement of a project module that names another project module."""

    source: str
    target: str
    location: str  # "file:line", the file relative to the packages' folder
    lazy: bool  # inside a function

    def __str__(self) -> str:
        where = f"{self.location}, in a function" if self.lazy else self.location
        return f"{self.source} -> {self.target}  ({where})"


def find_modules(packages: dict[str, Path]) -> dict[str, Path]:
    """{dotted module name: file} of every .py file under each package folder (``__init__.py`` is the
    package itself)."""
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _imports(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under `node`, with whether it is inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        else:
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _imports(child, in_function or nested)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name that `from ... import` statement `node` of `module` imports from."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module among `name` and its dotted prefixes; None when it is not the project's."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def import_edges(modules: dict[str, Path], root: Path) -> list[Edge]:
    """The imports between `modules` (from :func:`find_modules`), at any depth; locations relative to
    `root`. A module's imports of itself are left out."""
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy in _imports(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = _absolute(node, module, path.name == "__init__.py")
                names = [f"{base}.{alias.name}" for alias in node.names]
            location = f"{path.relative_to(root)}:{node.lineno}"
            targets = {_resolve(name, modules) for name in names} - {None, module}
            edges += [Edge(module, target, location, lazy) for target in sorted(targets)]
    return edges


def import_cycles(edges: list[Edge]) -> list[list[str]]:
    """The import cycles: strongly connected components (Tarjan) of two or more modules, each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def describe_cycles(cycles: list[list[str]], edges: list[Edge]) -> str:
    """Each cycle's modules and the imports that close it, for a failure message."""
    lines = [f"{len(cycles)} import cycle(s). Break one by moving what both sides need into a module below "
             "them, which both import (docs/developers.md, \"Layers\"):"]
    for cycle in cycles:
        lines.append(f"- {', '.join(cycle)}:")
        lines += [f"    {edge}" for edge in edges if edge.source in cycle and edge.target in cycle]
    return "\n".join(lines)


def _within(module: str, name: str) -> bool:
    """Whether `module` is `name` or inside package `name`."""
    return module == name or module.startswith(f"{name}.")


def layer_violations(edges: list[Edge], may_import: dict[str, tuple[str, ...]]) -> list[str]:
    """The imports that `may_import` (as MAY_IMPORT) does not allow, each with the rule it breaks."""
    violations = []
    for edge in edges:
        rule = max((name for name in may_import if _within(edge.source, name)), key=len)
        allowed = may_import[rule]
        if not any(_within(edge.target, name) for name in allowed):
            violations.append(f"{edge}: {rule} may import only {', '.join(allowed)}")
    return violations


def _project_edges() -> list[Edge]:
    return import_edges(find_modules(PACKAGES), REPO_ROOT)


def test_the_graph_covers_every_package() -> None:
    modules = find_modules(PACKAGES)
    assert {"audiotag_data", "safeio.atomic", "vggish.model", "classifier.head_file",
            "pipeline.beam.cli"} <= set(modules)
    pairs = {(edge.source, edge.target) for edge in _project_edges()}
    assert ("classifier.pretrained", "classifier.head_file") in pairs
    assert ("pipeline.tagger", "classifier.events") in pairs  # under `if TYPE_CHECKING`


def test_no_import_cycles() -> None:
    edges = _project_edges()
    cycles = import_cycles(edges)
    assert not cycles, describe_cycles(cycles, edges)


def test_packages_import_only_the_layers_below() -> None:
    violations = layer_violations(_project_edges(), MAY_IMPORT)
    heading = "imports against the layers (MAY_IMPORT; docs/developers.md, \"Layers\"):"
    assert not violations, "\n".join([heading, *violations])


def _write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    """Write `files` ({path under root: source}) and return the modules of package ``pkg`` under root."""
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source, encoding="utf-8")
    return find_modules({"pkg": root / "pkg"})


def test_the_checks_find_a_cycle_and_a_layer_violation_in_a_generated_package(tmp_path: Path) -> None:
    modules = _write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.a import f\n",
        "pkg/a.py": "import os\n\n\ndef f():\n    from . import b\n    return b\n",
        "pkg/b.py": "from pkg.sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import f\n",
        "pkg/d.py": "import pkg.sub.c\nfrom pkg import sub\n",
    })
    edges = import_edges(modules, tmp_path)
    assert {(e.source, e.target) for e in edges} == {
        ("pkg", "pkg.a"), ("pkg.a", "pkg.b"), ("pkg.b", "pkg.sub.c"), ("pkg.sub.c", "pkg.a"),
        ("pkg.d", "pkg.sub.c"), ("pkg.d", "pkg.sub")}
    cycles = import_cycles(edges)
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    message = describe_cycles(cycles, edges)
    assert "pkg.a -> pkg.b  (pkg/a.py:5, in a function)" in message
    assert "pkg.sub.c -> pkg.a  (pkg/sub/c.py:1)" in message
    assert layer_violations(edges, {"pkg": ("pkg",), "pkg.sub": ("pkg.sub",)}) == [
        "pkg.sub.c -> pkg.a  (pkg/sub/c.py:1): pkg.sub may import only pkg.sub"]

    _write_package(tmp_path, {"pkg/sub/c.py": "import os\n"})
    assert import_cycles(import_edges(modules, tmp_path)) == []
