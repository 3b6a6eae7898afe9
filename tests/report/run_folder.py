"""A complete evaluation + audit run folder (plots included) built from seeded scores, once per test process.

Shared by the report and governance tests (`report_folder()`; removed when the process exits).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from medmm.evaluate import plots
from medmm.evaluate.pipeline import audit_from_scores, evaluate_from_scores
from medmm.evaluate.scores import SplitScores
from medmm.synth.diagnoses import DIAGNOSIS_NAMES

WEAK_GROUP = "2054-5"  # race group whose scores carry no signal, so the audit flags it


def scores(split: str, n: int, seed: int) -> SplitScores:
    """Five diagnoses with signal, except for one race group whose positives look like negatives."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 5)) < 0.25).astype(int)
    attributes = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "age_band": rng.choice(["18-39", "40-64", "65-79", "80+"], n),
            "race": rng.choice(["2106-3", WEAK_GROUP, "2028-9"], n, p=[0.5, 0.3, 0.2]),
            "ethnicity": rng.choice(["2135-2", "2186-5"], n, p=[0.3, 0.7]),
        }
    )
    signal = np.where((attributes["race"] == WEAK_GROUP).to_numpy()[:, None], 0.0, 2.5)
    z = signal * (2 * y - 1) - 1.0 + rng.normal(0, 1.2, (n, 5))
    return SplitScores(split, DIAGNOSIS_NAMES, tuple(f"{split}{i}" for i in range(n)), y, z, attributes)


def context() -> dict:
    """The sections run_evaluation adds from the model and the cohort, with plausible values."""
    return {
        "model": {
            "id": "0123456789abcdef",
            "folder": "model",
            "medmm_version": "0.1.0",
            "architecture": "llama",
            "diagnoses": list(DIAGNOSIS_NAMES),
            "modalities": ["image", "notes", "vitals"],
            "backbone": {"source": "embedded", "finetune": "qlora", "hidden_size": 256, "num_layers": 4},
            "preprocess": {"image_size": 128, "window_hours": 48.0, "step_minutes": 60.0, "max_notes": 3},
            "parameters": 12345678,
            "calibration_before_run": {},
        },
        "cohort": {
            "name": "demo-cohort",
            "patients": 1000,
            "splits": {"test": 400, "train": 300, "val": 300},
            "synthetic": {
                "seed": 0,
                "bias_attribute": "race",
                "bias_value": WEAK_GROUP,
                "bias_kind": "label_noise",
                "bias_strength": 0.9,
            },
            "test": {"modalities": {"image": 350, "notes": 360, "vitals": 355}},
        },
        "ablation": {
            "metric": "AUROC on the test split (point estimates)",
            "note": "Each row gives the model only the named modalities.",
            "rows": [
                {
                    "inputs": name,
                    "modalities": name.split("+"),
                    "macro_auroc": 0.6 + 0.05 * i,
                    "auroc": {d: 0.6 + 0.05 * i for d in DIAGNOSIS_NAMES},
                    "cases_with_input": 350,
                }
                for i, name in enumerate(
                    ["image", "notes", "vitals", "image+notes", "image+vitals", "notes+vitals", "all"]
                )
            ],
        },
        "impression": {
            "cases": 400,
            "positives": 250,
            "names_true_top": 0.62,
            "names_all_true": 0.41,
            "contradicts_none": 0.88,
            "examples": [
                {"truth": ["pneumonia"], "impression": "Right lower lobe pneumonia."},
                {"truth": [], "impression": "No acute <finding>."},
            ],
        },
        "grounding": {
            "impressions": {
                "raw": {"with_contradicted_claim": 0.39, "with_unsupported_claim": 0.6},
                "grounded": {"with_contradicted_claim": 0.0, "with_unsupported_claim": 0.01},
            },
            "questions": {
                "questions": 52,
                "answers": 20800,
                "with_contradicted_claim": 0.002,
                "free_text": {
                    "questions": ["Is there pneumonia?", "What supports pneumonia?"],
                    "answers": 800,
                    "lm": {"with_contradicted_claim": 0.49},
                    "composed": {"with_contradicted_claim": 0.0},
                },
            },
        },
    }


def explanation_dir(root: Path) -> Path:
    """A `medmm explain` output folder: explanation.json naming two PNG views and a notes page, default method second."""
    (root / "pneumonia").mkdir(parents=True, exist_ok=True)
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.8, 0.3], [0.2, 0.7], [0.6, 0.9], [0.1, 0.2]])
    (root / "pneumonia" / "integrated_gradients-image.png").write_bytes(plots.roc_curves(y, p, ["a", "b"]))
    (root / "pneumonia" / "gradcam-image.png").write_bytes(plots.pr_curves(y, p, ["a", "b"]))
    (root / "pneumonia" / "gradcam-notes.html").write_text("<p>notes</p>")
    listed = [
        {
            "target": "pneumonia",
            "method": "integrated_gradients",
            "default": False,
            "caption": "second",
            "files": {"image": "pneumonia/integrated_gradients-image.png"},
        },
        {
            "target": "pneumonia",
            "method": "gradcam",
            "default": True,
            "caption": "pneumonia 0.81, gradcam",
            "files": {"image": "pneumonia/gradcam-image.png", "notes": "pneumonia/gradcam-notes.html"},
        },
    ]
    (root / "explanation.json").write_text(json.dumps({"study_id": "x", "explanations": listed}))
    return root


@functools.lru_cache(maxsize=1)
def report_folder() -> SimpleNamespace:
    """out_dir with evaluation.json, audit.json, plots/*.png and explanations/, and the loaded dicts."""
    out = Path(tempfile.mkdtemp(prefix="medmm-report-"))
    atexit.register(shutil.rmtree, out, True)
    val, test = scores("val", 500, 1), scores("test", 500, 2)
    evaluation, fitted = evaluate_from_scores(val, test, out, n_boot=100, seed=0, context=context())
    audit = audit_from_scores(
        val,
        test,
        out,
        saved_calibration=fitted.calibration_json("demo-cohort"),
        n_boot=100,
        seed=0,
        min_group_size=40,
        context={"model": context()["model"], "cohort": context()["cohort"]},
    )
    return SimpleNamespace(
        out=out, evaluation=evaluation, audit=audit, explanations=explanation_dir(out / "explanations")
    )
