"""The audit store: FHIR-shaped records per prediction, checksums worked out apart, and no patient data in the file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.provenance import Provenance

from medmm.errors import ConfigError
from medmm.io.study import load_study
from medmm.predict import Predictor
from medmm.trail import AuditStore, InputDigest, prediction_checksum
from tests.batch.helpers import save_tiny_checkpoint

MRN = "MRN-4471902"
NAME = ("Zebedee", "Quackenbush")
BIRTH = "1931-05-17"
NOTE = "Zebedee Quackenbush reports productive cough since Tuesday; lives at 42 Wallaby Way, Sydney."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("audit-model") / "model")


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint)


def _plant(source: Path, folder: Path) -> Path:
    """A copy of a synthetic patient whose record names the patient, carries an MRN, a birth date and a planted note."""
    shutil.copytree(source, folder)
    bundle = json.loads((folder / "record.json").read_text())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["name"] = [{"family": NAME[1], "given": [NAME[0]]}]
            resource["identifier"] = [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": MRN}]
            resource["birthDate"] = BIRTH
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "DocumentReference",
                "id": "planted-note",
                "status": "current",
                "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
                "date": "2023-12-11T09:00:00+00:00",
                "content": [
                    {"attachment": {"contentType": "text/plain", "data": base64.b64encode(NOTE.encode()).decode()}}
                ],
            }
        }
    )
    (folder / "record.json").write_text(json.dumps(bundle))
    for path in folder.rglob("*.dcm"):  # the images name the same patient, as a real export would
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = MRN, "^".join(reversed(NAME)), BIRTH.replace("-", "")
        ds.save_as(path)
    return folder


def _forbidden() -> list[bytes]:
    words = [
        MRN,
        "4471902",
        *NAME,
        BIRTH,
        "Wallaby",
        "productive cough since Tuesday",
        base64.b64encode(NOTE.encode()).decode()[:24],
    ]
    unsalted = hashlib.sha256(MRN.encode()).hexdigest()
    return [w.encode() for w in words] + [unsalted[:32].encode(), unsalted[:16].encode()]


def _all_bytes(path: Path) -> bytes:
    """The database file and any journal beside it."""
    return b"".join(
        p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name) and not p.name.endswith(".key")
    )


def _with_notes(small_cohort: Path) -> Path:
    m = pd.read_csv(small_cohort / "manifest.csv", dtype=str, keep_default_na=False)
    return small_cohort / m[(m["has_notes"] == "1") & (m["has_image"] == "1")]["folder"].iloc[0]


def test_a_prediction_is_recorded_with_checksums_worked_out_apart(predictor, checkpoint, small_cohort, tmp_path):
    folder = _with_notes(small_cohort)
    prediction = predictor.predict(load_study(folder), impression=False)
    store = AuditStore(tmp_path / "audit.sqlite")
    event_id = store.record_prediction(
        prediction, inputs=[folder], model_dir=checkpoint, user="dr-operator", source="cli"
    )
    [event] = store.events()
    assert event.event_id == event_id and (event.action, event.source, event.user, event.outcome) == (
        "predict",
        "cli",
        "dr-operator",
        "success",
    )
    assert event.model_checksum == hashlib.sha256((checkpoint / "checksums.json").read_bytes()).hexdigest()
    assert event.config_checksum == hashlib.sha256((checkpoint / "config.json").read_bytes()).hexdigest()
    assert (event.model_id, event.model_version) == (prediction.model_id, prediction.model_version)
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in (".dcm", ".json", ".csv") and not p.name.startswith("truth")
    ]
    assert sorted(d.sha256 for d in event.inputs) == sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    assert sorted(d.size for d in event.inputs) == sorted(f.stat().st_size for f in files)
    key = (tmp_path / "audit.sqlite.key").read_text().strip().encode()
    assert event.subject_hash == hmac.new(key, prediction.study_id.encode(), hashlib.sha256).hexdigest()[:32]
    assert event.output_checksum == prediction_checksum(prediction) and event.recorded.tzinfo is not None


def test_records_are_valid_fhir_audit_event_and_provenance(predictor, checkpoint, small_cohort, tmp_path):
    folder = _with_notes(small_cohort)
    prediction = predictor.predict(load_study(folder), impression=False)
    store = AuditStore(tmp_path / "audit.sqlite")
    event_id = store.record_prediction(prediction, inputs=[folder], model_dir=checkpoint, source="ui")
    event = AuditEvent.model_validate_json(store.audit_event_json(event_id))
    provenance = Provenance.model_validate_json(store.provenance_json(event_id))
    assert event.action == "E" and event.source.observer.display == "medmm ui"
    details = {d.type: d.valueString for d in event.entity[0].detail}
    assert details["model_sha256"] == hashlib.sha256((checkpoint / "checksums.json").read_bytes()).hexdigest()
    sources = sorted(e.what.identifier.value for e in provenance.entity if e.role == "source")
    assert sources == sorted(f"urn:sha256:{d.sha256}" for d in store.events()[0].inputs)
    assert provenance.target[0].identifier.value == prediction_checksum(prediction)


def test_no_patient_data_reaches_the_store_file(predictor, checkpoint, small_cohort, tmp_path):
    from medmm.batch.plan import Outputs, RunOptions, StudyProtocol
    from medmm.batch.run import run_batch

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    patient = _plant(_with_notes(small_cohort), cohort / MRN)
    study = load_study(patient)
    assert study.study_id == MRN and any(NOTE in n.text for n in study.notes)  # the planted data is really read
    prediction = predictor.predict(study, impression=True)
    db = tmp_path / "audit" / "audit.sqlite"
    store = AuditStore(db)
    store.record_prediction(prediction, inputs=[patient], model_dir=checkpoint, source="cli")
    store.record_feedback(
        prediction, verdict="disagree", diagnoses=["pneumonia"], model_dir=checkpoint, inputs=[patient]
    )
    pd.DataFrame({"patient_id": [MRN], "folder": [MRN], "sex": ["male"], "age_years": ["92"]}).to_csv(
        cohort / "manifest.csv", index=False
    )
    protocol = StudyProtocol(outputs=Outputs(max_new_tokens=2), run=RunOptions(batch_size=1, part_size=1))
    run_batch(checkpoint, cohort, tmp_path / "out", protocol=protocol, progress=False, audit=db)
    events = AuditStore(db).events()
    assert [e.action for e in events] == ["predict", "feedback", "predict"] and events[-1].source == "batch"
    assert len({e.subject_hash for e in events}) == 1
    content = _all_bytes(db)
    assert len(content) > 0
    for word in _forbidden():
        assert word not in content, word
    with sqlite3.connect(db) as connection:  # and nothing hides in a column the byte scan could miss (e.g. compressed)
        text = json.dumps(
            [
                connection.execute(f"SELECT * FROM {t}").fetchall()
                for t in ("audit_event", "audit_input", "provenance", "meta")
            ]
        )
    for word in _forbidden():
        assert word.decode() not in text


def test_feedback_takes_only_the_fixed_vocabulary(predictor, checkpoint, small_cohort, tmp_path):
    prediction = predictor.predict(load_study(_with_notes(small_cohort)), impression=False)
    store = AuditStore(tmp_path / "audit.sqlite")
    store.record_feedback(
        prediction, verdict="agree", diagnoses=["sepsis", "pneumonia", "sepsis"], model_dir=checkpoint
    )
    [event] = store.events(action="feedback")
    assert (
        json.loads(event.detail) == {"verdict": "agree", "diagnoses": ["pneumonia", "sepsis"]} and event.source == "ui"
    )
    with pytest.raises(ConfigError, match="verdict"):
        store.record_feedback(prediction, verdict="looks fine to me", model_dir=checkpoint)
    with pytest.raises(ConfigError, match="diagnoses"):
        store.record_feedback(prediction, verdict="disagree", diagnoses=["patient is John Smith"], model_dir=checkpoint)
    with pytest.raises(ConfigError, match="source"):
        store.record_prediction(prediction, digests=(), model_dir=checkpoint, source="email")
    assert len(store.events()) == 1


def test_a_batch_case_is_recorded_once_per_run_and_keys_change_the_hash(predictor, checkpoint, small_cohort, tmp_path):
    prediction = predictor.predict(load_study(_with_notes(small_cohort)), impression=False)
    digests = [InputDigest("fhir", "ab" * 32, 10)]
    store = AuditStore(tmp_path / "a.sqlite", salt="first key")
    first = store.record_many([(prediction, digests)], model_dir=checkpoint, run_id="run-1")
    again = store.record_many([(prediction, digests)], model_dir=checkpoint, run_id="run-1")
    other = store.record_many([(prediction, digests)], model_dir=checkpoint, run_id="run-2")
    assert first == again and first != other
    assert [e.run_id for e in store.events()] == ["run-1", "run-2"] and len(store.events(run_id="run-1")) == 1
    other_key = AuditStore(tmp_path / "b.sqlite", salt="second key")
    assert other_key.subject_hash(prediction.study_id) != store.subject_hash(prediction.study_id)
    assert (
        store.subject_hash(prediction.study_id)
        == hmac.new(b"first key", prediction.study_id.encode(), hashlib.sha256).hexdigest()[:32]
    )


def test_a_file_that_is_not_an_audit_store_is_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="SQLite"):
        AuditStore(junk, salt="k")
    store = AuditStore(tmp_path / "old.sqlite", salt="k")
    with sqlite3.connect(store.path) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema"):
        AuditStore(store.path, salt="k")


def test_the_key_file_is_private_and_reused(tmp_path):
    a = AuditStore(tmp_path / "s.sqlite")
    key = tmp_path / "s.sqlite.key"
    assert key.stat().st_mode & 0o777 == 0o600
    b = AuditStore(tmp_path / "s.sqlite")
    assert a.subject_hash("P1") == b.subject_hash("P1") and len(key.read_text().strip()) == 64
