"""The study time made explicit, implausible dates that never move it, readings outside the window
counted, a bad file that drops only itself, and files of two patients never mixed. Expected values
come from the raw CSV, JSON and DICOM files, read here with csv, json and pydicom."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pydicom
import pytest

from medmm.errors import InputError
from medmm.io import load_study
from medmm.io.cohort import Cohort

UTC = timezone.utc
DATE_TAGS = ("AcquisitionDateTime", "AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate")


def manifest(small_cohort) -> list[dict]:
    with open(small_cohort / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def csv_readings(folder: Path) -> list[tuple[datetime, str]]:
    rows = []
    for f in folder.glob("*.csv"):
        with open(f, newline="") as fh:
            rows += [(datetime.fromisoformat(r["time"].replace("Z", "+00:00")), r["code"]) for r in csv.DictReader(fh)]
    return rows


def note_times(folder: Path) -> list[datetime]:
    bundle = json.loads((folder / "record.json").read_text())
    times = []
    for entry in bundle.get("entry", []):
        r = entry["resource"]
        if r["resourceType"] == "DocumentReference" and "date" in r:
            times.append(datetime.fromisoformat(r["date"]))
        elif r["resourceType"] == "DiagnosticReport" and "presentedForm" in r and "effectiveDateTime" in r:
            times.append(datetime.fromisoformat(r["effectiveDateTime"]))
    return times


@pytest.fixture(scope="module")
def imageless(tmp_path_factory) -> Path:
    """Patients with no image, vitals as tables and as FHIR Observations, loaded without the manifest."""
    from medmm.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("imageless") / "c"
    synthesize(
        root,
        SynthConfig(
            patients=12,
            seed=3,
            image_size=32,
            missing_image=1.0,
            missing_vitals=0.0,
            fhir_vitals_fraction=0.4,
            workers=1,
        ),
        progress=False,
    )
    return root


def test_every_imageless_folder_has_its_vitals_on_the_grid(imageless):
    rows = manifest(imageless)
    assert rows and all(r["has_image"] == "0" for r in rows)
    for row in rows:
        study = load_study(imageless / row["folder"])
        assert "vitals" in study.modalities, row["folder"]


def test_an_imageless_study_time_comes_from_its_latest_note_or_reading(imageless):
    folders = [imageless / r["folder"] for r in manifest(imageless) if csv_readings(imageless / r["folder"])]
    assert folders
    for folder in folders:
        readings, notes = csv_readings(folder), note_times(folder)
        last_reading, last_note = max(t for t, _ in readings), max(notes, default=None)
        study = load_study(folder)
        if last_note is not None and last_note > last_reading:
            assert (study.time, study.time_source) == (last_note, "latest note")
        else:
            assert (study.time, study.time_source) == (
                last_reading + timedelta(hours=1),
                "latest vital-sign reading (plus one step)",
            )
        v = study.vitals
        inside = [(t, code) for t, code in readings if v.start <= t < study.time]
        assert inside and v.mask.sum() > 0
        hr = v.channels.index("heart_rate")
        expected_steps = {int((t - v.start).total_seconds() // 3600) for t, code in inside if code == "8867-4"}
        assert set(v.mask[:, hr].nonzero()[0].tolist()) == expected_steps


def test_the_manifest_time_is_named_as_such(small_cohort):
    cohort = Cohort.open(small_cohort)
    study = cohort.load(0)
    assert study.time_source == "cohort manifest"
    assert study.time == datetime.fromisoformat(manifest(small_cohort)[0]["study_time"])


def folder_with_image(small_cohort, tmp_path) -> Path:
    src = next(p.parent.parent for p in sorted(small_cohort.glob("*/images/radiograph.dcm")))
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def set_dates(path: Path, value: str | None, keep: tuple[str, ...] = ()) -> None:
    ds = pydicom.dcmread(path)
    for tag in DATE_TAGS:
        if tag in keep:
            continue
        if value is None:
            if tag in ds:
                delattr(ds, tag)
        elif tag == "AcquisitionDateTime":
            ds.AcquisitionDateTime = value
        elif tag in ds or tag == "StudyDate":
            setattr(ds, tag, value[:8])
    ds.save_as(path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("00010101000000", "implausible date"),
        ("00010101000000+1400", "not a valid DICOM date/time"),  # year 1 moved back by 14 hours: before year 1
        ("29990101000000", "implausible date"),
        ("18500101000000", "implausible date"),
    ],
)
def test_an_implausible_image_date_drops_only_the_date(small_cohort, tmp_path, value, message):
    folder = folder_with_image(small_cohort, tmp_path / "a")
    image = folder / "images" / "radiograph.dcm"
    set_dates(image, value)
    reference = folder_with_image(small_cohort, tmp_path / "b")
    set_dates(reference / "images" / "radiograph.dcm", None)  # the same folder with no date at all
    study, without = load_study(folder), load_study(reference)
    assert len(study.images) == 1 and study.images[0].acquired is None  # the image stays, its date goes
    assert any(w.source == str(image) and message in w.message for w in study.warnings)
    assert study.time == without.time and study.time_source == without.time_source != "image acquisition (latest)"
    assert study.modalities == without.modalities and "vitals" in study.modalities
    assert (study.vitals.mask == without.vitals.mask).all()


def test_readings_outside_the_window_are_counted(tmp_path):
    rows = [
        ("2024-01-01T00:00:00Z", "before"),  # 48 h window before 2024-01-03T12:00: starts 2024-01-01T12:00
        ("2024-01-01T13:00:00Z", "inside"),
        ("2024-01-03T11:59:00Z", "inside"),
        ("2024-01-03T12:00:00Z", "at the study time: after"),
        ("2024-01-04T00:00:00Z", "after"),
    ]
    path = tmp_path / "vitals.csv"
    path.write_text("time,code,value,unit\n" + "".join(f"{t},8867-4,80,/min\n" for t, _ in rows))
    study = load_study(path, study_time=datetime(2024, 1, 3, 12, tzinfo=UTC))
    assert int(study.vitals.mask.sum()) == 2
    [warning] = [w for w in study.warnings if w.where == "window"]
    assert (
        warning.message
        == "3 reading(s) outside the 48-hour window before the study time (1 before it, 2 at or after it): not on the grid"
    )


# -- one patient per input -----------------------------------------------------------------------


def two_patients(small_cohort, tmp_path) -> tuple[Path, str, str]:
    """A folder with patient A's radiograph and patient B's record and vitals."""
    with_image = [r for r in manifest(small_cohort) if r["has_image"] == "1"]
    a, b = with_image[0], with_image[1]
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(small_cohort / a["folder"] / "images" / "radiograph.dcm", folder / "a.dcm")
    for f in (small_cohort / b["folder"]).iterdir():
        if f.suffix in (".json", ".csv") and not f.name.startswith("truth"):
            shutil.copy(f, folder / f.name)
    pid_a = pydicom.dcmread(folder / "a.dcm", stop_before_pixels=True).PatientID
    identifiers = [
        i["value"]
        for e in json.loads((folder / "record.json").read_text())["entry"]
        if e["resource"]["resourceType"] == "Patient"
        for i in e["resource"].get("identifier", [])
    ]
    return folder, pid_a, identifiers[0]


def test_files_of_two_patients_are_refused_naming_both(small_cohort, tmp_path):
    folder, a, b = two_patients(small_cohort, tmp_path)
    assert a != b
    with pytest.raises(InputError) as info:
        load_study(folder)
    assert (
        f"DICOM PatientID {a!r}" in str(info.value)
        and repr(b) in str(info.value)
        and "more than one patient" in str(info.value)
    )


def test_naming_the_patient_splits_the_folder(small_cohort, tmp_path):
    folder, a, b = two_patients(small_cohort, tmp_path)
    study = load_study(folder, patient_id=b)
    assert study.images == () and "vitals" in study.modalities
    assert any(w.source == str(folder / "a.dcm") and "another patient" in w.message for w in study.warnings)
    with pytest.raises(InputError):  # the image's patient has no record here: still a mix
        load_study(folder, patient_id=a)


def test_two_dicom_patients_in_one_folder(small_cohort, tmp_path):
    src = next(sorted(small_cohort.glob("*/images/radiograph.dcm")).__iter__())
    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copy(src, folder / "one.dcm")
    ds = pydicom.dcmread(src)
    ds.PatientID = "OTHER-1"
    ds.SeriesInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "two.dcm")
    with pytest.raises(InputError, match="'OTHER-1'"):
        load_study(folder)
    kept = load_study(folder, patient_id="OTHER-1")
    assert [s.patient.patient_id for s in kept.images] == ["OTHER-1"]


def test_demographics_come_from_the_dicom_header_without_a_record(small_cohort, tmp_path):
    src = next(iter(sorted(small_cohort.glob("*/images/radiograph.dcm"))))
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    study = load_study(src)
    d = study.demographics
    assert d.sex == {"M": "male", "F": "female"}[ds.PatientSex] and d.extra["demographics_source"] == "DICOM header"
    born = datetime.strptime(ds.PatientBirthDate, "%Y%m%d").date()
    assert d.birth_date == born.isoformat()
    today = study.time.date()
    assert int(d.age_years) == today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    no_birth = rewrite_header(src, tmp_path / "x.dcm", PatientBirthDate=None, PatientAge="007M")
    assert load_study(no_birth).demographics.age_years == pytest.approx(7 / 12)


def rewrite_header(src: Path, dst: Path, **changes) -> Path:
    ds = pydicom.dcmread(src)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(dst)
    return dst
