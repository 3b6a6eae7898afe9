"""Grounding measured: raw drafts beside grounded impressions, and the fixed question set, by the verifier."""

from __future__ import annotations

import numpy as np

from medmm.evaluate.grounding import CaseText, grounding_report, impression_scores, question_set
from medmm.grounding import ground_impression
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from tests.grounding.helpers import facts, grid, study


def case(raw: str, labels: set[str], p: dict[str, float], conformal_set=(), free=(), **made) -> CaseText:
    s = study(**made)
    f = facts(s, p, conformal_set=conformal_set)
    probs = np.array([f.probabilities[n] for n in DIAGNOSIS_NAMES])
    return CaseText(s, None, frozenset(labels), probs, raw, ground_impression(raw, f), f, tuple(free))


def test_the_question_set_has_fifty_questions_over_diagnoses_signs_notes_and_some_it_must_decline():
    questions = question_set(DIAGNOSIS_NAMES)
    assert len(questions) >= 50 and len(set(questions)) == len(questions)
    assert "Is there pneumonia?" in questions and "What supports heart failure?" in questions
    assert "What is the weather like today?" in questions and "What antibiotic should I give?" in questions


def test_raw_drafts_contradict_the_data_and_the_grounded_text_does_not():
    cases = [
        case(
            "pneumonia (fever and tachypnoea).",
            {"pneumonia"},
            {"pneumonia": 0.8},
            ("pneumonia",),
            vitals=grid(temperature=[36.2, 37.1], resp_rate=[11.5, 16.5]),
        ),
        case("no acute cardiopulmonary diagnosis.", {"heart_failure"}, {"heart_failure": 0.3}, ("heart_failure",)),
        case("no acute cardiopulmonary diagnosis.", set(), {}, ()),
        case(
            "heart failure (ankle oedema).",
            {"heart_failure"},
            {"heart_failure": 0.9},
            ("heart_failure",),
            notes=("No ankle oedema.",),
        ),
    ]
    report = grounding_report(
        cases, ("Is there pneumonia?", "What supports heart failure?", "What is the weather like today?")
    )
    raw, grounded = report["impressions"]["raw"], report["impressions"]["grounded"]
    assert (
        raw["with_contradicted_claim"] == 3 / 4 and raw["contradicted_claims"] == 4
    )  # fever, tachypnoea, no acute, ankle oedema
    assert raw["contradicted_by_kind"] == {"notes": 1, "prediction": 1, "vitals": 2}
    assert grounded["with_contradicted_claim"] == 0.0 and grounded["with_unsupported_claim"] == 0.0
    q = report["questions"]
    assert (q["answers"], q["declined"], q["with_contradicted_claim"]) == (12, 4, 0.0)
    # names the true top diagnosis: the grounded text keeps the names (pneumonia, heart failure); a "not ruled out" list is not naming
    assert impression_scores(cases, DIAGNOSIS_NAMES)["names_true_top"] == 2 / 3
    assert impression_scores(cases, DIAGNOSIS_NAMES, raw=True)["contradicts_none"] == 1.0


def test_free_lm_answers_beside_composed_answers_to_the_same_questions():
    questions = ("Is there pneumonia?", "What supports heart failure?")
    cases = [
        case(
            "pneumonia.",
            {"pneumonia"},
            {"pneumonia": 0.78},
            ("pneumonia",),
            free=("No, pneumonia is unlikely.", "Orthopnoea and ankle oedema in the notes."),
            notes=("No ankle oedema.",),
        ),
        case(
            "no acute cardiopulmonary diagnosis.",
            set(),
            {},
            (),
            free=("No, pneumonia is unlikely.", "Ankle oedema in the notes."),
        ),
    ]
    free = grounding_report(cases, (), free_questions=questions)["questions"]["free_text"]
    assert free["answers"] == 4
    assert (
        free["lm"]["contradicted_claims"] == 2
    )  # "unlikely" at 78% in the set; ankle oedema against "No ankle oedema."
    assert free["lm"]["with_contradicted_claim"] == 2 / 4 and free["composed"]["with_contradicted_claim"] == 0.0


def test_value_answers_are_scored_against_the_readings_each_case_was_shown():
    from dataclasses import replace

    from medmm.evaluate.grounding import value_report

    pulse = {"heart_rate": [112.4, "/min"], "sbp": [94.0, "mm[Hg]"], "dbp": [58.0, "mm[Hg]"]}
    first = replace(
        case("sepsis.", {"sepsis"}, {"sepsis": 0.9}),
        readings=pulse,
        value_answers=(
            ("heart_rate", "Heart rate 112 /min (last reading)."),  # quotes
            ("blood_pressure", "Blood pressure 94/60 mm[Hg]."),  # a wrong diastolic
            ("weight", "No weight reading in the window."),  # no reading, and says so
        ),
    )
    second = replace(
        case("no acute cardiopulmonary diagnosis.", set(), {}),
        readings={"heart_rate": [70.0, "/min"]},
        value_answers=(
            ("heart_rate", "Heart rate 70 /min."),
            ("weight", "Weight 80 kg (last reading)."),  # no reading, but a number
        ),
    )
    third = case("no acute cardiopulmonary diagnosis.", set(), {})  # not asked: left out
    report = value_report([first, second, third])
    assert (report["cases"], report["questions"], report["with_reading"], report["without_reading"]) == (2, 5, 3, 2)
    assert report["quotes_value"] == 2 / 3 and report["wrong_number"] == 1 / 3 and report["declines"] == 1 / 2
    assert (
        report["by_sign"]["heart_rate"]["quotes_value"] == 1.0
        and report["by_sign"]["blood_pressure"]["quotes_value"] == 0.0
    )
    assert (
        report["examples"][0]["record"] == "Record, last vital signs: heart rate 112 /min; blood pressure 94/58 mm[Hg]."
    )
    assert grounding_report([first, second], ())["questions"]["values"]["quotes_value"] == 2 / 3
    assert "values" not in grounding_report([third], ())["questions"]
