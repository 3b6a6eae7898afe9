"""explain_patient writes every view; explain_cohort writes faithfulness.json with every figure per method."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medmm.explain.explainer import METHODS
from medmm.explain.run import explain_cohort, explain_patient


def test_explain_patient_writes_every_view(small_cohort, predictor, tmp_path):
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str, keep_default_na=False)
    row = manifest[(manifest.has_image == "1") & (manifest.has_notes == "1") & (manifest.has_vitals == "1")].iloc[0]
    out = tmp_path / "views"
    methods = ("attention", "gradcam", "integrated_gradients")  # rollout draws the same kinds of files as attention
    summary = explain_patient(None, small_cohort / row.folder, out, predictor=predictor, methods=methods)
    assert json.loads((out / "explanation.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["present"] == ["image", "notes", "vitals"] and summary["missing"] == []
    names = predictor.model.config.diagnoses
    assert {(e["target"], e["method"]) for e in summary["explanations"]} == {
        (t, m) for t in (*names, "impression") for m in methods
    }
    expected = {
        "attention": {"image", "vitals", "notes"},
        "gradcam": {"image"},
        "integrated_gradients": {"vitals", "notes"},
    }
    for e in summary["explanations"]:
        assert set(e["files"]) == expected[e["method"]]
        for modality, rel in e["files"].items():
            path = out / rel
            assert path.is_file() and path.parent.name == e["target"]
            assert path.read_bytes().startswith(b"\x89PNG" if modality != "notes" else b"<!doctype html>")
        assert e["default"] == (e["method"] == "attention")
        if e["target"] != "impression":
            assert e["probability"] == pytest.approx(summary["probabilities"][e["target"]])
            assert f"{e['probability']:.0%}" in e["caption"]


def _truth(folder):
    return json.loads((folder / "truth.json").read_text())


def test_explain_cohort_scores_the_planted_truth(small_cohort, predictor, tmp_path):
    doc = explain_cohort(None, small_cohort, tmp_path, split="test", n_steps=4, predictor=predictor, progress=False)
    assert json.loads((tmp_path / "faithfulness.json").read_text()) == json.loads(json.dumps(doc))
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str, keep_default_na=False)
    test = manifest[manifest.split == "test"]
    assert doc["cases"]["patients"] == len(test) and doc["split"] == "test"
    lesions = sum(
        1
        for folder in test.folder
        for name, ev in _truth(small_cohort / folder)["evidence"].items()
        if ev["image"] is not None
    )
    for figure in ("pointing_game", "vitals_window_ratio", "note_evidence_top10", "negated_top10", "deletion_ratio"):
        assert set(doc[figure]) == set(METHODS)
    for method in ("attention", "rollout", "gradcam"):
        assert doc["pointing_game"][method]["n"] == lesions == doc["deletion_ratio"][method]["n"]
        assert doc["pointing_game"][method]["target"] == 0.8
    assert doc["pointing_game"]["integrated_gradients"]["value"] is None
    assert doc["vitals_window_ratio"]["gradcam"]["value"] is None
    for entry in doc["pointing_game"].values():
        assert entry["value"] is None or 0.0 <= entry["value"] <= 1.0
    # every readable test case compares the maps of its two most probable diagnoses, per modality
    distinct = doc["map_distinctness"]
    assert distinct["attention"]["image"]["n"] == doc["cases"]["patients"] - doc["cases"]["unreadable"]
    assert "image" not in distinct["integrated_gradients"] and set(distinct["gradcam"]) == {"image"}
    assert all(0.0 <= v["median"] <= 1.0 for per in distinct.values() for v in per.values())
    limited = explain_cohort(
        None,
        small_cohort,
        tmp_path / "one",
        limit=1,
        split=None,
        methods=("attention",),
        predictor=predictor,
        progress=False,
    )
    assert limited["cases"]["patients"] == 1 and limited["split"] == "all" and limited["methods"] == ["attention"]
