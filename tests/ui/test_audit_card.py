"""The group card: the patient's groups looked up in the audit, with flags, small groups and other models warned about."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medmm.errors import EvaluationError
from medmm.evaluate.pipeline import audit_from_scores
from medmm.evaluate.scores import SplitScores
from medmm.records import Demographics
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from tests.ui.conftest import FLAG_REASON, make_audit
from ui.audit_card import card_html, group_card, load_audit, patient_groups

MODEL = "abc123"


def test_patient_groups_use_the_audit_labels():
    d = Demographics(patient_id="x", sex="male", age_years=70.2, race="1002-5", ethnicity=None)
    assert patient_groups(d) == {"sex": "male", "age_band": "65-79", "race": "1002-5", "ethnicity": "unknown"}
    assert patient_groups(None)["age_band"] == "unknown"


def test_the_card_groups_the_patient_in_the_audits_own_strata():
    """An audit of a task that groups by age band (its own bands) and birth sex: the card shows those rows only."""
    audit = make_audit(MODEL)
    audit["model"]["strata"] = {"attributes": ["age_band", "birth_sex"], "age_bands": [50, 70]}
    audit["groups"] = [
        {
            "attribute": "age_band",
            "group": "50-69",
            "n": 80,
            "status": "scored",
            "metrics": [{"metric": "auroc", "value": 0.9, "ci": [0.8, 0.95]}],
        },
        {"attribute": "birth_sex", "group": "F", "n": 12, "status": "too small", "metrics": []},
    ]
    audit["flags"] = []
    d = Demographics(patient_id="x", sex="female", age_years=69.9, race="1002-5", birth_sex="F")
    card = group_card(audit, d, MODEL)
    assert [(r.attribute, r.group, r.status, r.n) for r in card.rows] == [
        ("age_band", "50-69", "scored", 80),
        ("birth_sex", "F", "too small", 12),
    ]
    assert card.rows[0].metrics == (("auroc", 0.9, (0.8, 0.95)),)
    assert any("Birth sex F" in w for w in card.warnings)


def test_card_reads_the_patients_rows_and_warns_for_flags_small_and_absent_groups():
    d = Demographics(patient_id="x", sex="male", age_years=83.0, race="1002-5", ethnicity="2186-5")
    card = group_card(make_audit(MODEL), d, MODEL)
    rows = {r.attribute: r for r in card.rows}
    assert (rows["sex"].group, rows["sex"].n, rows["sex"].status) == ("male", 100, "scored")
    assert dict((m, v) for m, v, _ in rows["sex"].metrics) == {"auroc": 0.61, "tpr": 0.7, "fpr": 0.1}
    assert rows["sex"].flags == (f"AUROC: {FLAG_REASON}",)
    assert (rows["age_band"].status, rows["age_band"].n) == ("too small", 12)
    assert (rows["ethnicity"].status, rows["ethnicity"].n) == ("absent", None)
    text = " ".join(card.warnings)
    assert "Flagged by the audit: the model performs differently for Sex male" in text
    assert "Race American Indian or Alaska Native" in text  # codes spelled out
    assert "Too few patients (12, fewer than 30) in the audit for Age band 80+" in text
    assert "No patient of the group Ethnicity Not Hispanic or Latino was in the audit" in text
    assert "intersection Sex x Race male / American Indian or Alaska Native" in text
    assert "different model" not in text
    page = card_html(card)
    assert (
        'role="alert"' in page
        and "0.61 (0.56-0.66)" in page
        and "too small to score" in page
        and "scored, flagged" in page
    )
    assert (
        card.source == 'test split of cohort "demo"'
        and "on the test split of cohort &quot;demo&quot;, with 95% intervals" in page
    )


def test_card_for_an_unflagged_patient_has_no_warnings_and_another_models_audit_is_named():
    d = Demographics(patient_id="x", sex="female", age_years=70.0, race="2106-3", ethnicity="2186-5")
    audit = make_audit(MODEL)
    audit["groups"].append(
        {"attribute": "ethnicity", "group": "2186-5", "n": 150, "n_patients": 150, "status": "reference", "metrics": []}
    )
    assert group_card(audit, d, MODEL).warnings == ()
    other = group_card(audit, d, "another-model")
    assert other.warnings == (
        "This audit was made for a different model version; its figures may not describe the model in use.",
    )


def test_no_audit_says_performance_is_unknown(tmp_path):
    card = group_card(load_audit(tmp_path), Demographics(patient_id="x"), MODEL)
    assert not card.available and "performance for this patient's groups is unknown" in card.warnings[0]
    assert load_audit(None) is None
    (tmp_path / "audit.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="audit.json: audit file is not JSON"):
        load_audit(tmp_path)


def test_card_reads_the_format_medmm_audit_writes(tmp_path):
    """An audit written by the evaluation pipeline itself: the card shows exactly its figures for the patient's groups."""
    rng = np.random.default_rng(0)
    n = 160
    attributes = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "age_band": rng.choice(["40-64", "65-79"], n),
            "race": rng.choice(["2106-3", "2054-5"], n),
            "ethnicity": rng.choice(["2186-5", "2135-2"], n),
        }
    )
    labels = rng.integers(0, 2, size=(n, len(DIAGNOSIS_NAMES)))
    logits = (labels * 2.0 - 1.0) + rng.normal(0, 1.0, size=labels.shape)
    test = SplitScores("test", DIAGNOSIS_NAMES, tuple(f"P{i}" for i in range(n)), labels, logits, attributes)
    audit = audit_from_scores(None, test, tmp_path, n_boot=20, plots=False, context={"model": {"id": MODEL}})
    on_disk = load_audit(tmp_path)
    assert on_disk.to_json() == json.loads((tmp_path / "audit.json").read_text())  # the typed record, key for key
    d = Demographics(patient_id="x", sex="male", age_years=50.0, race="2054-5", ethnicity="2135-2")
    card = group_card(on_disk, d, MODEL)
    for row in card.rows:
        written = next(g for g in audit["groups"] if g["attribute"] == row.attribute and g["group"] == row.group)
        assert row.n == written["n"] and row.status == written["status"]
        auroc = next(m for m in written["metrics"] if m["metric"] == "auroc")
        assert dict((m, v) for m, v, _ in row.metrics)["auroc"] == auroc["value"]


def test_an_audit_made_before_calibration_was_saved_still_names_the_same_weights(tmp_path):
    from medmm.checkpoint import update_calibration
    from medmm.predict import Predictor
    from tests.batch.helpers import save_tiny_checkpoint
    from ui.audit_card import model_ids

    model = save_tiny_checkpoint(tmp_path / "model")
    before = Predictor.from_checkpoint(model).model_id  # what an evaluation records before it saves the calibration
    update_calibration(model, {"temperature": 1.5, "conformal_threshold": 0.8, "coverage_target": 0.9})
    after = Predictor.from_checkpoint(model).model_id
    assert before != after and model_ids(model) == {before, after}
    d = Demographics(patient_id="x", sex="female", age_years=70.0, race="2106-3", ethnicity="2186-5")
    audit = make_audit(before)
    audit["groups"].append(
        {"attribute": "ethnicity", "group": "2186-5", "n": 150, "n_patients": 150, "status": "reference", "metrics": []}
    )
    assert group_card(audit, d, model_ids(model)).warnings == ()
    assert (
        group_card(make_audit("0123456789abcdef"), d, model_ids(model))
        .warnings[0]
        .startswith("This audit was made for a different model")
    )
    assert model_ids(tmp_path / "nowhere") == frozenset()
