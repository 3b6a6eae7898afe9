"""Recognising what a question asks."""

from __future__ import annotations

import pytest

from medmm.grounding.questions import Question, recognise


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Is there pneumonia?", Question("likelihood", "pneumonia")),
        ("How likely is heart failure?", Question("likelihood", "heart_failure")),
        ("Could this be a pleural effusion?", Question("likelihood", "pleural_effusion")),
        ("What supports heart failure?", Question("support", "heart_failure")),
        ("What is the evidence for sepsis?", Question("support", "sepsis")),
        ("What argues against pneumothorax?", Question("against", "pneumothorax")),
        ("Can we rule out sepsis?", Question("against", "sepsis")),
        ("What is the differential?", Question("differential")),
        ("List the diagnoses by probability.", Question("differential")),
        ("What is the temperature?", Question("vital", sign="temperature")),
        ("Show me the heart rate", Question("vital", sign="heart_rate")),
        ("What is the BP?", Question("vital", sign="blood_pressure")),
        ("SpO2?", Question("vital", sign="spo2")),
        ("What is the patient's weight?", Question("vital", sign="weight")),
        ("Does the patient have a fever?", Question("vital", sign="temperature", finding="fever")),
        ("Is the patient tachycardic?", Question("vital", sign="heart_rate", finding="tachycardia")),
        ("What do the notes say about ankle oedema?", Question("notes", finding="ankle oedema")),
        ("What do the notes say?", Question("notes")),
        ("Which inputs were used?", Question("inputs")),
        ("What does the radiograph show?", Question("image")),
        ("Is there cardiomegaly?", Question("image")),
        ("What antibiotic should I give?", Question("advice")),
        ("Should we start furosemide for the heart failure?", Question("advice")),
        ("What is the weather like today?", Question("unknown")),
        ("Tell me a joke", Question("unknown")),
    ],
)
def test_recognise(question, expected):
    assert recognise(question) == expected
