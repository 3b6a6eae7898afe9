"""A small synthetic cohort and an untrained tiny checkpoint, built once per test process, for end-to-end runs.

The model is built from a tiny config (tests/test_model.py) with the real offline notes
encoder, so that `Predictor.from_checkpoint` loads it exactly as `medmm evaluate` does. It is
untrained: its figures mean nothing, only the wiring is under test.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from medmm.checkpoint import save_checkpoint
from medmm.model import build_model
from medmm.synth import SynthConfig, synthesize
from tests.test_model import tiny_config

COHORT = SynthConfig(
    patients=60, seed=5, image_size=32, workers=1, train_fraction=0.2, val_fraction=0.4, test_fraction=0.4
)


@functools.lru_cache(maxsize=1)
def tiny_run() -> tuple[Path, Path]:
    """(checkpoint folder, cohort folder); removed when the test process exits."""
    root = Path(tempfile.mkdtemp(prefix="medmm-evaluate-"))
    atexit.register(shutil.rmtree, root, True)
    synthesize(root / "cohort", COHORT, progress=False)
    torch.manual_seed(0)
    save_checkpoint(build_model(tiny_config()), root / "model")
    return root / "model", root / "cohort"
