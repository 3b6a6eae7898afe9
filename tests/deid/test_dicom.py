"""DICOM de-identification: table actions, the rules for unlisted elements, refusals, pixels untouched."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from medmm.deid.dicom import collect_identifiers, deidentify_dicom, refusal_reason
from medmm.deid.mapping import Keys, PatientContext
from medmm.deid.text import Identifiers, Scrubber

CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.22"
STUDY = "1.2.826.0.1.3680043.9.4242.1"


def context(offset: int = -400) -> PatientContext:
    keys = Keys("unit")
    patient = keys.patient("p1")
    patient = type(patient)(patient.pseudonym, offset, "p1")
    return PatientContext(keys, patient, Scrubber(Identifiers(), offset))


def write(path: Path, *, sop_class: str = CT, modality: str = "CT", compress: bool = False, **attrs) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, STUDY + ".9"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, STUDY + ".2"
    ds.Modality = modality
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = 4, 6
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = np.arange(24, dtype=np.uint16).reshape(4, 6) * 100
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    if compress:
        ds.compress(RLELossless, pixels, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def run(tmp_path: Path, src: Path, ctx: PatientContext | None = None):
    out = tmp_path / "out" / src.name
    outcome = deidentify_dicom(src, out, ctx or context())
    return outcome, (pydicom.dcmread(out) if outcome.refused is None else None)


def test_table_actions_dummy_empty_remove_and_keep(tmp_path):
    src = write(
        tmp_path / "a.dcm",
        ProtocolName="CHEST ZELWEGGER",
        DetectorID="DET-77",
        AccessionNumber="A123",
        StudyDescription="for ZELWEGGER",
        PatientSex="F",
        PatientWeight="61.5",
        DeviceSerialNumber="SN-1",
        OperatorsName="RATCHEDLY^M",
    )
    outcome, ds = run(tmp_path, src)
    assert (
        ds.ProtocolName == ds.DetectorID == ds.DeviceSerialNumber == ds.OperatorsName == "ANONYMIZED"
    )  # X/D, X/Z/D -> D
    assert ds.AccessionNumber == ""  # Z
    assert "StudyDescription" not in ds  # X
    assert ds.PatientSex == "F" and ds.PatientWeight == 61.5  # K under Retain Patient Characteristics
    assert outcome.counts["D table"] == 4 and outcome.counts["X table"] == 1 and outcome.counts["K table"] == 2


def test_unlisted_elements_follow_the_stricter_rules(tmp_path):
    src = write(
        tmp_path / "a.dcm",
        HumanPerformerName="PERFORMER^ANNA",
        DateOfSecondaryCapture="20200301",
        DetectorDescription="bought by ZELWEGGER",
        ManufacturerModelName="Scanner 9",
        BodyPartExamined="CHEST",
        PyramidUID="1.2.3.4.5.6",
        SOPClassesInStudy=[CT, SR],
        KVP="120",
        GPSLatitude=["42", "21", "7"],
    )
    _, ds = run(tmp_path, src, context(-1))
    assert "HumanPerformerName" not in ds and "DetectorDescription" not in ds  # PN and free text: removed
    assert "GPSLatitude" not in ds  # photographic (EXIF) group: removed whatever the VR
    assert ds.DateOfSecondaryCapture == "20200229"  # a date: shifted (leap day, by hand)
    assert ds.ManufacturerModelName == "Scanner 9" and ds.BodyPartExamined == "CHEST" and ds.KVP == 120
    assert ds.PyramidUID == Keys("unit").uid("1.2.3.4.5.6")  # an instance UID: replaced
    assert list(ds.SOPClassesInStudy) == [CT, SR]  # standard class UIDs: kept


def test_private_elements_removed_at_every_depth_and_overlays_and_curves(tmp_path):
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = CT, STUDY + ".5"
    item.add_new(0x00290010, "LO", "VENDOR")
    item.add_new(0x00291001, "LO", "ZELWEGGER in an item")
    src = write(tmp_path / "a.dcm", SourceImageSequence=Sequence([item]))
    ds = pydicom.dcmread(src)
    ds.add_new(0x00090010, "LO", "VENDOR")
    ds.add_new(0x00091001, "UN", b"ZELWEGGER")
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 4)
    ds.add_new(0x50000010, "US", 2)
    ds.save_as(src)
    outcome, out = run(tmp_path, src)
    assert not any(e.tag.is_private for e in out.iterall())
    assert 0x60003000 not in out and 0x50000010 not in out
    (ref,) = out.SourceImageSequence  # U*: kept, its UIDs replaced
    assert ref.ReferencedSOPInstanceUID == Keys("unit").uid(STUDY + ".5") and ref.ReferencedSOPClassUID == CT
    assert outcome.counts["X private"] == 4
    assert b"ZELWEGGER" not in (tmp_path / "out" / "a.dcm").read_bytes()


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_dates_shift_multi_valued_and_unreadable_ones_are_emptied(tmp_path):
    src = write(
        tmp_path / "a.dcm",
        DateOfLastCalibration=["20200101", "20200301"],
        StudyDate="2020.03.01",
        AcquisitionDateTime="2020030112",
        ContentDate="not-a-date",
        StudyTime="235959",
    )
    outcome, ds = run(tmp_path, src, context(-1))
    assert list(ds.DateOfLastCalibration) == ["20191231", "20200229"]
    assert ds.StudyDate == "20200229"  # the old YYYY.MM.DD form is read too
    assert ds.AcquisitionDateTime == "2020022912"
    assert ds.StudyTime == "235959"  # times stay: the shift is whole days
    assert ds.ContentDate == "" and [i.where for i in outcome.issues] == ["(0008,0023) ContentDate"]


def test_pixels_and_transfer_syntax_untouched_compressed_too(tmp_path):
    for name, compress in (("raw.dcm", False), ("rle.dcm", True)):
        src = write(tmp_path / name, compress=compress)
        _, ds = run(tmp_path, src)
        original = pydicom.dcmread(src)
        assert ds.PixelData == original.PixelData
        assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        np.testing.assert_array_equal(ds.pixel_array, np.arange(24, dtype=np.uint16).reshape(4, 6) * 100)
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == Keys("unit").uid(STUDY + ".9")


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"BurnedInAnnotation": "YES"}, "Burned In Annotation is YES"),
        ({"RecognizableVisualFeatures": "YES"}, "Recognizable Visual Features"),
        ({"modality": "US", "sop_class": "1.2.840.10008.5.1.4.1.1.6.1"}, "modality US"),
        ({"modality": "OT", "sop_class": "1.2.840.10008.5.1.4.1.1.7"}, "modality OT"),
        ({"modality": "SR", "sop_class": SR}, f"SOP class {SR} is not among"),
    ],
)
def test_objects_the_profile_cannot_clean_are_refused(tmp_path, attrs, expected):
    src = write(tmp_path / "a.dcm", **attrs)
    outcome, _ = run(tmp_path, src)
    assert expected in outcome.refused
    assert not (tmp_path / "out" / "a.dcm").exists()


def test_burned_in_no_passes_and_reason_function_agrees(tmp_path):
    ds = Dataset()
    ds.SOPClassUID, ds.Modality, ds.BurnedInAnnotation = CT, "CT", "NO"
    assert refusal_reason(ds) is None
    del ds.SOPClassUID
    assert refusal_reason(ds).startswith("no SOP Class UID")


def test_archives_and_broken_files_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.dcm", "w") as archive:
        archive.writestr("inner.dcm", b"x")
    assert "zip archive" in run(tmp_path, tmp_path / "a.dcm")[0].refused
    (tmp_path / "b.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    assert run(tmp_path, tmp_path / "b.dcm")[0].refused is not None  # whatever pydicom makes of it: never written
    (tmp_path / "c.dcm").write_bytes(b"\x08\x00\x16\x00")  # a bare data set cut inside its first element
    assert run(tmp_path, tmp_path / "c.dcm")[0].refused is not None
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_identifiers_collected_from_every_depth(tmp_path):
    item = Dataset()
    item.PersonName = "Housington^Gregory"
    src = write(
        tmp_path / "a.dcm",
        PatientName="Zelwegger^Quixotica",
        PatientID="MRN-884211",
        AccessionNumber="ACC77123",
        PatientAddress="42 Wallaby Way",
        ContentCreatorIdentificationCodeSequence=Sequence([item]),
    )
    found = Identifiers()
    assert collect_identifiers(src, found) == ("MRN-884211",)
    assert {"Zelwegger", "Quixotica", "Housington", "Gregory"} <= found.names
    assert {"MRN-884211", "884211", "ACC77123", "77123"} <= found.ids and found.addresses == {"42 Wallaby Way"}


PLANTED_BY_VR = {
    "PN": "PLANTED^NAME",
    "LO": "PLANTED-LO",
    "SH": "PLANTED-SH",
    "ST": "PLANTED ST",
    "LT": "PLANTED LT",
    "UT": "PLANTED UT",
    "UC": "PLANTED UC",
    "UR": "http://planted.example",
    "AE": "PLANTEDAE",
    "CS": "PLANTED",
    "DA": "20200301",
    "DT": "20200301101010",
    "TM": "101010",
    "UI": "1.2.3.4.5.999",
    "IS": "4242",
    "DS": "4242.5",
    "AS": "042Y",
    "US": 4242,
    "SS": 4242,
    "UL": 4242,
    "SL": 4242,
    "FL": 4242.5,
    "FD": 4242.5,
    "OB": b"PLANTED!",
    "OW": b"PLANTED!",
    "UN": b"PLANTED!",
}


def test_every_row_of_the_table_is_applied_as_written(tmp_path):
    """All 300-odd attributes of the table planted in one object; each comes out as its action says."""
    from pydicom.datadict import dictionary_VR

    from medmm.deid.profile import TABLE

    rows = [e for e in TABLE if "x" not in e.tag.lower() and not e.tag.startswith(("0002", "FFF"))]
    src = write(tmp_path / "all.dcm")
    ds = pydicom.dcmread(src)
    planted = {}
    for e in rows:
        tag = int(e.tag.replace(",", ""), 16)
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.HumanPerformerName = "PLANTED^NAME"  # not in the table: removed by the PN rule
            item.ReferencedSOPInstanceUID = "1.2.3.4.5.999"
            value = Sequence([item])
        else:
            value = PLANTED_BY_VR[vr]
        ds.add_new(tag, vr, value)
        planted[tag] = (e, vr)
    ds.save_as(src)
    ctx = context(-1)
    outcome, out = run(tmp_path, src, ctx)
    assert outcome.refused is None and len(planted) == 311
    for tag, (e, vr) in planted.items():
        action, where = e.action, f"{e.keyword} {e.action}"
        if e.keyword in ("PatientID", "PatientName"):
            assert out[tag].value == ctx.patient.pseudonym, where
        elif action == "X":
            assert tag not in out, where
        elif vr == "SQ":  # Z empties it; D, U* and K keep it and clean its items
            items = out[tag].value
            assert len(items) == (0 if action == "Z" else 1), where
            for item in items:
                assert "HumanPerformerName" not in item and item.ReferencedSOPInstanceUID == ctx.keys.uid(
                    "1.2.3.4.5.999"
                ), where
        elif action == "Z":
            assert out[tag].value in ("", b"", None), where
        elif action == "D":
            assert out[tag].value in ("ANONYMIZED", "0", 0, b"\0\0") or vr == "UI", where
        elif action == "U":
            assert out[tag].value == ctx.keys.uid("1.2.3.4.5.999"), where
        elif action == "C":
            shifted = {"DA": "20200229", "DT": "20200229101010", "TM": "101010"}.get(vr, PLANTED_BY_VR[vr])
            assert out[tag].value == shifted, where  # dates shift a day back; times and offsets stay
        else:
            assert action == "K" and out[tag].value == ds[tag].value, where
