"""The import rules of the house, checked over the source (ast; nothing is imported):

1. no cycle among the imports a module runs when it is imported (module level, `if TYPE_CHECKING:`
   blocks left out; an import inside a function runs later and is how a lower floor calls up);
2. medmm.io reads files into records and imports nothing above them: only medmm.io, medmm.records,
   medmm.errors and medmm.codes, at any level (EXCEPTIONS name what stands and why);
3. nothing in medmm imports ui or training, statically or by name (importlib), except the CLI's
   command table's doors (medmm/cli/doors.py), which hand the demo and the interface what they need;
4. pydicom and fhir.resources are imported only in medmm.io, medmm.deid and medmm.synth.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("medmm", "ui", "training")
IO_MAY_IMPORT = ("medmm.io", "medmm.records", "medmm.errors", "medmm.codes")
FORMAT_LIBRARIES = ("pydicom", "fhir")
FORMAT_HOMES = ("medmm.io", "medmm.deid", "medmm.synth")
# (importer, imported) -> why it stands
EXCEPTIONS = {
    (
        "medmm.io.fhir_clinical",
        "medmm.tasks",
    ): "a Condition's codes are named with the default task's labels (Label.name), "
    "inside the function that names them; a loader told its task is the way out",
}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    module_level: bool  # runs when the importer is imported
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _literal_prefix(arg: ast.expr) -> str | None:
    """The leading literal text of a string or f-string argument."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return None


def imports_of(name: str, source: str, known: dict) -> tuple[list[Edge], set[tuple[str, int]]]:
    """(edges to the project's modules, (third-party top-level name, line)) of one module's source.

    `from X import y` is an edge to X.y when that is a module, else to X; relative imports are
    resolved against `name`. importlib.import_module("pkg.mod") and importlib.resources.files("pkg")
    with a literal (f-string) prefix are edges too, to the named module or package."""
    is_package = str(known.get(name, "")).endswith("__init__.py")
    edges: list[Edge] = []
    external: set[tuple[str, int]] = set()

    def add(target: str, module_level: bool, line: int) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]  # a name inside a module: the module
        if target and target != name:
            edges.append(Edge(name, target, module_level, line))

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, module_level)
                continue
            inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    (
                        add(alias.name, module_level, child.lineno)
                        if alias.name.split(".")[0] in PACKAGES
                        else external.add((alias.name.split(".")[0], child.lineno))
                    )
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                if module.split(".")[0] not in PACKAGES:
                    external.add((module.split(".")[0], child.lineno))
                    continue
                for alias in child.names:
                    full = f"{module}.{alias.name}"
                    add(full if full in known else module, module_level, child.lineno)
            elif isinstance(child, ast.Call) and child.args:
                func = child.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("import_module", "files") and (prefix := _literal_prefix(child.args[0])):
                    target = prefix.rstrip(".")
                    if target.split(".")[0] in PACKAGES:
                        add(target, module_level, child.lineno)
            visit(child, inner)

    visit(ast.parse(source, filename=name), True)
    return edges, external


def graph() -> tuple[list[Edge], dict[str, set[tuple[str, int]]]]:
    known = modules()
    edges, external = [], {}
    for name, path in known.items():
        e, x = imports_of(name, path.read_text(encoding="utf-8"), known)
        edges += e
        external[name] = x
    return edges, external


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        succ.setdefault(e.importer, set()).add(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            strong(v)
    return found


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_cycle_among_the_imports_a_module_runs():
    edges, _ = graph()
    assert cycles([e for e in edges if e.module_level]) == []


def test_io_imports_nothing_above_records():
    edges, _ = graph()
    bad = [
        (e.importer, e.imported, e.line)
        for e in edges
        if under(e.importer, ("medmm.io",))
        and not under(e.imported, IO_MAY_IMPORT)
        and (e.importer, e.imported) not in EXCEPTIONS
    ]
    assert bad == []


def test_only_the_command_table_opens_ui_and_training():
    edges, _ = graph()
    bad = [
        (e.importer, e.imported, e.line)
        for e in edges
        if under(e.importer, ("medmm",)) and e.importer != "medmm.cli.doors" and under(e.imported, ("ui", "training"))
    ]
    assert bad == []


def test_format_libraries_only_in_io_deid_and_synth():
    _, external = graph()
    bad = sorted(
        (name, lib, line)
        for name, found in external.items()
        for lib, line in found
        if lib in FORMAT_LIBRARIES and not under(name, FORMAT_HOMES)
    )
    assert bad == []


def test_every_exception_still_exists():
    edges, _ = graph()
    assert set(EXCEPTIONS) <= {(e.importer, e.imported) for e in edges}  # a fixed exception is taken off the list


def test_the_scanner_on_a_small_tree():
    known = {
        "medmm": "medmm/__init__.py",
        "medmm.a": "medmm/a.py",
        "medmm.b": "medmm/b.py",
        "medmm.pkg": "medmm/pkg/__init__.py",
        "medmm.pkg.c": "medmm/pkg/c.py",
        "ui": "ui/__init__.py",
        "ui.app": "ui/app.py",
        "training": "training/__init__.py",
    }
    source = (
        "from typing import TYPE_CHECKING\nimport numpy as np\nfrom medmm.pkg import c\nfrom medmm.b import thing\n"
        "if TYPE_CHECKING:\n    from ui.app import App\n"
        "def later():\n    import importlib\n    importlib.import_module(f'training.{x}')\n    from pydicom import dcmread\n"
    )
    edges, external = imports_of("medmm.a", source, known)
    assert {(e.imported, e.module_level) for e in edges} == {
        ("medmm.pkg.c", True),
        ("medmm.b", True),
        ("training", False),
    }
    assert {lib for lib, _ in external} == {"typing", "numpy", "importlib", "pydicom"}
    edges, _ = imports_of("medmm.pkg.c", "from .. import b\nfrom . import c2\n", {**known, "medmm.pkg.c2": "x"})
    assert {e.imported for e in edges} == {"medmm.b", "medmm.pkg.c2"}
    cyclic = [Edge("a", "b", True, 1), Edge("b", "c", True, 1), Edge("c", "a", True, 1), Edge("c", "d", True, 1)]
    assert cycles(cyclic) == [["a", "b", "c"]]
