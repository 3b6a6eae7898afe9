"""Text targets of a case from its truth file: only present modalities are named as evidence."""

from __future__ import annotations

import json

from medmm.prompts import QA
from medmm.train.targets import case_text, load_truth

TRUTH = {
    "labels": ["heart_failure", "pleural_effusion"],
    "evidence": {
        "heart_failure": {"modalities": ["image", "vitals"], "strength": 0.9},
        "pleural_effusion": {"modalities": ["image", "notes"], "strength": 0.7},
    },
}


def test_impression_names_each_diagnosis_with_its_present_evidence():
    text = case_text(["pleural_effusion", "heart_failure"], {"image", "vitals"}, TRUTH)  # notes absent
    assert text.impression == (
        "heart failure (cardiomegaly; weight gain and falling oxygen saturation), "
        "pleural effusion (blunted costophrenic angle)."
    )


def test_question_answer_pairs_from_the_truth():
    text = case_text(["pleural_effusion", "heart_failure"], {"image", "vitals"}, TRUTH)
    assert text.qa == (
        QA("Is there pneumonia?", "No, pneumonia is unlikely."),
        QA("Is there heart failure?", "Yes, heart failure is likely."),
        QA("What supports heart failure?", "Cardiomegaly in the radiograph; weight gain and falling oxygen saturation in the vital signs."),
        QA("Is there pleural effusion?", "Yes, pleural effusion is likely."),
        QA("What supports pleural effusion?", "Blunted costophrenic angle in the radiograph."),
        QA("Is there pneumothorax?", "No, pneumothorax is unlikely."),
        QA("Is there sepsis?", "No, sepsis is unlikely."),
        QA("Summarise the findings.", text.impression),
    )


def test_without_truth_only_the_labels_are_named():
    text = case_text(["sepsis"], {"image", "notes", "vitals"}, None)
    assert text.impression == "sepsis."
    assert not any(q.question.startswith("What supports") for q in text.qa)
    assert case_text([], {"image"}, None).impression == "no acute cardiopulmonary diagnosis."


def test_evidence_only_in_absent_modalities_is_not_named():
    text = case_text(["pleural_effusion"], {"vitals"}, TRUTH)  # effusion shows in image and notes, both absent
    assert text.impression == "pleural effusion."
    assert all(q.question != "What supports pleural effusion?" for q in text.qa)


def test_load_truth_reads_the_case_folder(tmp_path):
    assert load_truth(tmp_path) is None  # real data: no truth file
    (tmp_path / "truth.json").write_text(json.dumps(TRUTH))
    assert load_truth(tmp_path) == TRUTH
