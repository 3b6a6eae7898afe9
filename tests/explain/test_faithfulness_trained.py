"""Faithfulness figures on trained models: the demo model when MEDMM_DEMO_DIR points at a demo output,
and a small model trained here on a small synthetic cohort.

The small model is far from the demo's: 64-pixel images, a few hundred steps, a random frozen LM.
On it the note figure meets its target and the vitals and deletion figures beat a uniform or
random map; the pointing game does not reach its target there (see the figures in
faithfulness.json written by the test), so it is asserted on the demo model only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medmm.explain.run import explain_cohort

DEMO_ENV = "MEDMM_DEMO_DIR"
FIGURES = ("pointing_game", "vitals_window_ratio", "note_evidence_top10", "deletion_ratio")

SMALL_MODEL = [
    "progress=false",
    "tensorboard=false",
    "train.epochs=1000",
    "train.max_steps=250",
    "train.eval_every=1000",
    "train.batch_size=16",
    "train.lr=0.002",
    "train.lm_loss_weight=0.2",
    "train.max_length=48",
    "model.modality_dropout=0.35",
    "model.preprocess.image_size=64",
    "model.preprocess.max_notes=3",
    "model.preprocess.max_note_tokens=96",
    "model.image.dim=64",
    "model.image.init_features=16",
    "model.image.growth_rate=16",
    "model.image.block_config=[2,2]",
    "model.vitals.dim=32",
    "model.vitals.depth=1",
    "model.vitals.heads=4",
    "model.resampler.num_latents=8",
    "model.resampler.depth=1",
    "model.resampler.heads=4",
    "model.fusion.every_n=1",
    "model.fusion.heads=4",
    "model.fusion.ff_mult=2",
    "model.backbone.hidden_size=64",
    "model.backbone.num_layers=2",
    "model.backbone.num_heads=4",
    "model.backbone.num_kv_heads=4",
    "model.backbone.intermediate_size=128",
    "model.head_hidden=64",
]


@pytest.mark.slow
def test_targets_hold_on_the_demo_model(tmp_path):
    demo = Path(os.environ.get(DEMO_ENV, "")) if os.environ.get(DEMO_ENV) else None
    if (
        demo is None
        or not (demo / "model" / "config.json").is_file()
        or not (demo / "cohort" / "manifest.csv").is_file()
    ):
        pytest.skip(f"{DEMO_ENV} does not point at a `medmm demo` output folder with model/ and cohort/")
    doc = explain_cohort(demo / "model", demo / "cohort", tmp_path, limit=60, methods=("attention",), progress=False)
    figures = {name: doc[name]["attention"] for name in FIGURES}
    assert all(f["n"] > 0 for f in figures.values()), figures
    assert {name: f["meets_target"] for name, f in figures.items()} == dict.fromkeys(FIGURES, True), json.dumps(
        figures, indent=1
    )


@pytest.mark.slow
def test_small_trained_model(tmp_path_factory):
    from medmm.synth import SynthConfig, synthesize
    from medmm.train.recipe import load_recipe_config
    from training import align

    root = tmp_path_factory.mktemp("faithfulness")
    cohort = root / "cohort"
    synthesize(cohort, SynthConfig(patients=200, seed=3, image_size=64, workers=2), progress=False)
    cfg = load_recipe_config(None, [f"cohort={cohort}", f"out={root / 'run'}", *SMALL_MODEL])
    align.run(cfg)
    doc = explain_cohort(
        root / "run" / "best",
        cohort,
        root / "out",
        methods=("attention", "integrated_gradients"),
        n_steps=16,
        progress=False,
    )
    att = {name: doc[name]["attention"] for name in (*FIGURES, "negated_top10")}
    print(json.dumps({k: {"value": v["value"], "n": v["n"]} for k, v in att.items()}))
    assert all(f["n"] >= 8 for f in att.values()), att
    assert att["note_evidence_top10"]["meets_target"], att["note_evidence_top10"]
    assert att["vitals_window_ratio"]["value"] > 1.0  # more mass in the planted window than a uniform map
    assert att["deletion_ratio"]["value"] > 1.0  # the top patches matter more than random ones
    assert doc["note_evidence_top10"]["integrated_gradients"]["value"] >= 0.7
