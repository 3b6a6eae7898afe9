"""Grounding: generated words are checked against the study before they leave the Predictor.

A generated impression is parsed into claims (diagnoses, vital-sign, note and radiograph
findings, statements) and each is checked against the patient's data and the prediction
(`ground_impression`). The Predictor builds the `PatientFacts` it reads.
"""

from medmm.grounding.facts import CONTRADICTED, SUPPORTED, UNSUPPORTED, PatientFacts, check_finding
from medmm.grounding.impression import GroundedText, ground_impression

__all__ = ["CONTRADICTED", "GroundedText", "PatientFacts", "SUPPORTED", "UNSUPPORTED", "check_finding", "ground_impression"]
