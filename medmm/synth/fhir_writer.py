"""Build the patient's FHIR R4 Bundle: Patient, Encounter, Conditions, notes and (some) vital signs.

Resource ids are UUIDs derived from the seed and the patient, so bundles are reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from medmm.codes import (
    BP_PANEL_LOINC,
    ETHNICITIES,
    ICD10,
    LOINC,
    NOTE_TYPES,
    OBS_CATEGORY,
    OMB_RACE,
    RACES,
    SNOMED,
    UCUM,
    US_CORE_BIRTHSEX,
    US_CORE_ETHNICITY,
    US_CORE_RACE,
    VITAL_SIGNS,
)
from medmm.synth.diagnoses import DIAGNOSES
from medmm.synth.notes import NoteDraft
from medmm.synth.plan import PatientPlan
from medmm.synth.vitals_gen import LOINC_OF, VitalsDraft

ID_SYSTEM = "urn:medmm:synthetic-patient-id"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFY = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DR_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
_DISPLAY = {v.name: v.display for v in VITAL_SIGNS}
_UNIT = {v.name: v.unit for v in VITAL_SIGNS}
_UNIT_TEXT = {"/min": "/min", "%": "%", "Cel": "C", "[degF]": "F", "mm[Hg]": "mmHg", "kg": "kg", "[lb_av]": "lb"}


def instant(t: datetime) -> str:
    """ISO 8601 with an explicit UTC offset."""
    return t.isoformat(timespec="seconds")


class _Ids:
    """Reproducible resource ids for one patient."""

    def __init__(self, plan: PatientPlan):
        self.root = f"medmm-synth:{plan.seed}:{plan.patient_id}"
        self.count = 0

    def next(self) -> str:
        self.count += 1
        digest = hashlib.sha256(f"{self.root}:{self.count}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))


def _codeable(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": _UNIT_TEXT.get(unit, unit), "system": UCUM, "code": unit}


def _patient(plan: PatientPlan, pid: str) -> dict[str, Any]:
    race, eth = RACES[plan.race], ETHNICITIES[plan.ethnicity]
    return {
        "resourceType": "Patient",
        "id": pid,
        "extension": [
            {
                "url": US_CORE_RACE,
                "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": OMB_RACE, "code": plan.race, "display": race}},
                    {"url": "text", "valueString": race},
                ],
            },
            {
                "url": US_CORE_ETHNICITY,
                "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": OMB_RACE, "code": plan.ethnicity, "display": eth}},
                    {"url": "text", "valueString": eth},
                ],
            },
            {"url": US_CORE_BIRTHSEX, "valueCode": "F" if plan.sex == "female" else "M"},
        ],
        "identifier": [{"system": ID_SYSTEM, "value": plan.patient_id}],
        "gender": plan.sex,
        "birthDate": plan.birth_date.isoformat(),
    }


def _note(draft: NoteDraft, rid: str, subject: dict, encounter: dict) -> dict[str, Any]:
    data = base64.b64encode(draft.text.encode("utf-8")).decode("ascii")
    kind = _codeable(LOINC, draft.type_code, NOTE_TYPES[draft.type_code])
    if draft.resource == "DiagnosticReport":
        category = ("RAD", "Radiology") if draft.type_code == "18748-4" else ("OTH", "Other")
        return {
            "resourceType": "DiagnosticReport",
            "id": rid,
            "status": "final",
            "category": [_codeable(DR_CATEGORY, *category)],
            "code": kind,
            "subject": subject,
            "encounter": encounter,
            "effectiveDateTime": instant(draft.time),
            "issued": instant(draft.time),
            "presentedForm": [{"contentType": "text/plain", "data": data}],
        }
    return {
        "resourceType": "DocumentReference",
        "id": rid,
        "status": "current",
        "type": kind,
        "subject": subject,
        "date": instant(draft.time),
        "content": [{"attachment": {"contentType": "text/plain", "data": data}}],
        "context": {"encounter": [encounter]},
    }


def _observations(plan: PatientPlan, vitals: VitalsDraft, ids: _Ids, subject: dict, encounter: dict) -> list[dict]:
    """Vital-sign Observations; systolic and diastolic pressures of an hour share one BP panel."""
    category = [_codeable(OBS_CATEGORY, "vital-signs", "Vital Signs")]
    out: list[dict] = []
    pending_bp: dict[datetime, dict[str, float]] = {}
    for when, channel, value in vitals.rows():
        if channel in ("sbp", "dbp"):
            pending_bp.setdefault(when, {})[channel] = value
            continue
        unit = _UNIT[channel]
        if channel == "temperature" and plan.temperature_in_f:
            value, unit = round(value * 9 / 5 + 32, 1), "[degF]"
        elif channel == "weight" and plan.weight_in_lb:
            value, unit = round(value / 0.45359237, 1), "[lb_av]"
        out.append(
            _obs(
                ids.next(),
                category,
                LOINC_OF[channel],
                _DISPLAY[channel],
                when,
                subject,
                encounter,
                _quantity(value, unit),
            )
        )
    for when, bp in pending_bp.items():
        components = [
            {"code": _codeable(LOINC, LOINC_OF[c], _DISPLAY[c]), "valueQuantity": _quantity(bp[c], "mm[Hg]")}
            for c in ("sbp", "dbp")
            if c in bp
        ]
        panel = _obs(ids.next(), category, BP_PANEL_LOINC, "Blood pressure panel", when, subject, encounter, None)
        panel["component"] = components
        out.append(panel)
    return out


def _obs(rid, category, code, display, when, subject, encounter, quantity) -> dict[str, Any]:
    obs = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": category,
        "code": _codeable(LOINC, code, display),
        "subject": subject,
        "encounter": encounter,
        "effectiveDateTime": instant(when),
    }
    if quantity is not None:
        obs["valueQuantity"] = quantity
    return obs


def build_bundle(
    rng: np.random.Generator,
    plan: PatientPlan,
    notes: tuple[NoteDraft, ...],
    vitals: VitalsDraft | None,
) -> tuple[dict[str, Any], list[str]]:
    """The bundle as JSON-ready data, and the references ("Type/id") of the notes in order."""
    ids = _Ids(plan)
    bundle_id, pid, eid = ids.next(), ids.next(), ids.next()
    subject = {"reference": f"urn:uuid:{pid}"}
    encounter_ref = {"reference": f"urn:uuid:{eid}"}
    t = plan.study_time
    resources: list[dict[str, Any]] = [_patient(plan, pid)]
    resources.append(
        {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": V3_ACT, "code": "IMP", "display": "inpatient encounter"},
            "subject": subject,
            "period": {
                "start": instant(t - timedelta(hours=48, minutes=int(rng.integers(0, 360)))),
                "end": instant(t + timedelta(hours=int(rng.integers(12, 96)))),
            },
        }
    )
    for d in DIAGNOSES:
        if d.name not in plan.labels:
            continue
        onset = t - timedelta(hours=float(rng.uniform(2, 47)))
        resources.append(
            {
                "resourceType": "Condition",
                "id": ids.next(),
                "clinicalStatus": {"coding": [{"system": COND_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": COND_VERIFY, "code": "confirmed"}]},
                "category": [{"coding": [{"system": COND_CATEGORY, "code": "encounter-diagnosis"}]}],
                "code": {
                    "coding": [
                        {"system": SNOMED, "code": d.snomed, "display": d.display},
                        {"system": ICD10, "code": d.icd10, "display": d.display},
                    ],
                    "text": d.display,
                },
                "subject": subject,
                "encounter": encounter_ref,
                "onsetDateTime": instant(onset.replace(second=0, microsecond=0)),
                "recordedDate": instant(t),
            }
        )
    note_refs = []
    for draft in notes:
        rid = ids.next()
        resources.append(_note(draft, rid, subject, encounter_ref))
        note_refs.append(f"{draft.resource}/{rid}")
    if vitals is not None:
        resources.extend(_observations(plan, vitals, ids, subject, encounter_ref))
    kind = "transaction" if plan.transaction_bundle else "collection"
    entries = []
    for res in resources:
        entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{res['id']}", "resource": res}
        if kind == "transaction":
            entry["request"] = {"method": "POST", "url": res["resourceType"]}
        entries.append(entry)
    bundle = {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": kind,
        "timestamp": instant(t + timedelta(days=3)),
        "entry": entries,
    }
    return bundle, note_refs
