"""Text targets of a case from its truth file: only present modalities are named as evidence."""

from __future__ import annotations

import json
import random

from medmm.lm.prompts import QA, guided_prompt
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.train.targets import case_text, guided_pair, load_truth, noisy_guide

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
        QA(
            "What supports heart failure?",
            "Cardiomegaly in the radiograph; weight gain and falling oxygen saturation in the vital signs.",
        ),
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


def test_noisy_guide_without_noise_is_the_truth_in_some_order():
    rng = random.Random(0)
    assert sorted(noisy_guide(["sepsis", "pneumonia"], rng, 0.0, 0.0)) == ["pneumonia", "sepsis"]
    assert noisy_guide(["sepsis", "pneumonia"], rng, 1.0, 0.0) == []
    assert sorted(noisy_guide(["sepsis"], rng, 1.0, 1.0)) == sorted(n for n in DIAGNOSIS_NAMES if n != "sepsis")
    orders = {tuple(noisy_guide(DIAGNOSIS_NAMES, rng, 0.0, 0.0)) for _ in range(50)}
    assert len(orders) > 10  # the order varies: at inference the guide is ordered by probability


def test_noisy_guide_draws_once_per_diagnosis_from_the_generator():
    drop, add = 0.5, 0.5
    draws = random.Random(11)
    expected = []
    for name in DIAGNOSIS_NAMES:  # a true diagnosis stays when its draw is >= drop; a false one joins when < add
        d = draws.random()
        if (name in ("heart_failure", "sepsis") and d >= drop) or (name not in ("heart_failure", "sepsis") and d < add):
            expected.append(name)
    draws.shuffle(expected)  # then one shuffle of those named
    rng = random.Random(11)
    assert noisy_guide(["sepsis", "heart_failure"], rng, drop, add) == expected
    assert rng.random() == draws.random()  # exactly these draws


def test_a_guided_pair_writes_the_impression_in_the_guides_reverse_order():
    text = case_text(["pleural_effusion", "heart_failure"], {"image", "vitals"}, TRUTH)
    rng, twin = random.Random(4), random.Random(4)
    for _ in range(6):
        prompt, target = guided_pair(text, rng, 0.0, 0.0)
        names = noisy_guide(text.labels, twin, 0.0, 0.0)
        assert prompt == guided_prompt(names)
        parts = {
            "heart_failure": "heart failure (cardiomegaly; weight gain and falling oxygen saturation)",
            "pleural_effusion": "pleural effusion (blunted costophrenic angle)",
        }
        assert target == ", ".join(parts[n] for n in names[::-1]) + "."  # the guide read backwards
