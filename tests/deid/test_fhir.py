"""FHIR de-identification: what is removed, what is kept, and that the output still reads the same."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest

from medmm.deid.fhir import PSEUDONYMIZED, collect_identifiers, deidentify_fhir
from medmm.deid.mapping import PSEUDONYM_SYSTEM, Keys, PatientContext, PatientKey
from medmm.deid.text import Identifiers, Scrubber
from medmm.io.fhir import read_fhir
from tests.io.fhir_fixtures import PATIENT, STUDY_TIME, as_r5, as_searchset, synthea_bundle, write_json, write_ndjson

OFFSET = -1000


def context(found: Identifiers | None = None) -> PatientContext:
    keys = Keys("fhir-test")
    return PatientContext(keys, PatientKey("PTEST0000001", OFFSET, "orig"), Scrubber(found or Identifiers(), OFFSET))


def deid_files(paths: list[Path], out: Path) -> tuple[list[Path], PatientContext]:
    found, ids = Identifiers(), set()
    for p in paths:
        ids |= collect_identifiers(p, found)
    ctx = context(found)
    written = []
    for p in paths:
        outcome = deidentify_fhir(p, out / p.name, ctx, ids)
        assert outcome.refused is None
        written.append(out / p.name)
    return written, ctx


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("variant", ["transaction", "searchset", "ndjson", "r5"])
def test_synthea_bundle_reads_the_same_after_deidentification(variant, tmp_path):
    bundle, planted = synthea_bundle()
    if variant == "ndjson":
        paths = write_ndjson(bundle, tmp_path / "bulk")
    else:
        shaped = {"transaction": bundle, "searchset": as_searchset(bundle), "r5": as_r5(bundle)}[variant]
        paths = [write_json(tmp_path / "record.json", shaped)]
    written, ctx = deid_files(paths, tmp_path / "out")
    shift = timedelta(days=OFFSET)
    before = read_fhir(paths, study_time=STUDY_TIME)
    after = read_fhir(written, study_time=STUDY_TIME + shift)
    assert after.patient_id == "PTEST0000001" == after.demographics.patient_id
    for field in ("sex", "race", "ethnicity", "birth_sex"):
        assert getattr(after.demographics, field) == getattr(before.demographics, field)
    assert after.demographics.age_years == pytest.approx(before.demographics.age_years, abs=0.01)
    assert [(r.channel, r.value, r.time) for r in after.readings] == [
        (r.channel, r.value, r.time + shift) for r in before.readings
    ]
    assert [(lab.code, lab.onset) for lab in after.labels] == [(lab.code, lab.onset + shift) for lab in before.labels]
    assert [(n.text, n.time) for n in after.notes] == [(n.text, n.time + shift) for n in before.notes]
    text = "\n".join(p.read_text() for p in written)
    for value in (
        planted.mrn,
        planted.family_name,
        "Jacinda412",
        "555-201-3344",
        "12 Elm Street",
        "Zulauf375",
        PATIENT,
    ):
        assert value not in text


def test_references_are_replaced_consistently(tmp_path):
    pid = "3f2b3c1e-1111-4a4a-8b8b-123456789abc"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{pid}",
                "resource": {"resourceType": "Patient", "id": pid},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x|MRN-1"},
            },
            {
                "fullUrl": "http://ehr.example.org/fhir/Observation/o1",
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": f"urn:uuid:{pid}", "display": "Quixotica Zelwegger"},
                    "hasMember": [
                        {"reference": "Observation/o2"},
                        {"reference": "http://ehr.example.org/fhir/Observation/o2"},
                    ],
                    "performer": [
                        {"reference": "Practitioner?identifier=npi|123"},
                        {"reference": "Patient?identifier=mrn|MRN-1"},
                    ],
                    "specimen": {"reference": "#s1"},
                    "contained": [{"resourceType": "Specimen", "id": "s1"}],
                },
                "request": {"method": "PUT", "url": "Observation/o1"},
            },
        ],
    }
    src = write_json(tmp_path / "b.json", bundle)
    ctx = context()
    outcome = deidentify_fhir(src, tmp_path / "o.json", ctx, {pid})
    out = json.loads((tmp_path / "o.json").read_text())
    patient_entry, obs_entry = out["entry"]
    new_pid_url = f"urn:uuid:{ctx.keys.fhir_id(pid)}"
    assert patient_entry["fullUrl"] == new_pid_url and patient_entry["resource"]["id"] == "PTEST0000001"
    assert patient_entry["request"] == {"method": "POST", "url": "Patient"}  # the conditional query is gone
    obs = obs_entry["resource"]
    o2 = f"Observation/{ctx.keys.fhir_id('o2')}"
    assert obs["id"] == ctx.keys.fhir_id("o1") and obs_entry["request"]["url"] == f"Observation/{obs['id']}"
    assert obs["subject"] == {"reference": new_pid_url}  # display removed
    assert obs["hasMember"] == [{"reference": o2}, {"reference": o2}]  # absolute made relative
    assert obs["performer"] == [{"reference": "Patient/PTEST0000001"}]  # a search by identifier cannot stay
    assert obs["specimen"] == {"reference": "#s1"} and obs["contained"][0]["id"] == "s1"
    assert [i.message for i in outcome.issues] == ["search reference cannot be kept; removed"]


def test_patient_people_and_places_are_cut_down(tmp_path):
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "gender": "female",
        "birthDate": "1961",
        "name": [{"family": "Zelwegger"}],
        "photo": [{"data": b64("img")}],
        "maritalStatus": {"text": "M"},
        "extension": [
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Sydneyville"},
            },
        ],
        "meta": {
            "source": "http://ehr.example.org/node7",
            "lastUpdated": "2023-03-01T00:00:00Z",
            "security": [{"code": "PSEUDED"}],
        },
    }
    org = {"resourceType": "Organization", "id": "org", "name": "St Elsewhere General", "telecom": [{"value": "1"}]}
    src = write_json(
        tmp_path / "b.json",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}, {"resource": org}]},
    )
    deidentify_fhir(src, tmp_path / "o.json", context(), {"p"})
    p, o = (e["resource"] for e in json.loads((tmp_path / "o.json").read_text())["entry"])
    assert p["birthDate"] == "1958"  # 1961-01-01 less 1000 days is in 1958; a year stays a year
    assert p["identifier"] == [{"system": PSEUDONYM_SYSTEM, "value": "PTEST0000001"}]
    assert [e["url"].rsplit("/", 1)[-1] for e in p["extension"]] == ["us-core-birthsex"]
    assert "name" not in p and "photo" not in p and p["maritalStatus"] == {"text": "M"}
    assert p["meta"] == {"lastUpdated": "2020-06-04T00:00:00Z", "security": [PSEUDONYMIZED]}
    assert o == {
        "resourceType": "Organization",
        "id": Keys("fhir-test").fhir_id("org"),
        "meta": {"security": [PSEUDONYMIZED]},
    }


def test_free_text_scrubbed_attachments_rewritten_narrative_dropped(tmp_path):
    found = Identifiers()
    found.add_name("Quixotica Zelwegger")
    found.add_id("MRN-884211")
    note = "Quixotica seen 2023-03-16, MRN 884211."
    composition = {
        "resourceType": "Composition",
        "id": "c",
        "status": "final",
        "type": {"text": "note"},
        "date": "2023-03-16",
        "title": "Note about Zelwegger",
        "text": {"status": "generated", "div": "<div>Quixotica Zelwegger</div>"},
        "section": [{"text": {"status": "additional", "div": "<div>Zelwegger has cough</div>"}}],
    }
    doc = {
        "resourceType": "DocumentReference",
        "id": "d",
        "status": "current",
        "content": [
            {"attachment": {"contentType": "text/plain", "data": b64(note), "hash": "abc", "size": 3}},
            {"attachment": {"contentType": "image/png", "data": b64("png"), "url": "https://ehr.example.org/doc.png"}},
            {"attachment": {"contentType": "text/plain", "url": "Binary/b1"}},
        ],
    }
    binary = {"resourceType": "Binary", "id": "b1", "contentType": "text/plain", "data": b64("for Zelwegger")}
    src = write_json(
        tmp_path / "b.json",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in (composition, doc, binary)],
        },
    )
    outcome = deidentify_fhir(src, tmp_path / "o.json", context(found), set())
    c, d, b = (e["resource"] for e in json.loads((tmp_path / "o.json").read_text())["entry"])
    assert "text" not in c and c["title"] == "Note about [NAME]" and c["date"] == "2020-06-19"
    assert c["section"][0]["text"]["div"] == "<div>[NAME] has cough</div>"
    text_att, image_att, linked = (content["attachment"] for content in d["content"])
    expected = "[NAME] seen 2020-06-19, [ID]."
    assert base64.b64decode(text_att["data"]).decode() == expected
    assert text_att["size"] == len(expected.encode()) and "hash" not in text_att
    assert image_att == {"contentType": "image/png"}  # cannot be read, so neither data nor its url stay
    assert linked["url"] == f"Binary/{Keys('fhir-test').fhir_id('b1')}"
    assert base64.b64decode(b["data"]).decode() == "for [NAME]"
    assert outcome.counts["non-text attachment removed"] == 1 and outcome.counts["narrative removed"] == 1


def test_dates_in_any_form_and_unreadable_ones(tmp_path):
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "x"},
        "effectivePeriod": {"start": "2023-03-16T10:00:00+01:00", "end": "2023-03"},
        "issued": "2023-03-16T10:00:00.123Z",
        "note": [{"time": "2023-03-16T10:00:00Z", "text": "ok"}],
        "valueString": "2023-03-16T10:00:00Z",
        "extension": [{"url": "x", "valueDate": "sometime"}],
    }
    src = write_json(tmp_path / "o.json", obs)
    outcome = deidentify_fhir(src, tmp_path / "out.json", context(), set())
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["effectivePeriod"] == {"start": "2020-06-19T10:00:00+01:00", "end": "2020-06"}  # 2023-03-01 - 1000 d
    assert out["issued"] == "2020-06-19T10:00:00.123Z" and out["note"][0]["time"] == "2020-06-19T10:00:00Z"
    assert out["valueString"] == "2020-06-19T10:00:00Z"  # a full date-time is a date whatever its key
    assert out["extension"] == [{"url": "x"}]
    assert [i.where for i in outcome.issues] == ["valueDate"]


def test_files_that_are_not_fhir_are_refused(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({"name": "Zelwegger"}))
    assert deidentify_fhir(tmp_path / "a.json", tmp_path / "o1.json", context(), set()).refused.startswith(
        "not readable"
    )
    assert "no resourceType" in deidentify_fhir(tmp_path / "b.json", tmp_path / "o2.json", context(), set()).refused
    assert not (tmp_path / "o1.json").exists() and not (tmp_path / "o2.json").exists()


def test_identifiers_collected_from_the_record(tmp_path):
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"value": "MRN-884211"}],
        "name": [{"family": "Zelwegger", "given": ["Quixotica"], "text": "Quixotica Zelwegger"}],
        "telecom": [{"value": "617-555-0199"}],
        "address": [{"line": ["42 Wallaby Way"], "city": "Sydneyville"}],
        "contact": [{"name": {"family": "Roebuckle"}}],
    }
    enc = {
        "resourceType": "Encounter",
        "id": "e",
        "participant": [{"individual": {"reference": "Practitioner/x", "display": "Dr Gregory Housington"}}],
    }
    org = {"resourceType": "Organization", "id": "o", "name": "St Elsewhere General"}
    src = write_json(
        tmp_path / "b.json",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in (patient, enc, org)]},
    )
    found = Identifiers()
    assert collect_identifiers(src, found) == {"p1"}
    assert found.names == {"Zelwegger", "Quixotica", "Roebuckle", "Gregory", "Housington"}
    assert found.ids == {"MRN-884211", "884211"} and found.contacts == {"617-555-0199"}
    assert found.addresses == {"42 Wallaby Way", "Sydneyville", "St Elsewhere General"}


def test_every_kind_of_identifier_element_is_removed(tmp_path):
    doc = {
        "resourceType": "DocumentReference",
        "id": "d",
        "status": "current",
        "masterIdentifier": {"value": "DOC-1"},
        "identifier": [{"value": "DOC-2"}],
        "context": {"related": [{"identifier": {"value": "DOC-3"}}]},
    }
    specimen = {"resourceType": "Specimen", "id": "s", "accessionIdentifier": {"value": "ACC-4"}}
    src = write_json(
        tmp_path / "b.json",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": doc}, {"resource": specimen}]},
    )
    deidentify_fhir(src, tmp_path / "o.json", context(), set())
    text = (tmp_path / "o.json").read_text()
    assert not any(value in text for value in ("DOC-1", "DOC-2", "DOC-3", "ACC-4"))
    assert "dentifier" not in text


def test_a_shape_fhir_does_not_allow_is_refused_not_written(tmp_path):
    src = write_json(tmp_path / "p.json", {"resourceType": "Patient", "id": "p", "extension": 5})
    outcome = deidentify_fhir(src, tmp_path / "o.json", context(), {"p"})
    assert outcome.refused.startswith("could not be de-identified") and not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("charset", ["rot13", "hex", "zlib", "punycode", "unicode_escape"])
def test_an_attachment_whose_charset_is_a_codec_is_removed_not_decoded(charset, tmp_path):
    # found by the ingest fuzzer: bytes.decode refuses such codecs with LookupError or UnicodeError
    doc = {
        "resourceType": "DocumentReference",
        "id": "d",
        "status": "current",
        "content": [
            {"attachment": {"contentType": f"text/plain; charset={charset}", "data": b64("Zelwegger")}},
            {"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64("cough")}},
        ],
    }
    outcome = deidentify_fhir(write_json(tmp_path / "d.json", doc), tmp_path / "o.json", context(), set())
    coded, plain = (c["attachment"] for c in json.loads((tmp_path / "o.json").read_text())["content"])
    assert "data" not in coded and base64.b64decode(plain["data"]).decode() == "cough"
    assert outcome.counts["unreadable attachment removed"] == 1 and outcome.counts["text attachment scrubbed"] == 1
