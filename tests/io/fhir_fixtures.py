"""FHIR inputs for the ingest tests: a Synthea-like US Core R4 transaction bundle and its
variants (R5, searchset, Bulk Data NDJSON), built from values the tests check against."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

UTC = timezone.utc
LOCAL = timezone(timedelta(hours=-5))  # Synthea writes local times with their offset
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
DOC_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
IHE_FORMAT = "http://ihe.net/fhir/ValueSet/IHE.FormatCode.codesystem"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
OMB = "urn:oid:2.16.840.1.113883.6.238"
MRN_SYSTEM = "http://hospital.smarthealthit.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
NPI_VALUE = "9999912345"
SYNTHEA = "https://github.com/synthetichealth/synthea"
STUDY_TIME = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
HOURS = 48


def uid(name: str) -> str:
    """A fixed UUID per name, so that fixtures are the same on every run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"medmm-fixture/{name}"))


def local(t: datetime) -> str:
    return t.astimezone(LOCAL).isoformat()


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class Planted:
    """The values written into the bundle, in the units written (UTC times)."""

    patient_id: str
    family_name: str
    mrn: str
    hourly_times: tuple[datetime, ...]
    heart_rate: tuple[int, ...]  # /min
    resp_rate: tuple[int, ...]  # /min
    spo2: tuple[int, ...]  # %
    temp_f: tuple[float, ...]  # [degF]
    sbp: tuple[int, ...]  # mm[Hg]
    dbp: tuple[int, ...]  # mm[Hg]
    weight_times: tuple[datetime, ...]
    weight_lb: tuple[float, ...]  # [lb_av]
    implausible_hr_time: datetime  # heart rate 400 /min
    kelvin_time: datetime  # temperature in K (unknown unit)
    encounter_start: datetime
    encounter_end: datetime
    hp_text: str  # base64 text/plain in DiagnosticReport.presentedForm (and a duplicate DocumentReference)
    progress_html: str
    progress_time: datetime
    observation_count: int


PATIENT = uid("patient")
ENCOUNTER = uid("encounter")
HP_TEXT = (
    "History and physical\n"
    "Chief complaint: productive cough for 3 days, pleuritic chest pain.\n"
    "Exam: crackles at the right base; SpO\u2082 91 % on room air.\n"
    "Denies orthopnoea."
)
PROGRESS_HTML = (
    "<html><head><style>p { color: red }</style><title>x</title></head><body>"
    "<h1>Progress note</h1><p>Febrile to 38.4&nbsp;&deg;C overnight.</p>"
    "<ul><li>Cough &amp; sputum</li><li>Crackles  right   base</li></ul></body></html>"
)
PROGRESS_TEXT = "Progress note\nFebrile to 38.4 \u00b0C overnight.\nCough & sputum\nCrackles right base"


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"system": system, "code": code, "display": display}


def _quantity(value: float, ucum: str, unit: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit or ucum, "system": UCUM, "code": ucum}


def _observation(name: str, codes: list[tuple[str, str]], t: datetime, category: str, **value: Any) -> dict[str, Any]:
    """A US Core Observation as Synthea writes it (value or components passed as keywords)."""
    meta = {"meta": {"profile": [f"{US_CORE}us-core-vital-signs"]}} if category == "vital-signs" else {}
    return {
        "resourceType": "Observation",
        "id": uid(name),
        **meta,
        "status": "final",
        "category": [{"coding": [_coding(f"{TERMINOLOGY}observation-category", category, category)]}],
        "code": {"coding": [_coding(LOINC, c, d) for c, d in codes], "text": codes[0][1]},
        "subject": {"reference": f"urn:uuid:{PATIENT}"},
        "encounter": {"reference": f"urn:uuid:{ENCOUNTER}"},
        "effectiveDateTime": local(t),
        "issued": local(t + timedelta(minutes=1)),
        **value,
    }


def _patient(family: str, mrn: str) -> dict[str, Any]:
    race = [
        {"url": "ombCategory", "valueCoding": _coding(OMB, "2054-5", "Black or African American")},
        {"url": "text", "valueString": "Black or African American"},
    ]
    ethnicity = [
        {"url": "ombCategory", "valueCoding": _coding(OMB, "2186-5", "Not Hispanic or Latino")},
        {"url": "text", "valueString": "Not Hispanic or Latino"},
    ]
    return {
        "resourceType": "Patient",
        "id": PATIENT,
        "meta": {"profile": [f"{US_CORE}us-core-patient"]},
        "extension": [
            {"url": f"{US_CORE}us-core-race", "extension": race},
            {"url": f"{US_CORE}us-core-ethnicity", "extension": ethnicity},
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "Zulauf375"},
            {"url": f"{US_CORE}us-core-birthsex", "valueCode": "F"},
            {"url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years", "valueDecimal": 1.28},
        ],
        "identifier": [
            {"system": SYNTHEA, "value": PATIENT},
            {
                "type": {"coding": [_coding(f"{TERMINOLOGY}v2-0203", "MR", "Medical Record Number")]},
                "system": MRN_SYSTEM,
                "value": mrn,
            },
        ],
        "name": [{"use": "official", "family": family, "given": ["Jacinda412"], "prefix": ["Mrs."]}],
        "telecom": [{"system": "phone", "value": "555-201-3344", "use": "home"}],
        "gender": "female",
        "birthDate": "1958-03-14",
        "address": [{"line": ["12 Elm Street"], "city": "Boston", "state": "MA", "country": "US"}],
    }


def _condition(
    name: str, system: str, code: str, display: str, onset: datetime, verification: str = "confirmed"
) -> dict[str, Any]:
    category = _coding(f"{TERMINOLOGY}condition-category", "encounter-diagnosis", "Encounter Diagnosis")
    return {
        "resourceType": "Condition",
        "id": uid(name),
        "clinicalStatus": {"coding": [_coding(f"{TERMINOLOGY}condition-clinical", "active", "Active")]},
        "verificationStatus": {"coding": [_coding(f"{TERMINOLOGY}condition-ver-status", verification, verification)]},
        "category": [{"coding": [category]}],
        "code": {"coding": [_coding(system, code, display)], "text": display},
        "subject": {"reference": f"urn:uuid:{PATIENT}"},
        "encounter": {"reference": f"urn:uuid:{ENCOUNTER}"},
        "onsetDateTime": local(onset),
        "recordedDate": local(onset),
    }


def synthea_bundle() -> tuple[dict[str, Any], Planted]:
    """A Synthea-like US Core R4 transaction bundle and the values planted in it."""
    start = STUDY_TIME - timedelta(hours=HOURS)
    times = tuple(start + timedelta(hours=h, minutes=10) for h in range(HOURS))
    hr = tuple(60 + (h * 7) % 40 for h in range(HOURS))
    rr = tuple(12 + h % 9 for h in range(HOURS))
    spo2 = tuple(90 + h % 10 for h in range(HOURS))
    temp_f = tuple(round(97.0 + 0.2 * (h % 12), 1) for h in range(HOURS))  # 98.6 at h % 12 == 8
    sbp = tuple(110 + (h * 3) % 30 for h in range(HOURS))
    dbp = tuple(70 + (h * 2) % 15 for h in range(HOURS))
    weight_times = (times[0], times[24], times[47])
    weight_lb = (154.0, 155.5, 153.0)
    enc_start, enc_end = start - timedelta(hours=1), STUDY_TIME - timedelta(minutes=30)
    progress_time = STUDY_TIME - timedelta(minutes=20)
    mrn, family = "MRN-7788123", "Oberbrunner298"

    def vital(name: str, code: str, display: str, t: datetime, value: float, ucum: str, unit: str = "") -> None:
        quantity = _quantity(value, ucum, unit or None)
        obs.append(_observation(name, [(code, display)], t, "vital-signs", valueQuantity=quantity))

    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [_coding(LOINC, code, display)]}, "valueQuantity": _quantity(value, "mm[Hg]")}

    obs: list[dict[str, Any]] = []
    spo2_codes = [("2708-6", "Oxygen saturation in Arterial blood"), ("59408-5", "Oxygen saturation by Pulse oximetry")]
    bp_panel = [("85354-9", "Blood pressure panel with all children optional")]
    for h, t in enumerate(times):
        vital(f"hr{h}", "8867-4", "Heart rate", t, hr[h], "/min")
        vital(f"rr{h}", "9279-1", "Respiratory rate", t, rr[h], "/min")
        obs.append(_observation(f"spo2{h}", spo2_codes, t, "vital-signs", valueQuantity=_quantity(spo2[h], "%")))
        vital(f"temp{h}", "8310-5", "Body temperature", t, temp_f[h], "[degF]")
        components = [
            component("8480-6", "Systolic blood pressure", sbp[h]),
            component("8462-4", "Diastolic blood pressure", dbp[h]),
        ]
        obs.append(_observation(f"bp{h}", bp_panel, t, "vital-signs", component=components))
    for i, (t, lb) in enumerate(zip(weight_times, weight_lb)):
        vital(f"wt{i}", "29463-7", "Body weight", t, lb, "[lb_av]", "lb")
    for i in range(8):  # laboratory results: not vital signs
        glucose = _quantity(90 + i, "mg/dL")
        obs.append(_observation(f"glu{i}", [("2339-0", "Glucose")], times[i * 6], "laboratory", valueQuantity=glucose))
    vital("height", "8302-2", "Body Height", times[0], 165.0, "cm")
    vital("hr-implausible", "8867-4", "Heart rate", times[20] + timedelta(minutes=5), 400, "/min")
    vital("temp-kelvin", "8310-5", "Body temperature", times[30] + timedelta(minutes=5), 310.0, "K")

    enc_ref = {"reference": f"urn:uuid:{ENCOUNTER}"}
    patient_ref = {"reference": f"urn:uuid:{PATIENT}"}
    practitioner_ref = {"reference": f"Practitioner?identifier={NPI}|{NPI_VALUE}", "display": "Dr. Example"}
    organization_ref = {"reference": f"Organization?identifier={SYNTHEA}|{uid('org')}"}
    encounter = {
        "resourceType": "Encounter",
        "id": ENCOUNTER,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"coding": [_coding(SNOMED, "32485007", "Hospital admission")]}],
        "subject": patient_ref,
        "participant": [{"individual": practitioner_ref}],
        "period": {"start": local(enc_start), "end": local(enc_end)},
        "serviceProvider": organization_ref,
    }
    hp_report = {
        "resourceType": "DiagnosticReport",
        "id": uid("hp-report"),
        "status": "final",
        "category": [{"coding": [_coding(LOINC, "34117-2", "History and physical note")]}],
        "code": {"coding": [_coding(LOINC, "34117-2", "History and physical note")]},
        "subject": patient_ref,
        "encounter": enc_ref,
        "effectiveDateTime": local(enc_start),
        "issued": enc_start.astimezone(LOCAL).isoformat(timespec="milliseconds"),
        "performer": [practitioner_ref],
        "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": b64(HP_TEXT)}],
    }
    lab_report = {
        "resourceType": "DiagnosticReport",
        "id": uid("lab-report"),
        "status": "final",
        "code": {"coding": [_coding(LOINC, "51990-0", "Basic metabolic panel")]},
        "subject": patient_ref,
        "effectiveDateTime": local(times[0]),
        "result": [{"reference": f"urn:uuid:{uid('glu0')}"}],
    }

    def document(name: str, code: str, display: str, t: datetime, content_type: str, text: str) -> dict[str, Any]:
        return {
            "resourceType": "DocumentReference",
            "id": uid(name),
            "status": "current",
            "type": {"coding": [_coding(LOINC, code, display)]},
            "category": [{"coding": [_coding(DOC_CATEGORY, "clinical-note", "Clinical Note")]}],
            "subject": patient_ref,
            "date": t.astimezone(LOCAL).isoformat(timespec="milliseconds"),
            "author": [practitioner_ref],
            "content": [
                {
                    "attachment": {"contentType": content_type, "data": b64(text)},
                    "format": {"system": IHE_FORMAT, "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"},
                }
            ],
            "context": {"encounter": [enc_ref], "period": {"start": local(t), "end": local(enc_end)}},
        }

    resources: list[dict[str, Any]] = [
        _patient(family, mrn),
        {"resourceType": "Organization", "id": uid("org"), "identifier": [{"system": SYNTHEA, "value": uid("org")}]},
        {"resourceType": "Practitioner", "id": uid("doctor"), "identifier": [{"system": NPI, "value": NPI_VALUE}]},
        encounter,
        _condition("pneumonia", SNOMED, "233604007", "Pneumonia", enc_start),
        _condition("effusion", ICD10CM, "J90", "Pleural effusion, NEC", enc_start + timedelta(hours=3)),
        _condition("sinusitis", SNOMED, "444814009", "Viral sinusitis (disorder)", enc_start - timedelta(days=300)),
        _condition("sepsis-refuted", SNOMED, "91302008", "Sepsis", enc_start, verification="refuted"),
        *obs,
        hp_report,
        lab_report,
        document("hp-doc", "34117-2", "History and physical note", enc_start, "text/plain; charset=utf-8", HP_TEXT),
        document("progress-doc", "11506-3", "Progress note", progress_time, "text/html", PROGRESS_HTML),
        {
            "resourceType": "Procedure",
            "id": uid("procedure"),
            "status": "completed",
            "code": {"coding": [_coding(SNOMED, "399208008", "Plain chest X-ray")]},
            "subject": patient_ref,
            "performedPeriod": {"start": local(enc_start), "end": local(enc_start + timedelta(minutes=20))},
        },
        {
            "resourceType": "Immunization",
            "id": uid("immunization"),
            "status": "completed",
            "vaccineCode": {"coding": [_coding("http://hl7.org/fhir/sid/cvx", "140", "Influenza, seasonal")]},
            "patient": patient_ref,
            "occurrenceDateTime": local(enc_start - timedelta(days=100)),
            "primarySource": True,
        },
    ]
    entries = []
    for res in resources:
        request: dict[str, Any] = {"method": "POST", "url": res["resourceType"]}
        if res["resourceType"] in ("Organization", "Practitioner"):
            ident = res["identifier"][0]
            request["ifNoneExist"] = f"identifier={ident['system']}|{ident['value']}"
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res, "request": request})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    planted = Planted(
        patient_id=PATIENT,
        family_name=family,
        mrn=mrn,
        hourly_times=times,
        heart_rate=hr,
        resp_rate=rr,
        spo2=spo2,
        temp_f=temp_f,
        sbp=sbp,
        dbp=dbp,
        weight_times=weight_times,
        weight_lb=weight_lb,
        implausible_hr_time=times[20] + timedelta(minutes=5),
        kelvin_time=times[30] + timedelta(minutes=5),
        encounter_start=enc_start,
        encounter_end=enc_end,
        hp_text=HP_TEXT,
        progress_html=PROGRESS_HTML,
        progress_time=progress_time,
        observation_count=len(obs),
    )
    return bundle, planted


def entry_index(bundle: dict[str, Any], resource_id: str) -> int:
    """Index in Bundle.entry of the resource with this id."""
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"].get("id") == resource_id)


def _relative_references(node: Any, targets: dict[str, str]) -> Any:
    """Replace urn:uuid references by 'Type/id' (the form searchsets and Bulk Data use)."""
    if isinstance(node, dict):
        out = {k: _relative_references(v, targets) for k, v in node.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in targets:
            out["reference"] = targets[out["reference"]]
        return out
    if isinstance(node, list):
        return [_relative_references(v, targets) for v in node]
    return node


def _targets(bundle: dict[str, Any]) -> dict[str, str]:
    return {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}


def as_searchset(bundle: dict[str, Any], base: str = "http://example.org/fhir") -> dict[str, Any]:
    """The bundle as a FHIR server's search result: absolute fullUrls, relative references."""
    targets = _targets(bundle)
    entries = []
    for e in bundle["entry"]:
        res = _relative_references(e["resource"], targets)
        mode = "match" if res["resourceType"] == "Observation" else "include"
        entries.append({"fullUrl": f"{base}/{targets[e['fullUrl']]}", "resource": res, "search": {"mode": mode}})
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": "search ok"}],
    }
    entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries) - 1, "entry": entries}


def write_ndjson(bundle: dict[str, Any], folder: Path) -> list[Path]:
    """The bundle as a Bulk Data export: one <Type>.ndjson file per resource type."""
    targets = _targets(bundle)
    by_type: dict[str, list[str]] = {}
    for e in bundle["entry"]:
        res = _relative_references(e["resource"], targets)
        by_type.setdefault(res["resourceType"], []).append(json.dumps(res))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rtype, lines in sorted(by_type.items()):
        path = folder / f"{rtype}.ndjson"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def as_r5(bundle: dict[str, Any], *, tagged: bool = True) -> dict[str, Any]:
    """The bundle in R5 shapes (Encounter, DocumentReference, Procedure changed), optionally
    tagged with its FHIR version."""
    out = copy.deepcopy(bundle)
    for e in out["entry"]:
        res = e["resource"]
        kind = res["resourceType"]
        if kind == "Encounter":
            res["status"] = "completed"
            res["class"] = [{"coding": [res["class"]]}]
            res["actualPeriod"] = res.pop("period")
            res["participant"] = [{"actor": p["individual"]} for p in res["participant"]]
        elif kind == "DocumentReference":
            context = res.pop("context")
            res["context"] = context["encounter"]
            res["period"] = context["period"]
            for content in res["content"]:
                content.pop("format", None)
        elif kind == "Procedure":
            res["occurrencePeriod"] = res.pop("performedPeriod")
    if tagged:
        out["meta"] = {"tag": [{"system": "http://hl7.org/fhir/FHIR-version", "code": "5.0.0"}]}
    return out


# Small resources for focused tests.


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def collection(*resources: dict[str, Any], full_urls: dict[int, str] | None = None) -> dict[str, Any]:
    """A collection Bundle of `resources` (fullUrl of entry i from `full_urls[i]` when given)."""
    urls = full_urls or {}
    entries = [{"fullUrl": urls[i], "resource": r} if i in urls else {"resource": r} for i, r in enumerate(resources)]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def patient_resource(pid: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": "male",
        "birthDate": "1990-06-01",
        "identifier": [{"system": "http://hospital.example.org/mrn", "value": mrn}],
    }


def heart_rate(subject: dict[str, Any], minute: int, value: float = 80, unit: str = "/min") -> dict[str, Any]:
    """A heart-rate Observation at 2024-03-10T08:<minute>Z."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": subject,
        "effectiveDateTime": f"2024-03-10T08:{minute:02d}:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def document_reference(content_type: str, data: bytes | None = None, url: str | None = None) -> dict[str, Any]:
    """A DocumentReference with one attachment (inline bytes or a url)."""
    attachment: dict[str, Any] = {"contentType": content_type}
    if data is not None:
        attachment["data"] = base64.b64encode(data).decode("ascii")
    if url is not None:
        attachment["url"] = url
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/1"},
        "date": "2024-03-10T08:00:00Z",
        "content": [{"attachment": attachment}],
    }
