"""Hygiene on hand-written inputs: a Java-Synthea-like Bundle, HL7 examples, withdrawn conditions."""

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from medmm.codes import VITAL_SIGNS
from medmm.population import PopulationReport, bundles_to_bulk, iter_bulk_export, iter_bundle_folder
from medmm.population.hygiene import clean_patient
from medmm.population.samples import patient_samples
from medmm.tasks import load_task, task_from_dict

HL7 = Path(__file__).parents[1] / "io" / "data" / "hl7"  # official HL7 R4 example resources (CC0)
UTC = timezone.utc
NOTE = "2020-03-10\n\n# Chief Complaint\n- cough and fever\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def entry(resource):
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def obs(oid, code, value=None, unit="/min", when="2020-03-10T09:00:00Z", enc="e1", category="vital-signs", **extra):
    res = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "urn:uuid:p1"},
        "encounter": {"reference": f"urn:uuid:{enc}"},
        "effectiveDateTime": when,
        **extra,
    }
    if value is not None:
        res["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return res


def condition(cid, code, onset, verification="confirmed", clinical="active", system="http://snomed.info/sct"):
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "urn:uuid:p1"},
        "onsetDateTime": onset,
    }


def java_like_bundle():
    """One patient as Java Synthea writes it: each note twice, BP as a panel and separately, and so on."""
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1980-01-01"},
        {
            "resourceType": "Encounter",
            "id": "e0",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "urn:uuid:p1"},
            "period": {"start": "2020-01-05T08:00:00Z", "end": "2020-01-05T08:30:00Z"},
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "urn:uuid:p1"},
            "period": {"start": "2020-03-10T09:00:00Z", "end": "2020-03-10T09:30:00Z"},
        },
        {
            "resourceType": "Encounter",
            "id": "e2",
            "status": "finished",
            "class": {"code": "EMER"},
            "subject": {"reference": "urn:uuid:p1"},
            "period": {"start": "2020-03-12T10:00:00Z", "end": "2020-03-12T12:00:00Z"},
        },
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "subject": {"reference": "urn:uuid:p1"},
            "type": {"coding": [{"system": "http://loinc.org", "code": "34117-2"}]},
            "date": "2020-03-10T09:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64(NOTE)}}],
            "context": {"encounter": [{"reference": "urn:uuid:e1"}]},
        },
        {
            "resourceType": "DiagnosticReport",
            "id": "r1",
            "status": "final",
            "subject": {"reference": "urn:uuid:p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "34117-2"}]},
            "effectiveDateTime": "2020-03-10T09:00:00Z",
            "encounter": {"reference": "urn:uuid:e1"},
            "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": b64(NOTE)}],
        },
        obs(
            "bp",
            "85354-9",
            component=[
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "valueQuantity": {"value": 80, "unit": "mm[Hg]", "code": "mm[Hg]"},
                },
            ],
        ),
        obs("sbp-lab", "8480-6", 120, "mm[Hg]", category="laboratory"),
        obs("dbp-lab", "8462-4", 80, "mm[Hg]", category="laboratory"),
        obs("sbp-later", "8480-6", 140, "mm[Hg]", when="2020-03-10T09:20:00Z"),  # no panel then: counts
        obs("hr", "8867-4", 88),
        obs("hr-copy", "8867-4", 88),
        obs("temp", "8310-5", 101.3, "[degF]"),
        obs("rr-absent", "9279-1", dataAbsentReason={"coding": [{"code": "not-performed"}]}),
        obs("spo2-empty", "2708-6"),
        obs("hr-implausible", "8867-4", 900, when="2020-03-10T09:10:00Z"),
        condition("c-ok", "10509002", "2020-03-12T10:00:00Z"),
        condition("c-refuted", "233604007", "2020-03-12T10:00:00Z", verification="refuted"),
        condition("c-error", "444814009", "2020-03-12T10:00:00Z", verification="entered-in-error"),
        condition("c-icd", "J02.9", "2020-03-12T10:00:00Z", system="http://hl7.org/fhir/sid/icd-10-cm"),
        condition(
            "c-resolved",
            "J189",
            "2020-03-12T10:00:00Z",
            clinical="resolved",
            system="http://hl7.org/fhir/sid/icd-10-cm",
        ),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r) for r in resources]}


@pytest.fixture()
def bundle_dir(tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    (folder / "Pat_One_p1.json").write_text(json.dumps(java_like_bundle()))
    (folder / "hospitalInformation123.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [entry({"resourceType": "Organization", "id": "o1", "name": "General"})],
            }
        )
    )
    (folder / "broken.json").write_text("{not json")
    return folder


def test_java_like_bundle_hygiene(bundle_dir):
    report = PopulationReport()
    [record] = list(iter_bundle_folder(bundle_dir, report))
    clean = clean_patient(record, VITAL_SIGNS, report)
    assert [n.text for n in clean.notes] == [NOTE]  # DocumentReference and its DiagnosticReport copy: one note
    assert clean.notes[0].source_id == "DocumentReference/d1"
    got = sorted((r.channel, round(r.value, 3), r.time.minute) for r in clean.readings)
    assert got == [
        ("dbp", 80.0, 0),
        ("heart_rate", 88.0, 0),
        ("sbp", 120.0, 0),
        ("sbp", 140.0, 20),
        ("temperature", 38.5, 0),
    ]
    assert [(d.channel, d.reason) for d in clean.dropped] == [("heart_rate", "implausible: above 300 /min")]
    c = report.counts
    assert c["note: same text as another note; kept once"] == 1
    assert c["observation: duplicate (same code, time and encounter); kept once"] == 1
    assert c["blood pressure: separate systolic/diastolic at a panel's time; the panel's value used"] == 2
    assert c["observation: a dataAbsentReason; not used"] == 1
    assert c["observation: no value and no dataAbsentReason; not used"] == 1
    assert c["bundle: shared organisations/clinicians bundle skipped (no patient)"] == 1
    assert c["bundle: file is not readable JSON; skipped"] == 1


def test_withdrawn_conditions_never_count_and_icd_categories_match(bundle_dir):
    task = load_task("acute-respiratory-infection")
    report = PopulationReport()
    [record] = list(iter_bundle_folder(bundle_dir, report))
    samples = {s.index_source: s for s in patient_samples(task, record, report)}
    emer = samples["Encounter/e2"]
    # refuted pneumonia (SNOMED) and entered-in-error sinusitis never count; J02.9 matches J02; J189 matches J18
    assert dict(emer.labels) == {
        "acute_bronchitis": True,
        "pneumonia": True,
        "viral_sinusitis": False,
        "acute_viral_pharyngitis": True,
    }
    assert emer.label_evidence["pneumonia"] == ("Condition/c-resolved",)
    assert report.counts["label: condition refuted; never counts"] == 3  # once per sample (three visits)
    assert report.counts["label: condition entered-in-error; never counts"] == 3
    assert not any(samples["Encounter/e1"].labels.values())  # the day before: nothing yet
    ignore = task_from_dict({**_task_dict(task), "inactive_conditions": "ignore"})
    ignored = {s.index_source: s for s in patient_samples(ignore, record, PopulationReport())}
    assert ignored["Encounter/e2"].vitals.values.shape == (0, 7)  # no vitals window: no steps
    assert ignored["Encounter/e2"].labels["pneumonia"] is False  # resolved no longer counts


def _task_dict(task):
    return {
        "name": task.name,
        "index": {"kind": "encounter", "classes": list(task.index.classes)},
        "horizon": {"before_days": 0, "after_days": 0, "calendar_days": True},
        "labels": [{"name": s.name, "snomed": list(s.snomed), "icd10": list(s.icd10)} for s in task.labels],
    }


def test_window_excludes_the_index_and_per_encounter_steps(bundle_dir):
    task = load_task("acute-respiratory-infection")
    [record] = list(iter_bundle_folder(bundle_dir))
    samples = {s.index_source: s for s in patient_samples(task, record, PopulationReport())}
    at_note = samples["Encounter/e1"]
    assert at_note.notes == ()  # the note dated at the index does not leak in
    later = samples["Encounter/e2"]
    assert [n.text for n in later.notes] == [NOTE]
    assert later.vitals.step_sources == ("Encounter/e0", "Encounter/e1")
    row = dict(zip(later.vitals.channels, later.vitals.values[1]))
    assert row["sbp"] == pytest.approx(130.0) and row["dbp"] == pytest.approx(80.0) and row["heart_rate"] == 88.0
    assert not later.vitals.mask[0].any()


def test_bulk_conversion_of_the_hand_written_bundle(bundle_dir, tmp_path):
    (bundle_dir / "broken.json").unlink()
    counts = bundles_to_bulk(bundle_dir, tmp_path / "export", max_lines=3)
    assert counts["Observation"] == 10 and counts["Organization"] == 1
    assert len(list((tmp_path / "export").glob("Observation.*.ndjson"))) == 4
    report = PopulationReport()
    [from_bulk] = list(iter_bulk_export(tmp_path / "export", report))
    [from_bundle] = list(iter_bundle_folder(bundle_dir))
    assert from_bulk.resources == from_bundle.resources and from_bulk.patient == from_bundle.patient
    assert report.counts["resource: Organization not read (whole file)"] == 1


def test_bulk_reader_skips_bad_lines_and_keeps_the_rest(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    patients = [
        {"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1990-01-01"} for i in range(3)
    ]
    (export / "Patient.000.ndjson").write_text("\n".join(json.dumps(p) for p in patients[:2]) + "\nnot json\n")
    (export / "Patient.001.ndjson").write_text(
        json.dumps(patients[2]) + "\n" + json.dumps({"resourceType": "Patient", "id": "bad", "gender": 5}) + "\n"
    )
    hr = [obs(f"o{i}", "8867-4", 70 + i) for i in range(3)]
    for i, o in enumerate(hr):
        o["subject"] = {"reference": f"Patient/p{i}"}
        del o["encounter"]
    (export / "Observation.ndjson").write_text("\n".join(json.dumps(o) for o in reversed(hr)) + "\n")
    report = PopulationReport()
    records = list(iter_bulk_export(export, report))
    assert [r.patient_id for r in records] == ["p0", "p1", "p2"]
    assert [r.of("Observation")[0]["id"] for r in records] == ["o0", "o1", "o2"]
    assert report.counts["bulk: line is not JSON; skipped"] == 1
    assert sum(n for k, n in report.counts.items() if k.startswith("resource: invalid Patient")) == 1


def test_hl7_example_observations_parse(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(
        json.dumps(json.loads((HL7 / "hl7-patient-example.json").read_text())) + "\n"
    )
    lines = [json.dumps(json.loads(p.read_text())) for p in sorted(HL7.glob("hl7-observation-*.json"))]
    (export / "Observation.ndjson").write_text("\n".join(lines) + "\n")
    report = PopulationReport()
    [record] = list(iter_bulk_export(export, report))
    assert record.patient_id == "example" and len(record.of("Observation")) == len(lines)
    clean = clean_patient(record, VITAL_SIGNS, report)
    got = {(r.channel, r.value, r.time) for r in clean.readings}
    assert got == {
        ("sbp", 107.0, datetime(2012, 9, 17, tzinfo=UTC)),
        ("dbp", 60.0, datetime(2012, 9, 17, tzinfo=UTC)),
        ("temperature", 36.5, datetime(1999, 7, 2, tzinfo=UTC)),
        ("heart_rate", 44.0, datetime(1999, 7, 2, tzinfo=UTC)),
        ("resp_rate", 26.0, datetime(1999, 7, 2, tzinfo=UTC)),
        ("spo2", 95.0, datetime(2014, 12, 5, 8, 30, 10, tzinfo=UTC)),
    }
    assert clean.dropped == ()  # BMI is no channel: not read, not dropped
