"""The independent verifier: claims in impressions and answers read against hand-made studies."""

from __future__ import annotations

import dataclasses

import numpy as np

from medmm.evaluate.verifier import (
    PredictionView,
    sentence_polarity,
    verify_answer,
    verify_free_answer,
    verify_impression,
    vital_holds,
)
from medmm.records import ImageSeries
from tests.grounding.helpers import grid, study

NAMES = ("pneumonia", "heart_failure", "pleural_effusion", "pneumothorax", "sepsis")


def view(probabilities=None, conformal_set=(), cut=0.5) -> PredictionView:
    p = dict.fromkeys(NAMES, 0.01) | (probabilities or {})
    return PredictionView(p, dict.fromkeys(NAMES, cut), tuple(conformal_set))


def verdicts(found) -> dict[str, str]:
    return {v.text: v.verdict for v in found}


def with_image(s):
    image = ImageSeries(pixels=np.zeros((4, 4), np.float32), spacing=(1.0, 1.0), modality="DX", series_uid="1")
    return dataclasses.replace(s, images=(image,))


def test_vital_sign_words_against_the_grid():
    normal = study(vitals=grid(temperature=[36.2, 37.1], resp_rate=[11.5, 16.5], spo2=[99.0, 96.0, 95.5]))
    found = verdicts(
        verify_impression(
            "pneumonia (fever and tachypnoea; falling oxygen saturation).", normal, view({"pneumonia": 0.8})
        )
    )
    assert found == {
        "pneumonia": "supported",
        "fever": "contradicted",
        "tachypnoea": "contradicted",
        "oxygen saturation": "contradicted",
    }
    assert vital_holds(study(vitals=grid(spo2=[99.0, 96.0, 95.0])), "desaturation") is True  # 99 -> 95: a fall of 4
    child = study(age=0.5, vitals=grid(temperature=[39.0]))
    assert verdicts(verify_impression("sepsis (fever).", child, view({"sepsis": 0.9}))) == {
        "sepsis": "supported",
        "fever": "unsupported",
    }


def test_note_words_against_the_verifiers_own_negation_reading():
    s = study(notes=("EXAMINATION: No ankle oedema. Reports orthopnoea.",))
    found = verdicts(
        verify_impression("heart failure (orthopnoea and ankle oedema; rigors).", s, view({"heart_failure": 0.9}))
    )
    assert found == {
        "heart failure": "supported",
        "orthopnoea": "supported",
        "ankle oedema": "contradicted",
        "rigors": "unsupported",
    }
    assert sentence_polarity("The patient denies cough.", "productive cough") == "negated"
    assert (
        sentence_polarity("Past history: treated for pneumonia as a child with productive cough.", "productive cough")
        == "historical"
    )
    assert sentence_polarity("Afebrile.", "fever") == "negated"


def test_statements_against_the_prediction_and_radiograph_words_against_the_lesion_truth():
    v = view({"heart_failure": 0.71}, conformal_set=("heart_failure",))
    assert verdicts(verify_impression("no acute cardiopulmonary diagnosis.", study(), v)) == {
        "no acute cardiopulmonary diagnosis": "contradicted"
    }
    listed = "not ruled out (prediction set at 90% coverage): heart failure (71%)."
    assert verdicts(verify_impression(listed, study(), v)) == {}  # a list of possibilities, each not ruled out
    assert verdicts(verify_impression(listed.replace("heart failure", "sepsis"), study(), v)) == {
        "sepsis": "contradicted"
    }
    assert verdicts(verify_impression("sepsis.", study(), v)) == {
        "sepsis": "contradicted"
    }  # below threshold, outside the set
    truth = {"evidence": {"heart_failure": {"modalities": ["notes"]}}}
    assert (
        verdicts(verify_impression("heart failure (cardiomegaly).", with_image(study()), v, truth))["cardiomegaly"]
        == "contradicted"
    )
    truth = {"evidence": {"heart_failure": {"modalities": ["image"]}}}
    assert (
        verdicts(verify_impression("heart failure (cardiomegaly).", with_image(study()), v, truth))["cardiomegaly"]
        == "supported"
    )
    assert (
        verdicts(verify_impression("heart failure (cardiomegaly).", study(), v, truth))["cardiomegaly"] == "unsupported"
    )


def test_answers_are_read_line_by_line():
    s = study(vitals=grid(temperature=[36.2, 37.1, 36.8]), notes=("EXAMINATION: No ankle oedema.",))
    v = view({"pneumonia": 0.78}, conformal_set=("pneumonia",))
    wrong_word = "Pneumonia is unlikely: probability 78%, at or above its operating threshold (50%)."
    assert [x.verdict for x in verify_answer(wrong_word, s, v)] == ["contradicted"]
    right = "Pneumonia is likely: probability 78%, at or above its operating threshold (50%).\nFor:\n- fever: max temperature 38 Cel\nAgainst:\n- no fever: max"
    assert [x.verdict for x in verify_answer(right, s, v)] == ["supported", "contradicted", "supported"]
    values = (
        "Temperature in the 6-hour window before the study time: 3 step(s) with a reading; min 36.2 Cel at 2026-03-01 00:00 UTC; "
        "max 37.1 Cel at 2026-03-01 01:00 UTC; last 36.8 Cel at 2026-03-01 02:00 UTC."
    )
    assert [x.verdict for x in verify_answer(values, s, v)] == ["supported"]
    assert [x.verdict for x in verify_answer(values.replace("max 37.1", "max 38.1"), s, v)] == ["contradicted"]
    notes = 'The notes on ankle oedema:\n- affirmed: "No ankle oedema." (progress note 0)'
    assert [x.verdict for x in verify_answer(notes, s, v)] == ["contradicted"]
    assert [x.verdict for x in verify_answer(notes.replace("affirmed", "negated"), s, v)] == ["supported"]
    assert [
        x.verdict for x in verify_answer('Against:\n- ankle oedema negated in the notes: "No ankle oedema."', s, v)
    ] == ["supported"]


def test_free_text_lm_answers_are_held_to_the_same_rules():
    s = study(vitals=grid(temperature=[36.2, 37.1]), notes=("No ankle oedema.",))
    v = view({"pneumonia": 0.78}, conformal_set=("pneumonia",))
    assert [x.verdict for x in verify_free_answer("No, pneumonia is unlikely.", s, v)] == ["contradicted"]
    assert [x.verdict for x in verify_free_answer("Yes, pneumonia is likely.", s, v)] == ["supported"]
    found = verify_free_answer(
        "Fever and tachypnoea in the vital signs; orthopnoea and ankle oedema in the notes.", s, v
    )
    assert {x.text: x.verdict for x in found} == {
        "fever": "contradicted",
        "tachypnoea": "unsupported",
        "orthopnoea": "unsupported",
        "ankle oedema": "contradicted",
    }
