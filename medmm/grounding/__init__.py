"""Grounding: generated words are checked against the study before they leave the Predictor.

A generated impression is parsed into claims (diagnoses, vital-sign, note and radiograph
findings, statements) and each is checked against the patient's data and the prediction
(`ground_impression`); questions are answered from the data and the prediction, not from free
LM text (`answer_question`). The Predictor builds the `PatientFacts` both read.
"""

from medmm.grounding.answers import answer_question, evidence
from medmm.grounding.facts import CONTRADICTED, SUPPORTED, UNSUPPORTED, PatientFacts, check_finding
from medmm.grounding.impression import GroundedText, ground_impression
from medmm.grounding.questions import Question, recognise

__all__ = [
    "CONTRADICTED",
    "GroundedText",
    "PatientFacts",
    "Question",
    "SUPPORTED",
    "UNSUPPORTED",
    "answer_question",
    "check_finding",
    "evidence",
    "ground_impression",
    "recognise",
]
