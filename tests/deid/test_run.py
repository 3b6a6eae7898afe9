"""Acceptance: a cohort with planted PHI comes out with none of it left, and still loads."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medmm.deid import deidentify, load_mapping
from medmm.deid.mapping import PSEUDONYM_SYSTEM, Keys
from medmm.errors import ConfigError, InputError
from medmm.io.cohort import Cohort
from medmm.io.dicom import read_dicom
from tests.deid import phi_fixtures as fx

SECRET = "test-secret"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    base = tmp_path_factory.mktemp("deid")
    cohort = fx.build_phi_cohort(base / "in")
    report = deidentify(
        cohort.root,
        base / "out",
        mapping_path=base / "keys" / "map.json",
        secret=SECRET,
        quarantine=base / "quarantine",
    )
    return base, cohort, report, load_mapping(base / "keys" / "map.json")


def _pseudonym(mapping, original: str) -> str:
    return next(p.pseudonym for p in mapping.patients if p.original_id == original)


def _json_strings(value, out: list[str]) -> list[str]:
    """Every string in a JSON value, base64 attachment data decoded too."""
    if isinstance(value, dict):
        for key, item in value.items():
            out.append(key)
            if key == "data" and isinstance(item, str):
                out.append(base64.b64decode(item).decode("utf-8", "replace"))
            _json_strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _json_strings(item, out)
    elif isinstance(value, str):
        out.append(value)
    return out


def _dicom_strings(path: Path) -> list[str]:
    ds = pydicom.dcmread(path)
    found = [str(e.value) for e in ds.file_meta.iterall()]
    for elem in ds.iterall():
        if elem.keyword != "PixelData":
            found.append(str(elem.value))
            found.append(str(elem.tag))
        assert not elem.tag.is_private
    return found


def test_no_planted_value_survives_anywhere(done):
    base, _, report, _ = done
    planted = [p.lower() for p in fx.PLANTED_A + fx.PLANTED_B]
    out = base / "out"
    checked = 0
    for path in sorted(out.rglob("*")):
        texts = [str(path.relative_to(out))]
        if path.is_file():
            raw = path.read_bytes()
            texts.append(raw.decode("latin-1"))
            if path.suffix == ".dcm":
                texts += _dicom_strings(path)
            elif path.suffix == ".json":
                texts += _json_strings(json.loads(raw), [])
            checked += 1
        for text in texts:
            leaked = [p for p in planted if p in text.lower()]
            assert not leaked, f"{path.name}: {leaked}"
    assert checked == len(report.files_written) + 1  # + the marker


def test_files_written_refused_and_skipped(done):
    _, cohort, report, mapping = done
    a, b = _pseudonym(mapping, fx.A_ID), _pseudonym(mapping, fx.B_ID)
    uid_name = f"{mapping.uids[fx.A_CT2]}.dcm"  # a file named by its SOP Instance UID gets the new UID
    assert set(report.files_written) == {
        "manifest.csv",
        f"{a}/images/slice1.dcm",
        f"{a}/images/{uid_name}",
        f"{a}/images/cr.dcm",
        f"{a}/record.json",
        f"{a}/vitals.csv",
        f"{b}/images/ct.dcm",
        f"{b}/record.json",
    }
    reasons = {q.source: q.reason for q in report.quarantined}
    assert set(reasons) == {f"{fx.A_FOLDER}/images/us.dcm", f"{fx.A_FOLDER}/images/burned.dcm"}
    assert "Burned In Annotation is YES" in reasons[f"{fx.A_FOLDER}/images/burned.dcm"]
    assert "modality US" in reasons[f"{fx.A_FOLDER}/images/us.dcm"]
    for q in report.quarantined:  # copied unchanged for the data owner to review
        assert (done[0] / "quarantine" / q.copied_to).read_bytes() == (cohort.root / q.source).read_bytes()
    assert [s.source for s in report.skipped] == [f"{fx.A_FOLDER}/truth.json"]
    assert sorted(report.patients) == sorted([a, b])


def test_uids_replaced_consistently_across_files_and_references(done):
    base, _, _, mapping = done
    folder = base / "out" / _pseudonym(mapping, fx.A_ID) / "images"
    ct1 = pydicom.dcmread(folder / "slice1.dcm")
    ct2 = pydicom.dcmread(folder / f"{mapping.uids[fx.A_CT2]}.dcm")
    cr = pydicom.dcmread(folder / "cr.dcm")
    keys = Keys(SECRET)
    assert ct1.StudyInstanceUID == ct2.StudyInstanceUID == cr.StudyInstanceUID == keys.uid(fx.A_STUDY)
    assert ct1.SeriesInstanceUID == ct2.SeriesInstanceUID == keys.uid(fx.A_SERIES) != fx.A_SERIES
    assert ct1.FrameOfReferenceUID == ct2.FrameOfReferenceUID == keys.uid(fx.A_FRAME)
    assert ct2.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ct1.SOPInstanceUID == keys.uid(fx.A_CT1)
    assert ct2.ReferencedImageSequence[0].ReferencedSOPClassUID == fx.CT_SOP  # a class, kept
    assert ct1.file_meta.MediaStorageSOPInstanceUID == ct1.SOPInstanceUID
    assert ct1.SOPInstanceUID.startswith("2.25.") and len(ct1.SOPInstanceUID) <= 64
    assert mapping.original_uid(ct1.StudyInstanceUID) == fx.A_STUDY
    assert "RequestAttributesSequence" not in ct1 and len(ct1.ReferencedStudySequence) == 0  # X, and X/Z -> Z


def test_dates_shifted_by_one_offset_per_patient(done):
    base, _, _, mapping = done
    entry = next(p for p in mapping.patients if p.original_id == fx.A_ID)
    shift = timedelta(days=entry.offset_days)
    assert -3652 <= entry.offset_days <= -366
    ct1 = pydicom.dcmread(base / "out" / entry.pseudonym / "images" / "slice1.dcm")
    parse = lambda da: datetime.strptime(da, "%Y%m%d")  # noqa: E731
    assert parse(ct1.StudyDate) == parse(fx.A_STUDY_DATE) + shift
    assert parse(ct1.AcquisitionDate) - parse(ct1.StudyDate) == timedelta(days=2)  # interval kept
    assert ct1.AcquisitionDateTime == (parse(fx.A_ACQ_DATE) + shift).strftime("%Y%m%d") + "093000.000000+0000"
    assert ct1.StudyTime == "101500" and ct1.TimezoneOffsetFromUTC == "+0000"
    assert ct1.PatientBirthDate == ""  # Z in the basic profile
    bundle = json.loads((base / "out" / entry.pseudonym / "record.json").read_text())
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    assert resources["Patient"]["birthDate"] == (date(1961, 4, 12) + shift).isoformat()
    start = datetime.fromisoformat(resources["Encounter"]["period"]["start"])
    assert start == datetime.fromisoformat(fx.A_ENCOUNTER_START) + shift
    vitals = (base / "out" / entry.pseudonym / "vitals.csv").read_text().splitlines()
    assert vitals[0] == "time,code,value,unit"  # the mrn column is gone
    assert [datetime.fromisoformat(line.split(",")[0]) for line in vitals[1:]] == [
        datetime.fromisoformat(t) + shift for t in fx.A_VITALS_TIMES
    ]
    other = next(p for p in mapping.patients if p.original_id == fx.B_ID)
    assert other.offset_days != entry.offset_days


def test_identity_removed_and_method_recorded(done):
    base, _, _, mapping = done
    pseudonym = _pseudonym(mapping, fx.A_ID)
    ds = pydicom.dcmread(base / "out" / pseudonym / "images" / "cr.dcm")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.PatientID == ds.PatientName == pseudonym
    assert "Basic Application Confidentiality Profile" in ds.DeidentificationMethod
    codes = [(item.CodeValue, item.CodingSchemeDesignator) for item in ds.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113107", "DCM"), ("113108", "DCM")]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.PatientSex == "F" and ds.PatientAge == "061Y"  # Retain Patient Characteristics
    assert ds.InstitutionName == "ANONYMIZED" and ds.AccessionNumber == "" and "OperatorsName" in ds
    assert ds.preamble == b"\0" * 128 and "SourceApplicationEntityTitle" not in ds.file_meta


def test_mapping_reidentifies_and_is_private(done):
    base, cohort, _, mapping = done
    path = base / "keys" / "map.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    a = _pseudonym(mapping, fx.A_ID)
    assert mapping.original_id(a) == fx.A_ID and mapping.secret == SECRET
    entry = next(p for p in mapping.patients if p.pseudonym == a)
    assert entry.dicom_patient_ids == (fx.A_ID,) and entry.fhir_patient_ids == ("pat-884211",)
    manifest = (base / "out" / "manifest.csv").read_text().splitlines()
    assert (
        manifest[0]
        == "patient_id,folder,split,study_time,sex,age_years,race,ethnicity,labels,has_image,has_notes,has_vitals"
    )
    row = manifest[1].split(",")
    assert row[:3] == [a, a, "train"] and row[4:9] == ["female", "61", "2106-3", "2186-5", fx.LABEL]
    shifted = datetime.fromisoformat(fx.MANIFEST_STUDY_TIME) + timedelta(days=entry.offset_days)
    assert datetime.fromisoformat(row[3]) == shifted


def test_output_loads_with_the_same_pixels_labels_and_age(done):
    base, cohort, _, mapping = done
    a = _pseudonym(mapping, fx.A_ID)
    before, after = Cohort.open(cohort.root).load(0), Cohort.open(base / "out").load(0)
    assert after.study_id == a and after.demographics.patient_id == a
    assert after.label_names == before.label_names == (fx.LABEL,)
    assert after.demographics.sex == before.demographics.sex == "female"
    assert abs(after.demographics.age_years - before.demographics.age_years) < 0.01
    offset = next(p.offset_days for p in mapping.patients if p.pseudonym == a)
    assert after.time - before.time == timedelta(days=offset)
    kept = {s.sop_uids: s for s in before.images if not {fx.A_US, fx.A_BURNED} & set(s.sop_uids)}
    assert len(after.images) == len(kept) and sum(len(s.sop_uids) for s in after.images) == 3
    for s in after.images:
        original = kept[tuple(mapping.original_uid(uid) for uid in s.sop_uids)]
        np.testing.assert_array_equal(s.pixels, original.pixels)
        assert s.spacing == original.spacing and s.modality == original.modality
    (note,) = after.notes
    assert fx.NOTE_A_CLINICAL in note.text and "[NAME]" in note.text and "[ID]" in note.text
    assert after.vitals is not None and after.vitals.mask.sum() == before.vitals.mask.sum() == 3
    np.testing.assert_array_equal(after.vitals.mask, before.vitals.mask)  # same steps relative to the study


def test_fhir_patient_carries_only_the_pseudonym(done):
    base, _, _, mapping = done
    a = _pseudonym(mapping, fx.A_ID)
    bundle = json.loads((base / "out" / a / "record.json").read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["id"] == a and patient["identifier"] == [{"system": PSEUDONYM_SYSTEM, "value": a}]
    assert set(patient) == {"resourceType", "id", "gender", "birthDate", "extension", "identifier", "meta"}
    assert [e["url"].rsplit("/", 1)[-1] for e in patient["extension"]] == ["us-core-birthsex"]


def test_same_secret_gives_identical_output(done, tmp_path):
    base, cohort, _, _ = done
    deidentify(cohort.root, tmp_path / "again", mapping_path=tmp_path / "map.json", secret=SECRET)
    first = {p.relative_to(base / "out"): p.read_bytes() for p in (base / "out").rglob("*") if p.is_file()}
    second = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*") if p.is_file()}
    assert first == second


def test_no_secret_makes_one_and_a_rerun_reuses_it(tmp_path):
    cohort = fx.build_phi_cohort(tmp_path / "in")
    deidentify(cohort.root, tmp_path / "one", mapping_path=tmp_path / "map.json")
    made = load_mapping(tmp_path / "map.json")
    assert len(made.secret) == 64
    deidentify(cohort.root, tmp_path / "two", mapping_path=tmp_path / "map.json")
    assert load_mapping(tmp_path / "map.json").secret == made.secret
    assert (tmp_path / "one" / "manifest.csv").read_text() == (tmp_path / "two" / "manifest.csv").read_text()
    with pytest.raises(ConfigError, match="another secret"):
        deidentify(cohort.root, tmp_path / "three", mapping_path=tmp_path / "map.json", secret="different")


@pytest.mark.parametrize("where", ["mapping", "quarantine"])
def test_keys_or_quarantine_inside_the_output_are_refused(tmp_path, where):
    cohort = fx.build_phi_cohort(tmp_path / "in")
    out = tmp_path / "out"
    kwargs = (
        {"mapping_path": out / "map.json"}
        if where == "mapping"
        else {"mapping_path": tmp_path / "map.json", "quarantine": out / "q"}
    )
    with pytest.raises(ConfigError):
        deidentify(cohort.root, out, **kwargs)
    assert not out.exists() and not (tmp_path / "map.json").exists()


def test_output_inside_input_or_occupied_is_refused(tmp_path):
    cohort = fx.build_phi_cohort(tmp_path / "in")
    with pytest.raises(ConfigError, match="outside the input"):
        deidentify(cohort.root, cohort.root / "out", mapping_path=tmp_path / "m.json")
    with pytest.raises(ConfigError, match="outside the input"):
        deidentify(cohort.root, tmp_path / "out", mapping_path=cohort.a_folder / "m.json")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("someone else's")
    with pytest.raises(ConfigError, match="not an empty folder"):
        deidentify(cohort.root, tmp_path / "busy", mapping_path=tmp_path / "m.json")
    with pytest.raises(InputError):
        deidentify(tmp_path / "missing", tmp_path / "o", mapping_path=tmp_path / "m.json")


def test_single_file_and_single_patient_folder(tmp_path):
    cohort = fx.build_phi_cohort(tmp_path / "in")
    keys = Keys(SECRET).patient(fx.A_ID)
    report = deidentify(
        cohort.a_folder / "images" / "slice1.dcm", tmp_path / "one", mapping_path=tmp_path / "m1.json", secret=SECRET
    )
    assert report.files_written == ("slice1.dcm",) and report.patients == (keys.pseudonym,)
    assert pydicom.dcmread(tmp_path / "one" / "slice1.dcm").PatientID == keys.pseudonym
    report = deidentify(cohort.a_folder, tmp_path / "folder", mapping_path=tmp_path / "m2.json", secret=SECRET)
    assert report.patients == (Keys(SECRET).patient(fx.A_FOLDER).pseudonym,)  # no manifest: the folder name is the id
    assert (tmp_path / "folder" / "record.json").is_file() and (tmp_path / "folder" / "images" / "cr.dcm").is_file()


def test_cohort_without_manifest_has_one_patient_per_folder(tmp_path):
    cohort = fx.build_phi_cohort(tmp_path / "in")
    (cohort.root / "manifest.csv").unlink()
    report = deidentify(cohort.root, tmp_path / "out", mapping_path=tmp_path / "m.json", secret=SECRET)
    keys = Keys(SECRET)
    assert sorted(report.patients) == sorted(keys.patient(n).pseudonym for n in (fx.A_FOLDER, "b_220077"))
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_a_bundle_with_two_patients_is_refused(tmp_path):
    cohort = fx.build_phi_cohort(tmp_path / "in")
    two = fx.bundle_a()
    two["entry"].append({"resource": fx.bundle_b()["entry"][0]["resource"]})
    (cohort.a_folder / "record.json").write_text(json.dumps(two))
    report = deidentify(cohort.root, tmp_path / "out", mapping_path=tmp_path / "m.json", secret=SECRET)
    reasons = {q.source: q.reason for q in report.quarantined}
    assert "holds 2 patients" in reasons[f"{fx.A_FOLDER}/record.json"]


def test_synthetic_cohort_round_trip(tmp_path):
    from medmm.synth import SynthConfig, synthesize

    synthesize(
        tmp_path / "syn",
        SynthConfig(patients=3, image_size=32, ct_fraction=0.5, ct_slices=4, ct_size=32, workers=1),
        progress=False,
    )
    report = deidentify(tmp_path / "syn", tmp_path / "out", mapping_path=tmp_path / "m.json", secret=SECRET)
    assert not report.quarantined and len(report.patients) == 3
    before, after = Cohort.open(tmp_path / "syn"), Cohort.open(tmp_path / "out")
    mapping = load_mapping(tmp_path / "m.json")
    for i in range(3):
        s0, s1 = before.load(i), after.load(i)
        assert mapping.original_id(s1.study_id) == s0.study_id
        assert s1.label_names == s0.label_names and s1.demographics.sex == s0.demographics.sex
        assert [n.text for n in s1.notes] == [n.text for n in s0.notes]  # synthetic notes hold no identifiers
        assert sorted(float(im.pixels.sum()) for im in s1.images) == sorted(float(im.pixels.sum()) for im in s0.images)
        if s0.vitals is not None:
            np.testing.assert_array_equal(s1.vitals.mask, s0.vitals.mask)
    assert read_dicom(tmp_path / "out").series  # the whole output reads as DICOM
