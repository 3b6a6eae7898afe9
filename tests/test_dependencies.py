"""Declared dependencies equal imported ones: every third-party package the code imports is declared in
pyproject.toml (required or an extra), and every required one is imported, or named below with why not."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("medmm", "ui", "training")
# declared and needed at run time, but never imported by name
RUNTIME_ONLY = {
    "gguf": "transformers reads GGUF backbones with it",
    "pylibjpeg": "pydicom's JPEG decoder framework, found as a plugin",
    "pylibjpeg-libjpeg": "JPEG (baseline, lossless) decoding for pydicom, a pylibjpeg plugin",
    "pylibjpeg-openjpeg": "JPEG 2000 decoding for pydicom, a pylibjpeg plugin",
}


def normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normal(re.split(r"[<>=!~;\[ ]", spec.strip(), maxsplit=1)[0])


def imports_of(source: str, filename: str = "<source>") -> set[str]:
    """The top-level modules a source file imports absolutely, anywhere (function bodies too)."""
    names = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> files of the packages importing it."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in imports_of(path.read_text(encoding="utf-8"), str(path)):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distribution name -> files, for the imported modules outside the standard library and this project."""
    owners = importlib.metadata.packages_distributions()
    out: dict[str, set[str]] = {}
    for module, files in found.items():
        if module in sys.stdlib_module_names or module in PACKAGES or module == "__future__":
            continue
        for dist in owners.get(module, [module]):  # not installed (an extra): the module's own name
            out.setdefault(normal(dist), set()).update(files)
    return out


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = {requirement_name(s) for s in project["dependencies"]}
    extras = {requirement_name(s) for specs in project.get("optional-dependencies", {}).values() for s in specs}
    return required, extras


def test_every_imported_package_is_declared():
    required, extras = declared()
    used = third_party(imported_modules())
    missing = {dist: sorted(files)[:3] for dist, files in used.items() if dist not in required | extras}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_required_package_is_imported_or_said_why_not():
    required, _ = declared()
    used = set(third_party(imported_modules()))
    unused = required - used - {normal(n) for n in RUNTIME_ONLY}
    assert not unused, f"declared in pyproject.toml but imported nowhere: {sorted(unused)}"
    assert {normal(n) for n in RUNTIME_ONLY} <= required  # the run-time-only list names declared packages only


def test_the_scan_sees_imports_in_function_bodies_and_ignores_relative_ones():
    source = (
        "import os\ndef f():\n    import torch.nn as nn\n    from . import sibling\n    from yaml import safe_load\n"
    )
    assert imports_of(source) == {"os", "torch", "yaml"}
    assert set(third_party({m: {"x.py"} for m in imports_of(source)})) == {
        "torch",
        "pyyaml",
    }  # stdlib left out; modules to distributions
    assert requirement_name("fhir.resources>=8.0") == "fhir-resources" and requirement_name("ray[data]>=2.40") == "ray"
