from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from medmm.codes import SOP_CR, SOP_CT, SOP_DX


def radiographs(cohort, manifest):
    for pid in manifest.patient_id:
        path = cohort / pid / "images" / "radiograph.dcm"
        if path.exists():
            yield pid, path, json.loads((cohort / pid / "truth.json").read_text())


def test_every_dicom_file_reads_and_decodes(cohort):
    files = sorted(cohort.rglob("*.dcm"))
    assert len(files) > 24
    for path in files:
        ds = pydicom.dcmread(path)  # plain read: Part-10 with a file meta header
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        arr = ds.pixel_array
        assert arr.shape == (ds.Rows, ds.Columns) and arr.dtype == np.uint16
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert int(arr.max()) <= 4095


def test_radiograph_metadata_matches_the_plan(cohort, manifest):
    syntaxes, photometrics, modalities, windows = set(), set(), set(), set()
    for pid, path, truth in radiographs(cohort, manifest):
        ds = pydicom.dcmread(path)
        info = truth["image"]
        assert ds.PatientID == pid and ds.PatientName == ""
        assert ds.PatientSex == ("F" if truth["demographics"]["sex"] == "female" else "M")
        assert ds.PatientBirthDate == truth["demographics"]["birth_date"].replace("-", "")
        when = datetime.strptime(ds.StudyDate + ds.StudyTime, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        assert when == datetime.fromisoformat(truth["study_time"])
        assert ds.TimezoneOffsetFromUTC == "+0000"
        assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition in ("PA", "AP")
        assert ds.Modality == info["modality"]
        assert ds.SOPClassUID == (SOP_DX if ds.Modality == "DX" else SOP_CR)
        spacing = ds.ImagerPixelSpacing if ds.Modality == "DX" else ds.PixelSpacing
        assert [float(x) for x in spacing] == pytest.approx([info["spacing_mm"]] * 2, abs=1e-4)
        assert ds.PhotometricInterpretation == info["photometric"]
        assert ds.file_meta.TransferSyntaxUID == info["transfer_syntax"]
        assert (ds.Rows, ds.Columns) == (info["rows"], info["columns"])
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        photometrics.add(ds.PhotometricInterpretation)
        modalities.add(ds.Modality)
        windows.add("WindowCenter" in ds)
    assert syntaxes == {ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless}
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"} and modalities == {"CR", "DX"}
    assert windows == {True, False}


def test_monochrome1_reads_correctly_after_inversion(cohort, manifest):
    for _, path, truth in radiographs(cohort, manifest):
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array.astype(float)
        shown = 4095 - arr if ds.PhotometricInterpretation == "MONOCHROME1" else arr
        with np.load(path.parent.parent / "truth-lesions.npz", allow_pickle=False) as z:
            lungs, heart = z["lungs"], z["heart"]
        assert shown[lungs].mean() < shown[heart].mean() - 300  # lungs dark, heart bright
        if "WindowCenter" in ds:
            centre = float(ds.WindowCenter)
            assert arr.min() <= centre <= arr.max()


def test_images_use_the_fhir_birth_date_and_identifier(cohort, manifest, bundles):
    for pid, path, _ in radiographs(cohort, manifest):
        bundle = bundles[pid][0]
        patient = next(e.resource for e in bundle.entry if e.resource.__resource_type__ == "Patient")
        ds = pydicom.dcmread(path)
        assert ds.PatientBirthDate == patient.birthDate.strftime("%Y%m%d")
        assert patient.identifier[0].value == ds.PatientID


def test_ct_series_sorts_by_position_not_by_name(cohort, manifest):
    seen = 0
    for pid in manifest.patient_id:
        ct_files = sorted((cohort / pid / "images").glob("ct/*.dcm"))
        if not ct_files:
            continue
        seen += 1
        truth = json.loads((cohort / pid / "truth.json").read_text())
        datasets = [pydicom.dcmread(p) for p in ct_files]
        for ds in datasets:
            assert ds.SOPClassUID == SOP_CT and ds.Modality == "CT"
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
            assert [float(x) for x in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
        normal = np.array([0.0, 0.0, 1.0])  # cross product of the row and column cosines
        position = [float(np.dot(normal, [float(x) for x in ds.ImagePositionPatient])) for ds in datasets]
        order = np.argsort(position)
        assert list(order) != list(range(len(order)))  # file names do not give the anatomical order
        hu = np.stack([datasets[i].pixel_array.astype(float) - 1024 for i in order])
        with np.load(cohort / pid / truth["ct"]["mask_file"], allow_pickle=False) as z:
            lungs = z["lungs"]
        assert hu.shape == lungs.shape
        aerated = (hu[lungs] < -600).mean()
        assert aerated > 0.7  # lesions planted inside the lungs may fill part of them
        assert aerated > (hu[::-1][lungs] < -600).mean() + 0.05  # the reverse order would not fit
        assert np.diff(sorted(position)) == pytest.approx([float(datasets[0].SliceThickness)] * (len(position) - 1))
    assert seen > 0


def test_uids_are_valid_and_unique(cohort):
    sops = []
    for path in cohort.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
            assert uid.is_valid
        sops.append(ds.SOPInstanceUID)
    assert len(sops) == len(set(sops))
