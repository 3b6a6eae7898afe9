"""The header of a result: patient facts, the study date in the clinician's zone, every file's fate, the warnings."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from medmm.records import Demographics, Study
from tests.ui.conftest import full_patient, make_service, patient_files
from ui.files import file_rows
from ui.header import header_html
from ui.localtime import local_time, zone_named


@pytest.fixture(scope="module")
def service(ui_model, ui_predictor, tmp_path_factory):
    svc = make_service(ui_model, tmp_path_factory.mktemp("ui-header"), predictor=ui_predictor)
    yield svc
    svc.close()


def test_zones_are_the_browsers_when_known_and_named_either_way():
    when = datetime(2023, 11, 11, 16, 6, tzinfo=timezone.utc)
    berlin = zone_named("Europe/Berlin")
    assert (berlin.source, local_time(when, berlin), berlin.label(when)) == (
        "browser",
        "2023-11-11 17:06",
        "Europe/Berlin, UTC+01:00",
    )
    summer = datetime(2023, 7, 1, 12, 0, tzinfo=timezone.utc)
    assert zone_named("America/New_York").label(summer) == "America/New_York, UTC-04:00"
    for bad in ("", None, "Mars/Olympus", "../../etc/passwd"):
        assert zone_named(bad).source == "server" and "the server's zone" in zone_named(bad).label(when)
    assert local_time(None, berlin) == "unknown"


def test_every_file_is_listed_with_what_became_of_it(service, small_cohort, tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"junk")
    other = tmp_path / "scan-notes.txt"
    other.write_text("not an input")
    case = service.open_uploads(patient_files(full_patient(small_cohort)) + [bad, other])
    before = {r.name: r.status for r in file_rows(case.study, None, case.folder)}
    assert before == {
        "radiograph.dcm": "read",
        "record.json": "read",
        "vitals.csv": "read",
        "broken.dcm": "not read",
        "scan-notes.txt": "not read",
    }
    final = list(service.analyse(case))[-1]
    rows = {r.name: r for r in file_rows(final.study, final.prediction, final.folder)}
    assert {n: r.status for n, r in rows.items()} == {
        "radiograph.dcm": "used",
        "record.json": "used",
        "vitals.csv": "used",
        "broken.dcm": "not read",
        "scan-notes.txt": "not read",
    }
    assert (
        rows["radiograph.dcm"].detail.startswith("CR CHEST PA")
        and "not a recognised input" in rows["scan-notes.txt"].detail
    )


def test_the_header_names_the_patient_date_files_and_keeps_the_warnings(service, small_cohort, tmp_path):
    import json

    folder = full_patient(small_cohort)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"junk")
    case = service.open_uploads(patient_files(folder) + [bad])
    final = list(service.analyse(case))[-1]
    zone = zone_named("Asia/Tokyo")
    page = header_html(final.study, final.prediction, final.folder, zone)
    bundle = json.loads((folder / "record.json").read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert (
        f'data-fact="patient-id"><dt>Patient ID</dt><dd>{patient["id"]} <span class="medmm-source">(FHIR record)'
        in page
    )
    assert f"<dd>{patient['gender']} " in page
    when = final.study.time.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M")
    assert f"{when} (Asia/Tokyo, UTC+09:00)" in page and "study time from image acquisition (latest)" in page
    assert re.search(r'data-file="broken.dcm" data-status="not read"', page)
    assert 'class="medmm-input-warnings"' in page and "broken.dcm: " in page
    assert str(service.cases_dir) not in page  # names relative to the case, never the server's folders


def test_a_study_with_nothing_readable_says_no_answer_in_its_header(service, tmp_path):
    from medmm.records import ClinicalNote

    study = Study(
        "s", Demographics("s"), notes=(ClinicalNote("cough", type_code="11488-4", source_id="DocumentReference/x"),)
    )
    prediction = service.predictor.predict(study, impression=False)
    page = header_html(study, prediction, tmp_path, zone_named("UTC"))
    assert not prediction.answered and "No answer:" in page and "11488-4" in page
    assert "Patient ID</dt><dd>not stated" in page and "Study date</dt><dd>unknown" in page
