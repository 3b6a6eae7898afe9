from __future__ import annotations

import json
from collections import Counter

from medmm.codes import (
    BP_PANEL_LOINC,
    ICD10,
    NOTE_TYPES,
    OBS_CATEGORY,
    SNOMED,
    US_CORE_BIRTHSEX,
    US_CORE_ETHNICITY,
    US_CORE_RACE,
    vital_for_code,
)
from medmm.io.units import implausible_reason, to_canonical
from medmm.synth.diagnoses import DIAGNOSES


def resources(raw, kind):
    return [e["resource"] for e in raw["entry"] if e["resource"]["resourceType"] == kind]


def test_every_bundle_validates_and_uses_urn_uuid_full_urls(bundles):
    types = Counter()
    for pid, (bundle, raw, _) in bundles.items():
        types[bundle.type] += 1
        ids = set()
        for entry in raw["entry"]:
            assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"
            ids.add(entry["resource"]["id"])
            if bundle.type == "transaction":
                assert entry["request"] == {"method": "POST", "url": entry["resource"]["resourceType"]}
        for entry in raw["entry"]:  # every reference resolves inside the bundle
            text = json.dumps(entry["resource"])
            for ref in (p.split('"')[0] for p in text.split('"reference": "urn:uuid:')[1:]):
                assert ref in ids
    assert set(types) == {"collection", "transaction"}


def test_patient_demographics_and_us_core_extensions(bundles):
    for pid, (_, raw, truth) in bundles.items():
        (patient,) = resources(raw, "Patient")
        demo = truth["demographics"]
        assert patient["identifier"][0]["value"] == pid
        assert patient["gender"] == demo["sex"] and patient["birthDate"] == demo["birth_date"]
        ext = {e["url"]: e for e in patient["extension"]}
        race = {e["url"]: e for e in ext[US_CORE_RACE]["extension"]}
        assert race["ombCategory"]["valueCoding"]["code"] == demo["race"]
        assert race["text"]["valueString"] == demo["race_display"]
        eth = {e["url"]: e for e in ext[US_CORE_ETHNICITY]["extension"]}
        assert eth["ombCategory"]["valueCoding"]["code"] == demo["ethnicity"]
        assert ext[US_CORE_BIRTHSEX]["valueCode"] == demo["birth_sex"]


def test_conditions_code_exactly_the_labels_in_snomed_and_icd10(bundles):
    by_name = {d.name: d for d in DIAGNOSES}
    for _, (_, raw, truth) in bundles.items():
        coded = []
        for cond in resources(raw, "Condition"):
            codings = {c["system"]: c["code"] for c in cond["code"]["coding"]}
            d = next(d for d in DIAGNOSES if d.snomed == codings[SNOMED])
            assert codings[ICD10] == d.icd10
            coded.append(d.name)
        assert sorted(coded) == sorted(truth["labels"])
        assert all(n in by_name for n in coded)
        (encounter,) = resources(raw, "Encounter")
        assert encounter["period"]["start"] < truth["study_time"] < encounter["period"]["end"]


def test_notes_are_base64_text_of_the_known_types(bundles):
    kinds = Counter()
    for _, (bundle, raw, truth) in bundles.items():
        assert len(truth["notes"]) in (0, 1, 2, 3)
        refs = {f"{e.resource.__resource_type__}/{e.resource.id}": e.resource for e in bundle.entry}
        for note in truth["notes"]:
            res = refs[note["reference"]]
            kinds[res.__resource_type__] += 1
            if res.__resource_type__ == "DiagnosticReport":
                att, code = res.presentedForm[0], res.code.coding[0].code
            else:
                att, code = res.content[0].attachment, res.type.coding[0].code
            assert att.contentType == "text/plain" and code == note["type"] and code in NOTE_TYPES
            assert len(att.data.decode("utf-8")) == note["characters"]  # fhir.resources decodes base64
    assert set(kinds) == {"DiagnosticReport", "DocumentReference"}


def test_fhir_vitals_are_plausible_after_unit_conversion(bundles):
    units, patients = Counter(), 0
    for pid, (_, raw, truth) in bundles.items():
        obs = resources(raw, "Observation")
        if not obs:
            assert (truth["vitals"] or {}).get("source") != "fhir"
            continue
        patients += 1
        assert truth["vitals"]["source"] == "fhir"
        for o in obs:
            assert o["category"][0]["coding"][0] == {
                "system": OBS_CATEGORY,
                "code": "vital-signs",
                "display": "Vital Signs",
            }
            code = o["code"]["coding"][0]["code"]
            if code == BP_PANEL_LOINC:
                parts = [(c["code"]["coding"][0]["code"], c["valueQuantity"]) for c in o["component"]]
                assert parts and {p for p, _ in parts} <= {"8480-6", "8462-4"} and "valueQuantity" not in o
            else:
                parts = [(code, o["valueQuantity"])]
            for part_code, q in parts:
                vital = vital_for_code(part_code)
                value = to_canonical(q["value"], q["code"], vital, source="record.json", where=o["id"])
                assert implausible_reason(value, vital) is None
                units[q["code"]] += 1
    assert patients > 0
    assert {"[degF]", "[lb_av]", "Cel", "kg", "mm[Hg]", "%", "/min"} <= set(units)
