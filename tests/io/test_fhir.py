"""Tests for FHIR ingest: a Synthea-like US Core bundle in every shape medmm accepts, checked
against the values planted in it (conversions worked out by hand)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.R4B.bundle import Bundle as BundleR4B

from medmm.errors import FhirError
from medmm.io.fhir import FhirRecord, age_at, read_fhir
from medmm.io.fhir_load import version_hint
from tests.io.fhir_fixtures import (
    HOURS,
    PROGRESS_TEXT,
    STUDY_TIME,
    Planted,
    as_r5,
    as_searchset,
    collection,
    entry_index,
    heart_rate,
    patient_resource,
    synthea_bundle,
    uid,
    write_json,
    write_ndjson,
)

UTC = timezone.utc
LB_TO_KG = 0.45359237  # exact, by definition of the avoirdupois pound


def channel(record: FhirRecord, name: str) -> list[tuple[datetime, float]]:
    return [(r.time, r.value) for r in record.readings if r.channel == name]


@pytest.fixture(scope="module")
def synthea() -> tuple[dict[str, Any], Planted]:
    return synthea_bundle()


def test_fixture_bundles_are_valid_fhir(synthea):
    bundle, planted = synthea
    assert BundleR4B.model_validate(bundle).type == "transaction"
    assert BundleR4B.model_validate(as_searchset(bundle)).type == "searchset"
    assert BundleR5.model_validate(as_r5(bundle)).type == "transaction"
    assert planted.observation_count >= 250


def _read_variant(variant: str, bundle: dict[str, Any], tmp_path: Path) -> FhirRecord:
    if variant == "ndjson":
        return read_fhir(write_ndjson(bundle, tmp_path / "bulk"), study_time=STUDY_TIME)
    shaped = {
        "transaction": bundle,
        "r5": as_r5(bundle),
        "r5-untagged": as_r5(bundle, tagged=False),
        "searchset": as_searchset(bundle),
    }[variant]
    return read_fhir(write_json(tmp_path / "record.json", shaped), study_time=STUDY_TIME)


@pytest.mark.parametrize("variant", ["transaction", "r5", "r5-untagged", "searchset", "ndjson"])
def test_synthea_bundle_every_value(variant, synthea, tmp_path):
    bundle, p = synthea
    record = _read_variant(variant, bundle, tmp_path)

    assert record.patient_id == p.patient_id
    demo = record.demographics
    assert (demo.patient_id, demo.sex, demo.birth_date) == (p.patient_id, "female", "1958-03-14")
    assert (demo.race, demo.ethnicity, demo.birth_sex) == ("2054-5", "2186-5", "F")
    # 2023-03-14 -> 2024-03-10 is 362 days of a 366-day year of life (it holds 29 Feb 2024).
    assert demo.age_years == pytest.approx(65 + 362 / 366)

    times = p.hourly_times
    assert channel(record, "heart_rate") == [(t, float(v)) for t, v in zip(times, p.heart_rate)]
    assert channel(record, "resp_rate") == [(t, float(v)) for t, v in zip(times, p.resp_rate)]
    assert channel(record, "spo2") == [(t, float(v)) for t, v in zip(times, p.spo2)]
    assert channel(record, "sbp") == [(t, float(v)) for t, v in zip(times, p.sbp)]
    assert channel(record, "dbp") == [(t, float(v)) for t, v in zip(times, p.dbp)]
    temps = channel(record, "temperature")
    assert [t for t, _ in temps] == list(times)
    assert [v for _, v in temps] == pytest.approx([(f - 32) * 5 / 9 for f in p.temp_f])
    assert dict(temps)[times[8]] == pytest.approx(37.0)  # 98.6 degF
    weights = channel(record, "weight")
    assert [t for t, _ in weights] == list(p.weight_times)
    assert [v for _, v in weights] == pytest.approx([lb * LB_TO_KG for lb in p.weight_lb])
    assert weights[0][1] == pytest.approx(69.853, abs=5e-4)  # 154 lb
    assert len(record.readings) == 6 * HOURS + 3
    assert {r.channel: r.unit for r in record.readings} == {
        "heart_rate": "/min",
        "resp_rate": "/min",
        "spo2": "%",
        "temperature": "Cel",
        "sbp": "mm[Hg]",
        "dbp": "mm[Hg]",
        "weight": "kg",
    }
    assert times[0] == datetime(2024, 3, 8, 12, 10, tzinfo=UTC)  # written as 07:10-05:00

    dropped = sorted(record.dropped, key=lambda d: d.time)
    assert [(d.channel, d.time) for d in dropped] == [
        ("heart_rate", p.implausible_hr_time),
        ("temperature", p.kelvin_time),
    ]
    assert dropped[0].reason == "implausible: above 300 /min"
    assert dropped[1].reason.startswith("unknown unit 'K'")
    unit_issues = [i for i in record.issues if "unknown unit" in i.message]
    assert len(unit_issues) == 1 and unit_issues[0].kind == "dropped"
    if variant in ("transaction", "r5"):
        assert unit_issues[0].where == f"entry {entry_index(bundle, uid('temp-kelvin'))} (Observation)"

    assert [n.text for n in record.notes] == [p.hp_text, PROGRESS_TEXT]
    assert [n.time for n in record.notes] == [p.encounter_start, p.progress_time]
    assert [n.type_code for n in record.notes] == ["34117-2", "11506-3"]
    assert [n.type_display for n in record.notes] == ["History and physical note", "Progress note"]

    labels = {(lab.system, lab.code): lab for lab in record.labels}
    assert set(labels) == {
        ("http://snomed.info/sct", "233604007"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "J90"),
        ("http://snomed.info/sct", "444814009"),
    }
    assert labels[("http://snomed.info/sct", "233604007")].name == "pneumonia"
    assert labels[("http://snomed.info/sct", "233604007")].onset == p.encounter_start
    assert labels[("http://hl7.org/fhir/sid/icd-10-cm", "J90")].name == "pleural_effusion"
    assert labels[("http://hl7.org/fhir/sid/icd-10-cm", "J90")].onset == p.encounter_start + timedelta(hours=3)
    assert labels[("http://snomed.info/sct", "444814009")].name is None
    assert {lab.status for lab in record.labels} == {"active"}
    assert any("refuted" in i.message and i.kind == "skipped" for i in record.issues)

    counts = record.resource_counts
    assert counts["Observation"] == p.observation_count
    assert (counts["Patient"], counts["Encounter"], counts["Condition"]) == (1, 1, 4)
    assert (counts["DiagnosticReport"], counts["DocumentReference"], counts["Practitioner"]) == (2, 2, 1)
    assert record.last_time == p.progress_time

    shown = " ".join(str(i) for i in record.issues)
    for private in (p.family_name, p.mrn, "Jacinda412", "Zulauf375", "crackles", "Febrile"):
        assert private not in shown


def test_encounter_end_is_last_time_when_it_is_latest(synthea, tmp_path):
    bundle, p = synthea
    for shaped in (bundle, as_r5(bundle, tagged=False)):
        kept = [e for e in shaped["entry"] if e["resource"]["resourceType"] != "DocumentReference"]
        trimmed = dict(shaped, entry=kept)
        record = read_fhir(write_json(tmp_path / "b.json", trimmed))
        assert record.last_time == p.encounter_end
        assert record.demographics.age_years is None  # no study time given


def test_invalid_entries_are_reported_and_the_rest_is_used(synthea, tmp_path):
    bundle = copy.deepcopy(synthea[0])
    hr_index = entry_index(bundle, uid("hr5"))
    bp_index = entry_index(bundle, uid("bp7"))
    bundle["entry"][hr_index]["resource"]["valueQuantity"]["value"] = "abc"
    bundle["entry"][bp_index]["resource"]["component"][1]["valueQuantity"]["value"] = "x"
    # A laboratory result is counted, not read, so its fault is not medmm's to report.
    bundle["entry"][entry_index(bundle, uid("glu3"))]["resource"]["valueQuantity"]["value"] = "x"
    record = read_fhir(write_json(tmp_path / "b.json", bundle))
    skipped = [i for i in record.issues if i.kind == "skipped" and "expected" in i.message]
    assert [(i.where, i.message) for i in skipped] == [
        (f"entry {hr_index} (Observation)", "field valueQuantity.value: expected a number"),
        (f"entry {bp_index} (Observation)", "field component[1].valueQuantity.value: expected a number"),
    ]
    expected = f"{tmp_path / 'b.json'}: entry {hr_index} (Observation): field valueQuantity.value: expected a number"
    assert str(skipped[0]) == expected
    p = synthea[1]
    assert len(channel(record, "heart_rate")) == HOURS - 1
    assert p.hourly_times[5] not in dict(channel(record, "heart_rate"))
    assert len(channel(record, "sbp")) == len(channel(record, "dbp")) == HOURS - 1
    assert len(channel(record, "resp_rate")) == HOURS and len(record.notes) == 2


def test_invalid_patient_keeps_attribution(synthea, tmp_path):
    bundle = copy.deepcopy(synthea[0])
    bundle["entry"][0]["resource"]["birthDate"] = "1958-02-30"
    record = read_fhir(write_json(tmp_path / "b.json", bundle))
    assert record.demographics is None
    assert record.patient_id == synthea[1].patient_id
    assert len(record.readings) == 6 * HOURS + 3
    assert any(i.where == "entry 0 (Patient)" and i.message.startswith("field birthDate:") for i in record.issues)


@pytest.mark.parametrize(
    "content, name, where",
    [
        ("{not json", "bad.json", "line 1"),
        ('\n\n{"resourceType": "Observation", oops}\n', "Observation.ndjson", "line 3"),
        ("", "empty.json", "line 1"),
    ],
)
def test_non_json_names_file_and_line(content, name, where, tmp_path):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FhirError) as caught:
        read_fhir(path)
    assert caught.value.path == str(path) and caught.value.where == where
    assert str(path) in str(caught.value) and "not JSON" in str(caught.value)


def test_a_bad_ndjson_line_is_skipped_and_the_other_lines_read(tmp_path):
    path = tmp_path / "Observation.ndjson"
    lines = [
        patient_resource("1", "M1"),
        '{"resourceType": "Observation", oops}',
        [],
        heart_rate({"reference": "Patient/1"}, 4),
    ]
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    record = read_fhir(path)
    assert record.patient_id == "1" and [(r.time.minute, r.value) for r in record.readings] == [(4, 80.0)]
    assert [(i.source, i.where, i.kind) for i in record.issues] == [
        (str(path), "line 2", "skipped"),
        (str(path), "line 3", "skipped"),
    ]
    assert record.issues[0].message.startswith("not JSON") and "found an array" in record.issues[1].message


@pytest.mark.parametrize(
    "obj, expected",
    [
        ([{"resourceType": "Patient"}], "found an array"),
        ({"name": "a dict that is not FHIR"}, "expected a resourceType"),
        ({"resourceType": "NotAResource"}, "not a FHIR resource type"),
        ("just a string", "found a str"),
    ],
)
def test_json_that_is_not_fhir(obj, expected, tmp_path):
    path = write_json(tmp_path / "x.json", obj)
    with pytest.raises(FhirError, match=expected) as caught:
        read_fhir(path)
    assert caught.value.path == str(path)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(FhirError, match="file not found"):
        read_fhir(tmp_path / "absent.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"resourceType": "Patient", "gender": "f\u00e9"}'.encode("latin-1"))
    with pytest.raises(FhirError, match="not UTF-8"):
        read_fhir(bad)


MRN = "http://hospital.example.org/mrn"


def test_reference_forms_resolve_to_the_patient(tmp_path):
    forms = {
        0: {"reference": "urn:uuid:0b5a1f9e-57e4-4c1e-9a0e-8d7c6b5a4f3e"},
        1: {"reference": "Patient/123"},
        2: {"reference": "http://example.org/fhir/Patient/123"},
        3: {"reference": f"Patient?identifier={MRN}|MRN-0042"},
        4: {"identifier": {"system": MRN, "value": "MRN-0042"}, "type": "Patient"},
        5: {"reference": "Patient/123/_history/2"},
    }
    bundle = collection(
        patient_resource("123", "MRN-0042"),
        patient_resource("456", "MRN-0099"),
        *(heart_rate(ref, minute) for minute, ref in forms.items()),
        heart_rate({"reference": "Patient/456"}, 30),
        heart_rate({"reference": "Patient/999"}, 31),
        full_urls={0: forms[0]["reference"], 1: "urn:uuid:11111111-2222-4333-8444-555555555555"},
    )
    path = write_json(tmp_path / "refs.json", bundle)
    for chosen in ("123", "MRN-0042"):
        record = read_fhir(path, patient_id=chosen)
        assert [r.time.minute for r in record.readings] == list(forms)
        assert record.demographics.patient_id == chosen and record.demographics.sex == "male"
        assert any(i.message == "1 resource(s) about other patients not used" for i in record.issues)
        assert any(i.where == "entry 9 (Observation)" and "does not resolve" in i.message for i in record.issues)
    other = read_fhir(path, patient_id="456")
    assert [r.time.minute for r in other.readings] == [30]
    with pytest.raises(FhirError, match="2 Patients") as caught:
        read_fhir(path)
    assert "123" not in str(caught.value) and "MRN" not in str(caught.value)
    with pytest.raises(FhirError, match="no Patient among 2"):
        read_fhir(path, patient_id="nobody")


def test_absolute_full_urls_and_unresolved_conditional_reference(tmp_path):
    base = "http://example.org/fhir"
    bundle = collection(
        patient_resource("123", "MRN-0042"),
        heart_rate({"reference": f"{base}/Patient/123"}, 1),
        heart_rate({"reference": "Patient?identifier=x|y"}, 2),  # matches nothing
        heart_rate({"reference": "Patient?name=smith"}, 3),  # a search medmm does not run
        full_urls={0: f"{base}/Patient/123", 1: f"{base}/Observation/a"},
    )
    record = read_fhir(write_json(tmp_path / "b.json", dict(bundle, type="searchset")))
    assert [r.time.minute for r in record.readings] == [1]
    unresolved = [i.where for i in record.issues if "does not resolve" in i.message]
    assert unresolved == ["entry 2 (Observation)", "entry 3 (Observation)"]


def test_unknown_unit_is_dropped_and_reported(tmp_path):
    subject = {"reference": "Patient/1"}
    units = ("furlongs/fortnight", "kg", "{beats}/min")
    obs = [heart_rate(subject, minute, 72, unit) for minute, unit in enumerate(units)]
    paths = [write_json(tmp_path / "Patient.json", patient_resource("1", "M1")), tmp_path / "Observation.ndjson"]
    paths[1].write_text("\n".join(json.dumps(o) for o in obs))
    record = read_fhir(paths)
    assert [(r.channel, r.value, r.unit) for r in record.readings] == [("heart_rate", 72.0, "/min")]
    assert [d.reason for d in record.dropped] == [
        "unknown unit 'furlongs/fortnight' for heart_rate (expected /min or a convertible unit)",
        "unit kg cannot be converted to /min for heart_rate",
    ]
    assert [(i.where, i.kind) for i in record.issues] == [
        ("line 1 (Observation)", "dropped"),
        ("line 2 (Observation)", "dropped"),
    ]


def test_naive_times_are_utc_and_reported_once_per_file(tmp_path):
    obs = [heart_rate({"reference": "Patient/1"}, m) for m in (0, 1)]
    obs[0]["effectiveDateTime"], obs[1]["effectiveDateTime"] = "2024-03-10T08:00:00", "2024-03-10T09:30"
    record = read_fhir(write_json(tmp_path / "b.json", collection(*obs)))
    assert record.patient_id == "1" and record.demographics is None
    expected = [datetime(2024, 3, 10, 8, 0, tzinfo=UTC), datetime(2024, 3, 10, 9, 30, tzinfo=UTC)]
    assert [r.time for r in record.readings] == expected
    assert [i.message for i in record.issues] == ["2 date-time value(s) without a time zone taken as UTC"]


def test_file_forms_merge_and_duplicate_patients(tmp_path):
    import gzip

    subject = {"reference": "Patient/1"}
    first = write_json(tmp_path / "a.json", collection(patient_resource("1", "M1"), heart_rate(subject, 0)))
    second = write_json(tmp_path / "b.json", collection(patient_resource("1", "M1"), heart_rate(subject, 1)))
    lines = "\n".join(json.dumps(heart_rate(subject, m)) for m in (2, 3))
    (tmp_path / "bulk").mkdir()
    (tmp_path / "bulk" / "Observation.ndjson.gz").write_bytes(gzip.compress(lines.encode()))
    two_lines = json.dumps(heart_rate(subject, 4)) + "\n" + json.dumps(heart_rate(subject, 5))
    (tmp_path / "ndjson-named.json").write_text(two_lines)
    record = read_fhir([first, second, tmp_path / "bulk", tmp_path / "ndjson-named.json"])
    assert record.patient_id == "1" and record.demographics.birth_date == "1990-06-01"
    assert [r.time.minute for r in record.readings] == [0, 1, 2, 3, 4, 5]
    assert record.resource_counts == {"Observation": 6, "Patient": 2}
    assert record.issues == ()
    with pytest.raises(FhirError, match="no FHIR file given"):
        read_fhir([])


def _condition(code: str, system: str, verification: str | None = None, **extra: Any) -> dict[str, Any]:
    out = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }
    if verification:
        out["verificationStatus"] = {"coding": [{"code": verification}]}
    return out


def test_condition_rules(tmp_path):
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    bundle = collection(
        _condition("J18.1", icd, onsetPeriod={"start": "2024-01-02"}),
        _condition("A41.9", icd, "entered-in-error"),
        _condition("36118008", "http://snomed.info/sct", "provisional", onsetDateTime="2024-02"),
        _condition("LOCAL-7", "http://example.org/local"),
    )
    record = read_fhir(write_json(tmp_path / "c.json", bundle))
    assert [(lab.code, lab.name, lab.onset) for lab in record.labels] == [
        ("J18.1", "pneumonia", datetime(2024, 1, 2, tzinfo=UTC)),
        ("36118008", "pneumothorax", datetime(2024, 2, 1, tzinfo=UTC)),
        ("LOCAL-7", None, None),
    ]
    assert [(i.where, i.kind) for i in record.issues if i.where] == [("entry 1 (Condition)", "skipped")]
    assert any(i.message == "2 date value(s) without a time of day taken as 00:00 UTC" for i in record.issues)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"code": None}, "field code: required but missing"),
        ({"colour": "zz-private"}, "field colour: not an element of this type"),
        ({"valueString": "80"}, "expected only one value[x] element"),
        ({"effectiveDateTime": "2024-13-45"}, "field effectiveDateTime: expected a FHIR dateTime (YYYY, "),
        ({"status": ["final"]}, "field status: expected a string"),
        ({"code": {"coding": {"code": "8867-4"}}}, "field code.coding: expected a list"),
    ],
)
def test_validation_messages_name_the_field_never_the_value(change, message, tmp_path):
    obs = heart_rate({"reference": "Patient/1"}, 0)
    obs.update(change)
    obs = {k: v for k, v in obs.items() if v is not None}
    record = read_fhir(write_json(tmp_path / "b.json", collection(heart_rate({"reference": "Patient/1"}, 1), obs)))
    (issue,) = [i for i in record.issues if i.kind == "skipped"]
    assert issue.where == "entry 1 (Observation)" and issue.message.startswith(message.split(":")[0])
    assert message in issue.message
    assert "zz-private" not in issue.message and "13-45" not in issue.message
    assert [r.time.minute for r in record.readings] == [1]


def test_version_hints():
    assert version_hint({"meta": {"tag": [{"system": "http://hl7.org/fhir/FHIR-version", "code": "5.0.0"}]}}) == "R5"
    assert version_hint({"meta": {"tag": [{"system": "http://hl7.org/fhir/FHIR-version", "code": "4.0.1"}]}}) == "R4B"
    assert version_hint({"meta": {"profile": ["http://hl7.org/fhir/5.0/StructureDefinition/Patient"]}}) == "R5"
    assert version_hint({"meta": {"profile": ["http://hl7.org/fhir/R4/StructureDefinition/Patient"]}}) == "R4B"
    assert version_hint({"fhirVersion": "5.0.0"}) == "R5"
    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
    assert version_hint({"meta": {"profile": [us_core]}}) is None
    assert version_hint({"meta": "not an object"}) is None


def test_age_at_by_hand():
    assert age_at("2000-01-01", datetime(2020, 7, 1, tzinfo=UTC)) == pytest.approx(20 + 182 / 366)
    assert age_at("2000-02-29", datetime(2021, 2, 28, 12, tzinfo=UTC)) == 21.0
    assert age_at("2000-02-29", datetime(2021, 2, 27, tzinfo=UTC)) == pytest.approx(20 + 364 / 365)
    # 02:00 at UTC+5 is still the previous day in UTC.
    plus5 = timezone(timedelta(hours=5))
    assert age_at("2000-02-29", datetime(2021, 2, 28, 2, tzinfo=plus5)) == pytest.approx(20 + 364 / 365)
    assert age_at("1970", datetime(1971, 1, 1, tzinfo=UTC)) == 1.0
    with pytest.raises(FhirError, match="before the birth date"):
        age_at("2000-01-02", datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(FhirError, match="expected YYYY"):
        age_at("01/02/2000", datetime(2020, 1, 1, tzinfo=UTC))


# ---- regressions found by the ingest fuzzer (tests/fuzz) -----------------------------------------


def test_json_nested_past_the_parser_is_a_fhir_error(tmp_path):
    deep = '{"resourceType": "Patient", "id": "p", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = tmp_path / "deep.json"
    path.write_text(deep)
    with pytest.raises(FhirError, match="nested too deeply") as err:
        read_fhir(path)
    assert err.value.path == str(path)
    ndjson = tmp_path / "deep.ndjson"
    ndjson.write_text(json.dumps(patient_resource("p", "MRN-1")) + "\n" + deep + "\n")
    record = read_fhir(ndjson)  # only the deep line is skipped
    assert record.patient_id == "p"
    assert [(i.where, i.kind) for i in record.issues] == [("line 2", "skipped")]
    assert "nested too deeply" in record.issues[0].message


def test_resource_nested_past_the_models_is_skipped_and_the_rest_used(tmp_path):
    subject = {"reference": "Patient/p"}
    nested = {"url": "http://example.org/leaf", "valueString": "z"}
    for _ in range(300):  # the models validate extensions recursively, in Python
        nested = {"url": "http://example.org/branch", "extension": [nested]}
    deep = heart_rate(subject, 1, 81)
    deep["extension"] = [nested]
    bundle = collection(patient_resource("p", "MRN-1"), deep, heart_rate(subject, 2, 82))
    record = read_fhir(write_json(tmp_path / "b.json", bundle))
    assert [(r.time.minute, r.value) for r in record.readings] == [(2, 82.0)]
    (issue,) = [i for i in record.issues if i.kind == "skipped"]
    assert issue.where == "entry 1 (Observation)" and "RecursionError" in issue.message


def test_date_time_outside_years_1_to_9999_in_utc_is_reported_not_used(tmp_path):
    subject = {"reference": "Patient/p"}
    early = heart_rate(subject, 1, 81)
    early["effectiveDateTime"] = "0001-01-01T00:00:00+14:00"  # 13 hours before year 1 in UTC
    bundle = collection(patient_resource("p", "MRN-1"), early, heart_rate(subject, 2, 82))
    record = read_fhir(write_json(tmp_path / "b.json", bundle))
    assert [(r.time.minute, r.value) for r in record.readings] == [(2, 82.0)]
    assert [(d.time, d.reason) for d in record.dropped] == [(None, "no time (effective[x] or issued)")]
    assert sum("outside years 1-9999" in i.message for i in record.issues) == 1


def test_patient_id_matches_an_id_before_other_patients_identifiers(tmp_path):
    # found by the ingest fuzzer: a copy of the patient under another id, keeping its identifiers
    # (Synthea lists the id among them), made patient_id match two Patients and the record was refused
    copy_ = patient_resource("other", "MRN-1")
    copy_["identifier"].append({"system": "urn:x", "value": "p1"})
    bundle = collection(patient_resource("p1", "MRN-1"), copy_, heart_rate({"reference": "Patient/p1"}, 3))
    path = write_json(tmp_path / "b.json", bundle)
    assert [r.time.minute for r in read_fhir(path, patient_id="p1").readings] == [3]
    assert read_fhir(path, patient_id="other").readings == ()
    with pytest.raises(FhirError, match="2 Patient among 2 matches"):
        read_fhir(path, patient_id="MRN-1")  # an identifier both hold
