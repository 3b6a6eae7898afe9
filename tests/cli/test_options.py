"""Options documented once: each option backed by a dataclass field shows that field's attribute docstring."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import typer

from medmm.cli import app
from medmm.demo import DemoOptions
from medmm.synth import SynthConfig

ROOT = Path(__file__).resolve().parents[2]


def params(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


def docstrings_from_ast(path: Path, class_name: str) -> dict[str, str]:
    """Each field's docstring, read here with ast directly (the reader under test is not used)."""
    cls = next(n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef) and n.name == class_name)
    out = {}
    for node, nxt in zip(cls.body, cls.body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            out[node.target.id] = " ".join(str(nxt.value.value).split())
    return out


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("medmm/synth/config.py", SynthConfig),
        ("medmm/demo.py", DemoOptions),
    ],
)
def test_every_field_of_an_options_dataclass_is_documented(path, cls):
    docs = docstrings_from_ast(ROOT / path, cls.__name__)
    assert set(docs) == {f.name for f in dataclasses.fields(cls)}
    assert all(text and text[0].isupper() for text in docs.values()), docs


def test_the_interface_settings_are_documented_field_by_field():
    docs = docstrings_from_ast(ROOT / "ui" / "session.py", "Settings")
    from ui.session import Settings

    assert set(docs) == {f.name for f in dataclasses.fields(Settings)}
    assert docs["max_cases"] == "Open cases kept in memory."


def test_synth_and_demo_help_is_the_fields_docstring():
    synth = docstrings_from_ast(ROOT / "medmm/synth/config.py", "SynthConfig")
    shown = params("synth")
    for name in ("patients", "seed", "image_size", "ct_fraction", "bias_attribute", "bias_value", "bias_kind",
                 "bias_strength", "workers"):  # fmt: skip
        assert shown[name].help == synth[name], name
    demo = docstrings_from_ast(ROOT / "medmm/demo.py", "DemoOptions")
    shown = params("demo")
    for name in ("out", "patients", "seed", "quick", "backbone"):
        assert shown[name].help == demo[name], name


def test_serve_help_is_the_interface_settings_docstring():
    settings = docstrings_from_ast(ROOT / "ui" / "session.py", "Settings")
    shown = params("serve")
    assert shown["cohort"].help == settings["cohort_dir"]
    assert shown["audit"].help == settings["audit_dir"]
    assert shown["audit_store"].help == settings["audit_store"]
    assert shown["pacs_url"].help == settings["pacs_url"]


def test_shared_options_read_the_same_everywhere():
    for command in ("predict", "evaluate", "audit", "explain", "batch"):
        assert params(command)["model"].help == "Checkpoint folder (e.g. medmm-demo/model).", command
    assert params("predict")["audit"].opts == ["--trail"] and params("batch")["audit"].opts == ["--trail"]
    assert "OUT/audit.sqlite" in params("batch")["audit"].help
    assert "~/.medmm/audit.sqlite" in params("predict")["audit"].help
