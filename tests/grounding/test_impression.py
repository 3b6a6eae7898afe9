"""Grounding an impression: each claim against the study and the prediction; removed claims keep their reason."""

from __future__ import annotations

from medmm.grounding import ground_impression
from medmm.grounding.impression import clauses
from medmm.lm.prompts import diagnoses_named
from tests.grounding.helpers import facts, grid, study

NORMAL = dict(
    temperature=[36.2, 37.1, 36.8],
    resp_rate=[11.5, 16.5, 14.0],
    heart_rate=[80.0, 85.0, 90.0],
    sbp=[120.0, 118.0, 121.0],
)


def by_text(claims):
    return {c.text: c for c in claims}


def test_fever_and_tachypnoea_against_a_normal_grid_are_removed_and_the_diagnosis_stays():
    f = facts(
        study(vitals=grid(**NORMAL)), {"pneumonia": 0.78}, conformal_set=("pneumonia",), image_scores={"pneumonia": 0.9}
    )
    g = ground_impression("pneumonia (focal consolidation; fever and tachypnoea).", f)
    assert g.text == "pneumonia (focal consolidation)."
    removed = by_text(g.removed)
    assert removed["fever"].verdict == "contradicted" and removed["fever"].kind == "vitals"
    assert removed["fever"].reason == "max temperature 37.1 Cel at 2026-03-01 01:00 UTC (fever: >= 38.0 Cel)"
    assert removed["tachypnoea"].reason.startswith("max respiratory rate 16.5 /min at 2026-03-01 01:00 UTC")
    kept = by_text(g.claims)
    assert kept["focal consolidation"].reason == "image-only head for pneumonia: 90% (threshold 50%)"
    assert kept["pneumonia"].kind == "diagnosis" and kept["pneumonia"].reason == (
        "probability 78%, at or above its operating threshold (50%); in the prediction set at 90% coverage"
    )


def test_a_grid_that_shows_the_finding_keeps_it():
    f = facts(
        study(vitals=grid(temperature=[37.0, 38.4], resp_rate=[18.0, 24.0])),
        {"pneumonia": 0.9},
        conformal_set=("pneumonia",),
    )
    g = ground_impression("pneumonia (fever and tachypnoea).", f)
    assert g.text == "pneumonia (fever and tachypnoea)." and g.removed == ()


def test_a_negated_note_removes_the_finding_and_an_unmentioned_one_is_unsupported():
    f = facts(
        study(notes=("EXAMINATION: No ankle oedema. Reports orthopnoea, now sleeping on three pillows.",)),
        {"heart_failure": 0.8},
    )
    g = ground_impression("heart failure (orthopnoea and ankle oedema; cardiomegaly).", f)
    assert g.text == "heart failure (orthopnoea)."
    removed = by_text(g.removed)
    assert removed["ankle oedema"].verdict == "contradicted" and '"No ankle oedema."' in removed["ankle oedema"].reason
    assert (
        removed["cardiomegaly"].verdict == "unsupported"
        and removed["cardiomegaly"].reason == "no radiograph was read for this study"
    )
    g = ground_impression(
        "heart failure (ankle oedema).", facts(study(notes=("Abdomen soft.",)), {"heart_failure": 0.8})
    )
    assert g.text == "heart failure." and g.removed[0].reason == "no note the model read mentions ankle oedema"


def test_a_child_gets_no_vital_sign_finding_and_the_reason_says_why():
    febrile = grid(temperature=[38.9, 39.2], heart_rate=[160.0, 170.0], sbp=[70.0, 72.0])
    f = facts(study(age=8 / 12, vitals=febrile), {"sepsis": 0.7})
    g = ground_impression("sepsis (fever, tachycardia and hypotension).", f)
    assert g.text == "sepsis."
    assert {c.text for c in g.removed} == {"fever", "tachycardia", "hypotension"}
    assert all(c.verdict == "unsupported" and "8 months old" in c.reason for c in g.removed)
    unknown = ground_impression("sepsis (fever).", facts(study(age=None, vitals=febrile), {"sepsis": 0.7}))
    assert unknown.text == "sepsis." and "age is unknown" in unknown.removed[0].reason


def test_an_image_only_study_keeps_only_radiograph_findings():
    f = facts(study(), {"sepsis": 0.6, "pneumonia": 0.7}, image_scores={"pneumonia": 0.8, "sepsis": 0.2})
    g = ground_impression(
        "pneumonia (focal consolidation; productive cough and crackles), sepsis (fever, tachycardia and hypotension; rigors and confusion).",
        f,
    )
    assert g.text == "pneumonia (focal consolidation), sepsis."
    reasons = {c.text: c.reason for c in g.removed}
    assert (
        reasons["rigors"] == "no note was read for this study"
        and reasons["fever"] == "no vital sign was read for this study"
    )
    low = ground_impression(
        "pneumonia (focal consolidation).", facts(study(), {"pneumonia": 0.7}, image_scores={"pneumonia": 0.3})
    )
    assert low.text == "pneumonia." and low.removed[0].reason == "image-only head for pneumonia: 30% (threshold 50%)"


def test_no_acute_diagnosis_never_stands_beside_a_non_empty_prediction_set():
    f = facts(
        study(),
        {"heart_failure": 0.3, "pleural_effusion": 0.2},
        operating=0.5,
        conformal_set=("heart_failure", "pleural_effusion"),
    )
    g = ground_impression("no acute cardiopulmonary diagnosis.", f)
    assert g.text == "not ruled out (prediction set at 90% coverage): heart failure (30%), pleural effusion (20%)."
    assert g.removed[0].text == "no acute cardiopulmonary diagnosis" and g.removed[0].verdict == "contradicted"
    assert diagnoses_named(g.text) == set()  # listed as possible, not asserted
    empty = facts(study(), operating=0.5, conformal_set=())
    assert ground_impression("no acute cardiopulmonary diagnosis.", empty).text == "no acute cardiopulmonary diagnosis."


def test_a_diagnosis_the_prediction_rules_out_is_removed_with_its_findings():
    f = facts(study(vitals=grid(temperature=[38.5])), {"pneumonia": 0.9, "sepsis": 0.02}, conformal_set=("pneumonia",))
    g = ground_impression("pneumonia (fever), sepsis (fever).", f)
    assert g.text == "pneumonia (fever)."
    sepsis = [c for c in g.removed if c.diagnosis == "sepsis"]
    assert [(c.kind, c.verdict) for c in sepsis] == [("diagnosis", "contradicted"), ("text", "unsupported")]
    assert "probability 2%, below its operating threshold (50%); outside the prediction set" in sepsis[0].reason


def test_unreadable_words_are_removed_and_a_qualified_name_keeps_the_diagnosis():
    f = facts(study(), {"pneumonia": 0.9}, conformal_set=("pneumonia",))
    g = ground_impression("right lower lobe pneumonia (lobar collapse), remo remo.", f)
    assert g.text == "pneumonia."
    assert {c.text for c in g.removed} == {"right lower lobe", "lobar collapse", "remo remo"}
    assert clauses("a (b, c; d), e. f") == ["a (b, c; d)", "e", "f"]


def test_a_finding_the_draft_repeats_is_stated_and_withheld_once():
    f = facts(
        study(notes=("Abdomen soft.",)),
        {"pleural_effusion": 0.99, "heart_failure": 0.9},
        conformal_set=("pleural_effusion", "heart_failure"),
        image_scores={"pleural_effusion": 0.99, "heart_failure": 0.2},
    )
    draft = (
        "pleural effusion (blunted costophrenic angle; dullness to percussion), heart failure (cardiomegaly), "
        "pleural effusion (blunted costophrenic angle; dullness to percussion)."
    )
    g = ground_impression(draft, f)
    assert g.text == "pleural effusion (blunted costophrenic angle), heart failure."
    assert [c.text for c in g.removed] == ["dullness to percussion", "cardiomegaly"]
    assert [c.text for c in g.claims].count("blunted costophrenic angle") == 1
    same_clause = ground_impression("pleural effusion (blunted costophrenic angle; blunted costophrenic angle).", f)
    assert same_clause.text == "pleural effusion (blunted costophrenic angle)."
