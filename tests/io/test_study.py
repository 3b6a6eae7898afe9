import json
import shutil
from datetime import datetime, timezone

import pytest

from medmm.errors import FhirError, InputError
from medmm.io import classify_files, load_study


def _patient(small_cohort, index=0):
    return sorted(p for p in small_cohort.iterdir() if p.is_dir() and not p.name.startswith("."))[index]


def test_classify_sorts_files_by_kind(small_cohort):
    folder = _patient(small_cohort)
    files = classify_files(folder)
    assert all(f.suffix == ".dcm" for f in files.dicom)
    assert [f.name for f in files.fhir] == ["record.json"]
    assert {f.name for f in files.ignored} >= {"truth.json"}


def test_each_single_file_gives_its_own_part(small_cohort):
    folder = next(p for p in sorted(small_cohort.iterdir()) if (p / "vitals.csv").exists() and (p / "images").exists())
    assert load_study(folder / "record.json").modalities in (("notes",), ("notes", "vitals"), ())
    dcm = next((folder / "images").rglob("*.dcm"))
    assert load_study(dcm).modalities == ("image",)
    assert load_study(folder / "vitals.csv").modalities == ("vitals",)


def test_study_time_defaults_and_override(small_cohort):
    folder = _patient(small_cohort)
    study = load_study(folder)
    assert study.time is not None and study.time.tzinfo is not None
    when = datetime(2026, 6, 1, tzinfo=timezone.utc)
    moved = load_study(folder, study_time=when, time_source="cohort manifest")
    assert moved.time == when and moved.time_source == "cohort manifest"
    if moved.vitals is not None:
        assert moved.vitals.start == datetime(2026, 5, 30, tzinfo=timezone.utc)
        assert not moved.vitals.mask.any()  # the readings are years before this window
        assert any("outside the 48-hour window" in w.message for w in moved.warnings)  # and they are counted
    with pytest.raises(InputError, match="implausible"):
        load_study(folder, study_time=datetime(2099, 1, 1, tzinfo=timezone.utc))


def test_bad_file_in_folder_is_reported_and_rest_kept(small_cohort, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(_patient(small_cohort), folder)
    (folder / "broken.json").write_text("{not json")
    study = load_study(folder)
    assert "notes" in study.modalities or "vitals" in study.modalities or study.images
    assert any("broken.json" in w.source or "FhirError" in w.message for w in study.warnings)


def test_bad_single_file_raises_typed_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2")
    with pytest.raises(FhirError):
        load_study(bad)
    other = tmp_path / "x.bin"
    other.write_bytes(b"\x00\x01")
    with pytest.raises(InputError, match="not a recognised input"):
        load_study(other)
    with pytest.raises(InputError, match="no such"):
        load_study(tmp_path / "missing")


def test_missing_modalities_are_not_errors(small_cohort, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(_patient(small_cohort), folder)
    shutil.rmtree(folder / "images", ignore_errors=True)
    study = load_study(folder)
    assert "image" not in study.modalities
    assert study.demographics is not None and study.demographics.patient_id == "p"
    truth = json.loads((folder / "truth.json").read_text())
    assert set(study.label_names) == set(truth["labels"])


@pytest.mark.parametrize("when", ["9999-12-31T23:30:00Z", "0001-01-01T00:00:00Z", "1899-12-31T23:00:00Z"])
def test_an_implausible_reading_time_never_becomes_the_study_time(tmp_path, when):
    # found by the ingest fuzzer: year 9999 overflowed the grid end, year 1 its start
    path = tmp_path / "vitals.csv"
    path.write_text(f"time,code,value,unit\n{when},8867-4,88,/min\n")
    study = load_study(path)
    assert study.time is None and study.time_source is None and study.vitals is None
    messages = [w.message for w in study.warnings]
    assert any("1 note or reading time(s) before 1900 or in the future" in m for m in messages)
    assert any("no study time known" in m for m in messages)
