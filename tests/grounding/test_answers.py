"""Answers composed from the study and the prediction: wording from the thresholds and the set, evidence for and against."""

from __future__ import annotations

from datetime import timedelta

import pytest

from medmm.grounding import answer_question
from medmm.grounding.answers import RESEARCH_NOTE
from tests.grounding.helpers import T0, facts, grid, study

HF_NOTE = "HISTORY: Reports orthopnoea, now sleeping on three pillows.\nEXAMINATION: No ankle oedema."


def lines(answer) -> list[str]:
    assert answer.text.endswith(RESEARCH_NOTE)
    return answer.text.splitlines()[:-1]


@pytest.mark.parametrize(
    ("p", "shown", "in_set", "word"),
    [
        (0.78, "78%", True, "likely"),
        (0.6, "60%", False, "likely"),
        (0.40, "40%", True, "possible"),
        (0.40, "40%", False, "unlikely"),
        (0.004, "<1%", False, "unlikely"),
    ],
)
def test_is_there_words_the_answer_from_the_operating_threshold_and_the_set(p, shown, in_set, word):
    f = facts(study(), {"pneumonia": p}, operating=0.6, conformal_set=("pneumonia",) if in_set else ())
    first = lines(answer_question("Is there pneumonia?", f))[0]
    side = "at or above" if p >= 0.6 else "below"
    where = "in" if in_set else "outside"
    assert (
        first
        == f"Pneumonia is {word}: probability {shown}, {side} its operating threshold (60%); {where} the prediction set at 90% coverage."
    )


def test_what_supports_lists_evidence_for_and_against_with_the_negated_note():
    s = study(vitals=grid(weight=[80.0, 80.5], spo2=[97.0, 96.5]), notes=(HF_NOTE,))
    f = facts(s, {"heart_failure": 0.005}, operating=0.59, image_scores={"heart_failure": 0.04})
    out = lines(answer_question("What supports heart failure?", f))
    assert (
        out[0]
        == "Heart failure is unlikely: probability <1%, below its operating threshold (59%); outside the prediction set at 90% coverage."
    )
    assert out[1] == "For:"
    assert (
        out[2]
        == '- orthopnoea: the notes say so: "Reports orthopnoea, now sleeping on three pillows." (progress note 0)'
    )
    against = out[out.index("Against:") + 1 :]
    assert (
        against[0]
        == "- no weight gain: weight 80 kg at 2026-03-01 00:00 UTC, then 80.5 kg at 2026-03-01 01:00 UTC: change +0.5 kg (weight gain: >= 2 kg)"
    )
    assert against[1].startswith("- no hypoxaemia: min SpO2 96.5% at 2026-03-01 01:00 UTC; largest fall 0.5 points")
    assert against[2] == '- ankle oedema negated in the notes: "No ankle oedema." (progress note 0)'
    assert (
        against[3]
        == "- cardiomegaly not found by the image branch: image-only head for heart failure: 4% (threshold 50%)"
    )
    # "what argues against" lists the same evidence, against first
    out = lines(answer_question("What argues against heart failure?", f))
    assert (
        out[1] == "Against:"
        and '- orthopnoea: the notes say so: "Reports orthopnoea, now sleeping on three pillows." (progress note 0)'
        in out
    )


def test_the_differential_ranks_by_probability_and_states_the_set():
    f = facts(
        study(),
        {"pneumonia": 0.8, "sepsis": 0.3, "heart_failure": 0.1},
        operating=0.5,
        conformal_set=("pneumonia", "sepsis"),
    )
    out = lines(answer_question("What is the differential?", f))
    assert out[0] == "Diagnoses ranked by calibrated probability:"
    assert (
        out[1]
        == "1. pneumonia: likely; probability 80%, at or above its operating threshold (50%); in the prediction set at 90% coverage"
    )
    assert (
        out[2]
        == "2. sepsis: possible; probability 30%, below its operating threshold (50%); in the prediction set at 90% coverage"
    )
    assert out[3].startswith("3. heart failure: unlikely; probability 10%")
    assert out[-1] == "Prediction set at 90% coverage: pneumonia, sepsis."


def test_a_vital_sign_answer_gives_min_max_last_with_units_and_times_then_the_adult_rules():
    s = study(vitals=grid(temperature=[36.2, 37.1, None, 36.8], sbp=[118.0, 85.0, 122.0], dbp=[70.0, 60.0, 75.0]))
    out = lines(answer_question("What is the temperature?", facts(s)))
    at = lambda h: (T0 + timedelta(hours=h)).strftime("%Y-%m-%d %H:%M") + " UTC"  # noqa: E731
    assert out[0] == (
        f"Temperature in the 6-hour window before the study time: 3 step(s) with a reading; min 36.2 Cel at {at(0)}; "
        f"max 37.1 Cel at {at(1)}; last 36.8 Cel at {at(3)}."
    )
    assert out[1] == f"- fever: no: max temperature 37.1 Cel at {at(1)} (fever: >= 38.0 Cel)"
    assert out[2] == f"- hypothermia: no: min temperature 36.2 Cel at {at(0)} (hypothermia: < 36.0 Cel)"
    bp = lines(answer_question("What is the blood pressure?", facts(s)))
    assert bp[0].startswith("Blood pressure (systolic) in the 6-hour window") and f"min 85 mm[Hg] at {at(1)}" in bp[0]
    assert (
        bp[1].startswith("Blood pressure (diastolic)")
        and bp[2] == f"- hypotension: yes: min systolic 85 mm[Hg] at {at(1)} (hypotension: < 90 mm[Hg])"
    )
    fever = lines(answer_question("Does the patient have a fever?", facts(s)))
    assert fever[1:] == [f"- fever: no: max temperature 37.1 Cel at {at(1)} (fever: >= 38.0 Cel)"]
    assert (
        lines(answer_question("What is the heart rate?", facts(s)))[0]
        == "Heart rate: no reading inside the 6-hour window before the study time."
    )
    assert (
        lines(answer_question("What is the weight?", facts(study())))[0]
        == "Weight: no vital sign was read for this study."
    )


def test_a_child_gets_the_values_and_no_finding():
    child = study(age=8 / 12, vitals=grid(temperature=[38.5, 38.9]))
    out = lines(answer_question("Does the patient have a fever?", facts(child)))
    assert "max 38.9 Cel" in out[0]
    assert (
        out[1]
        == "No finding is stated: the patient is 8 months old; the thresholds are for adults (children need age-specific ranges)."
    )
    assert answer_question("Does the patient have a fever?", facts(child)).claims == ()


def test_what_the_notes_say_quotes_each_mention_with_its_reading():
    f = facts(study(notes=(HF_NOTE + " Past history: family history of heart failure with ankle swelling.",)))
    out = lines(answer_question("What do the notes say about ankle oedema?", f))
    assert out == [
        "The notes on ankle oedema:",
        '- negated: "No ankle oedema." (progress note 0)',
        '- historical: "Past history: family history of heart failure with ankle swelling." (progress note 0)',
    ]
    assert lines(answer_question("What do the notes say about rigors?", f)) == [
        "No note in the model's scope mentions rigors."
    ]
    assert lines(answer_question("What do the notes say about rigors?", facts(study()))) == [
        "No note was read for this study."
    ]


def test_off_topic_and_treatment_questions_are_declined_with_what_can_be_asked():
    f = facts(study())
    for question, start in (
        ("What is the weather like today?", "This tool cannot answer that"),
        ("Should I give antibiotics?", "This research tool does not give treatment advice"),
    ):
        answer = answer_question(question, f)
        assert (
            not answer.answered
            and answer.text.startswith(start)
            and "It can answer: whether a diagnosis the model predicts is likely" in answer.text
        )
    assert answer_question("Tell me a joke", None).kind == "unknown"  # declined without reading the study


def test_which_inputs_were_used_lists_each_input_with_its_verdict():
    from dataclasses import replace

    from medmm.records import InputUse

    uses = (
        InputUse("image", "a.dcm (series 1)", True, "DX CHEST PA"),
        InputUse("notes", "DocumentReference/x", False, "no text"),
    )
    out = lines(answer_question("Which inputs were used?", replace(facts(study()), inputs=uses)))
    assert out == [
        "Used:",
        "- image a.dcm (series 1): DX CHEST PA",
        "Not used:",
        "- notes DocumentReference/x: no text",
    ]


def test_what_the_radiograph_shows_is_the_image_branch_score_against_each_threshold():
    f = facts(
        study(), image_scores={"pneumonia": 0.91, "heart_failure": 0.04, "pleural_effusion": 0.5, "pneumothorax": 0.49}
    )
    assert lines(answer_question("What does the radiograph show?", f)) == [
        "Radiograph, as the image-only head reads it:",
        "- focal consolidation: found: image-only head for pneumonia: 91% (threshold 50%)",
        "- cardiomegaly: not found: image-only head for heart failure: 4% (threshold 50%)",
        "- blunted costophrenic angle: found: image-only head for pleural effusion: 50% (threshold 50%)",
        "- visceral pleural line: not found: image-only head for pneumothorax: 49% (threshold 50%)",
    ]
    assert lines(answer_question("What does the radiograph show?", facts(study()))) == [
        "No radiograph was read for this study."
    ]
