"""Images joined to a built cohort's samples from a DICOM folder: by the ImagingStudy's Study Instance UID,
else by PatientID and acquisition time for a record without ImagingStudies; another patient's study is
never joined, and every outcome is counted. Expected files are worked out here from the raw JSON and the
DICOM files the test writes."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medmm.io.cohort import Cohort
from medmm.population.build import REPORT_JSON, build_cohort
from medmm.tasks import load_task, task_to_dict
from tests.io.test_pacs import needs_orthanc, running_orthanc, store
from tests.population.test_build import read_manifest
from tests.population.test_samples_synthea import raw_patients, t

pytestmark = pytest.mark.slow
DX = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dx(path: Path, *, study: str, series: str, sop: str, patient: str, when: datetime) -> None:
    """A small DX radiograph with the given join keys."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID = (
        DX,
        sop,
        ExplicitVRLittleEndian,
    )
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = DX, sop, study, series
    ds.PatientID, ds.Modality = patient, "DX"
    when = when.astimezone(timezone.utc)
    ds.StudyDate = ds.AcquisitionDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.AcquisitionTime = when.strftime("%H%M%S.%f")
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = ["20", "20"]  # 320 mm: a chest-sized field
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def study_uid(study: dict) -> str:
    ident = next(i for i in study["identifier"] if i["system"] == "urn:dicom:uid")
    return ident["value"].removeprefix("urn:oid:")


@pytest.fixture(scope="module")
def raw(synthea_bundles):
    return raw_patients(synthea_bundles)


def sop_uids(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (folder / "images").rglob("*.dcm")}


def imaging_archive(raw, archive: Path) -> tuple[list, dict[str, set[str]]]:
    """DICOM files for the population's ImagingStudies: the second under another PatientID, the third left
    out, a text file beside them. Returns the (patient id, ImagingStudy) pairs and, per ImagingStudy id,
    the SOP Instance UIDs written under its own patient."""
    studies = [(pid, s) for pid, res in raw.items() for s in res["ImagingStudy"]]
    assert len(studies) >= 4, "the population has too few ImagingStudies for this test"
    written: dict[str, set[str]] = {}
    foreign = studies[1][1]["id"]  # written under another PatientID: must not join
    missing = studies[2][1]["id"]  # not in the archive at all
    for n, (pid, s) in enumerate(studies):
        if s["id"] == missing:
            continue
        owner = "someone-else" if s["id"] == foreign else pid
        sops = set()
        for series in s["series"]:
            for inst in series["instance"]:
                write_dx(
                    archive / owner / f"{inst['uid']}.dcm",
                    study=study_uid(s),
                    series=series["uid"],
                    sop=inst["uid"],
                    patient=owner,
                    when=t(s["started"]),
                )
                sops.add(inst["uid"])
        if owner == pid:
            written[s["id"]] = sops
    (archive / "readme.txt").write_text("not DICOM")
    return studies, written


def imaging_task(folder: Path) -> Path:
    """A task with one sample per imaging study, which reads the study at its index."""
    data = task_to_dict(load_task("acute-respiratory-infection"))
    data.update(name="imaging", index={"kind": "imaging_study"}, images={"days": 0})
    path = folder / "imaging.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_studies_join_by_uid_and_another_patients_never(synthea_bundles, raw, tmp_path):
    archive = tmp_path / "archive"
    studies, written = imaging_archive(raw, archive)
    out = tmp_path / "cohort"
    build_cohort([synthea_bundles], imaging_task(tmp_path), out, seed=1, progress=False, images=archive)

    rows = read_manifest(out)
    assert len(rows) == len({(pid, t(s["started"])) for pid, s in studies})  # one sample per imaging time
    joined_pairs = 0
    for row in rows:
        index = datetime.fromisoformat(row["study_time"])
        at_index = [s for pid, s in studies if pid == row["patient_id"] and t(s["started"]) == index]
        want = set().union(*(written.get(s["id"], set()) for s in at_index))
        joined_pairs += sum(s["id"] in written for s in at_index)
        assert sop_uids(out / row["folder"]) == want
        assert row["has_image"] == str(int(bool(want)))
    report = json.loads((out / REPORT_JSON).read_text())
    counts = {e["reason"]: e["count"] for e in report["exclusions"]}
    assert counts["imaging: study joined by Study Instance UID"] == joined_pairs > 0
    assert counts["imaging: study found by Study Instance UID carries another PatientID; not joined"] == 1
    assert counts["imaging: ImagingStudy in the window not found in the image source"] == 1
    assert counts["imaging source: not a readable DICOM file (InvalidDicomError); not indexed"] == 1
    # the joined files are what the study reader reads
    cohort = Cohort.open(out)
    i = next(k for k, r in enumerate(rows) if r["has_image"] == "1")
    study = cohort.load(i)
    assert {s.series_uid for s in study.images} and all(s.source_files for s in study.images)


def test_a_record_without_imaging_studies_joins_by_patient_id_and_time(synthea_bundles, raw, tmp_path):
    """ImagingStudies stripped from the record: a study of the patient's PatientID acquired within the task's
    30-day window before a visit joins that visit's sample (and only those samples); one 40 days before
    joins none; another patient's study at the same time joins none."""
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    for path in sorted(synthea_bundles.glob("*.json")):
        bundle = json.loads(path.read_text())
        bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "ImagingStudy"]
        (bundles / path.name).write_text(json.dumps(bundle))
    pid, res = next(
        (p, r) for p, r in raw.items() if sum(e["class"]["code"] in ("AMB", "EMER") for e in r["Encounter"]) >= 3
    )
    visits = sorted(t(e["period"]["start"]) for e in res["Encounter"] if e["class"]["code"] in ("AMB", "EMER"))
    target = visits[-1]
    archive = tmp_path / "archive"
    near, far = target - timedelta(days=10), target - timedelta(days=40)
    uids = {name: (generate_uid(), generate_uid(), generate_uid()) for name in ("near", "far", "other")}
    for name, when, owner in (("near", near, pid), ("far", far, pid), ("other", near, "someone-else")):
        study, series, sop = uids[name]
        write_dx(archive / f"{name}.dcm", study=study, series=series, sop=sop, patient=owner, when=when)
    data = task_to_dict(load_task("acute-respiratory-infection"))
    data.update(name="visit-with-images", images={"days": 30})
    task_file = tmp_path / "visit.yaml"
    task_file.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "cohort"
    build_cohort([bundles], task_file, out, seed=1, progress=False, images=archive)
    got = defaultdict(set)
    for row in read_manifest(out):
        got[(row["patient_id"], datetime.fromisoformat(row["study_time"]))] = sop_uids(out / row["folder"])
    for (patient, index), sops in got.items():
        want = {uids["near"][2]} if patient == pid and index - timedelta(days=30) < near <= index else set()
        assert sops == want, (patient, index)
    assert any(sops for sops in got.values())
    counts = {e["reason"]: e["count"] for e in json.loads((out / REPORT_JSON).read_text())["exclusions"]}
    assert counts["imaging: study joined by PatientID and study time"] == sum(bool(s) for s in got.values())


@needs_orthanc
def test_a_dicomweb_server_joins_what_the_folder_joins(synthea_bundles, raw, tmp_path):
    """The same archive stored on a DICOMweb server (Orthanc): every sample gets the same files."""
    archive = tmp_path / "archive"
    imaging_archive(raw, archive)
    task = imaging_task(tmp_path)
    build_cohort([synthea_bundles], task, tmp_path / "from-folder", seed=1, progress=False, images=archive)
    with running_orthanc(tmp_path / "orthanc") as url:
        store(url, sorted(archive.rglob("*.dcm")))
        build_cohort(
            [synthea_bundles], task, tmp_path / "from-server", seed=1, progress=False, images=f"{url}/dicom-web"
        )
    folder_rows, server_rows = read_manifest(tmp_path / "from-folder"), read_manifest(tmp_path / "from-server")
    assert [r["sample_id"] for r in folder_rows] == [r["sample_id"] for r in server_rows]
    assert any(r["has_image"] == "1" for r in server_rows)
    for a, b in zip(folder_rows, server_rows):
        assert sop_uids(tmp_path / "from-server" / b["folder"]) == sop_uids(tmp_path / "from-folder" / a["folder"])
        assert a["has_image"] == b["has_image"]


def test_an_imaging_study_the_source_lacks_by_uid_joins_by_accession_number(tmp_path):
    """The archive holds the study under another Study Instance UID (re-identified on import) but with the
    record's accession number and PatientID (the Patient's MRN): joined by accession, counted as such."""
    from medmm.population.hygiene import clean_patient
    from medmm.population.imaging import BY_ACCESSION, FolderImages, join_images
    from medmm.population.record import PatientRecord, PopulationReport

    when = datetime(2024, 1, 5, 9, 30, tzinfo=timezone.utc)
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "MRN-7"}]}
    imaging = {
        "resourceType": "ImagingStudy",
        "id": "i1",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "started": when.isoformat(),
        "identifier": [
            {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"},
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "value": "ACC-42",
            },
        ],
    }
    record = PatientRecord("p1", patient, {"Patient": (patient,), "ImagingStudy": (imaging,)}, "p1.json")
    report = PopulationReport()
    clean = clean_patient(record, (), report)
    assert clean.imaging[0].study_uid == "1.2.3.4" and clean.imaging[0].accession == "ACC-42"
    archive = tmp_path / "archive"
    for name, accession in (("right", "ACC-42"), ("wrong", "ACC-43")):
        write_dx(
            archive / f"{name}.dcm",
            study=generate_uid(),
            series=generate_uid(),
            sop=f"1.9.{len(name)}",
            patient="MRN-7",
            when=when,
        )
        ds = pydicom.dcmread(archive / f"{name}.dcm")
        ds.AccessionNumber = accession
        ds.save_as(archive / f"{name}.dcm")
    source = FolderImages(archive, tmp_path, report)
    task = load_task("acute-respiratory-infection")
    joined = join_images(source, task, clean, when, clean.imaging, report)
    source.close()
    assert [(j.how, [h.sop_uid for h in j.files]) for j in joined] == [(BY_ACCESSION, ["1.9.5"])]
    assert report.counts["imaging: study joined by PatientID and AccessionNumber"] == 1
