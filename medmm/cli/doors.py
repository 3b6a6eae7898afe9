"""The command table's doors to the two packages beside medmm: the training recipes (`training`) and the
clinician interface (`ui`). Only this module opens them, by name; the demo and the interface are
handed what they need from here.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from pathlib import Path

from medmm.config import attribute_docs_in


class TrainingRecipes:
    """The door to the training recipes (the `training` package: one module per recipe, configs in
    training/configs/). Only this command table opens it; the demo and the interface are handed it."""

    @staticmethod
    def run(cfg) -> dict:
        return importlib.import_module(f"training.{cfg.recipe}").run(cfg)

    @staticmethod
    def config(name: str) -> Path:
        return Path(str(importlib.resources.files("training") / "configs" / name))


def serve_ui(**options) -> None:
    """Start the clinician interface (the top-level `ui` package, loaded by name: medmm never imports it)."""
    importlib.import_module("ui.app").serve(**options)


def interface_settings_docs() -> dict[str, str]:
    """The interface's settings (ui.session.Settings) and their attribute docstrings, read from its source
    without importing it (importing the interface loads Gradio): the help of `medmm serve`'s options."""
    spec = importlib.util.find_spec("ui.session")
    if spec is None or spec.origin is None:
        return {}
    return attribute_docs_in(spec.origin, "Settings")
