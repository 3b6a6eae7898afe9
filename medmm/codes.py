"""Clinical vocabulary shared by ingest, the synthetic cohort and the model.

Codes follow public terminologies (SNOMED CT, ICD-10-CM, LOINC, UCUM, US Core); the tables
here are the single place medmm names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OMB_RACE = "urn:oid:2.16.840.1.113883.6.238"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
US_CORE_BIRTHSEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"


@dataclass(frozen=True)
class VitalSign:
    name: str  # channel name on the grid
    display: str
    loinc: tuple[str, ...]  # every LOINC code that maps to this channel, preferred first
    unit: str  # canonical UCUM unit
    low: float  # plausible range; outside it a value is dropped and reported
    high: float


VITAL_SIGNS: tuple[VitalSign, ...] = (
    VitalSign("heart_rate", "Heart rate", ("8867-4",), "/min", 20.0, 300.0),
    VitalSign("resp_rate", "Respiratory rate", ("9279-1",), "/min", 4.0, 80.0),
    VitalSign("spo2", "Oxygen saturation", ("59408-5", "2708-6"), "%", 50.0, 100.0),
    VitalSign("temperature", "Body temperature", ("8310-5",), "Cel", 30.0, 45.0),
    VitalSign("sbp", "Systolic blood pressure", ("8480-6",), "mm[Hg]", 40.0, 300.0),
    VitalSign("dbp", "Diastolic blood pressure", ("8462-4",), "mm[Hg]", 20.0, 200.0),
    VitalSign("weight", "Body weight", ("29463-7",), "kg", 0.3, 400.0),
)
VITAL_NAMES: tuple[str, ...] = tuple(v.name for v in VITAL_SIGNS)
BP_PANEL_LOINC = "85354-9"
_VITAL_BY_LOINC = {code: v for v in VITAL_SIGNS for code in v.loinc}
_VITAL_BY_NAME = {v.name: v for v in VITAL_SIGNS}


def vital_for_code(code: str, signs: Sequence[VitalSign] | None = None) -> VitalSign | None:
    """The vital-sign channel for a LOINC code or a channel name among `signs` (default: VITAL_SIGNS), or None."""
    if signs is None or tuple(signs) == VITAL_SIGNS:
        return _VITAL_BY_LOINC.get(code) or _VITAL_BY_NAME.get(code)
    by_code, by_name = _catalogue(tuple(signs))
    return by_code.get(code) or by_name.get(code)


@lru_cache(maxsize=32)
def _catalogue(signs: tuple[VitalSign, ...]) -> tuple[dict[str, VitalSign], dict[str, VitalSign]]:
    return {code: v for v in signs for code in v.loinc}, {v.name: v for v in signs}


# Note document types (LOINC).
NOTE_TYPES: dict[str, str] = {
    "34117-2": "History and physical note",
    "11506-3": "Progress note",
    "18842-5": "Discharge summary",
    "18748-4": "Diagnostic imaging study",
}

# OMB race and ethnicity categories (US Core).
RACES: dict[str, str] = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
}
ETHNICITIES: dict[str, str] = {
    "2135-2": "Hispanic or Latino",
    "2186-5": "Not Hispanic or Latino",
}

# DICOM SOP classes medmm turns into images.
SOP_CR = "1.2.840.10008.5.1.4.1.1.1"
SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"
SOP_CT = "1.2.840.10008.5.1.4.1.1.2"
