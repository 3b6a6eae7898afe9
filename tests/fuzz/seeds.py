"""Seed inputs for the ingest fuzzer: real DICOM files shipped with pydicom, small DICOM files
built here, a FHIR R4 bundle (and its NDJSON and R5 forms), and vitals tables (long, wide, Parquet).

Seeds are valid inputs that exercise every reader path; the mutators break them.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.io.fhir_fixtures import as_r5, as_searchset, synthea_bundle, uid

DICOM, ZIP, FHIR, NDJSON, VITALS, PARQUET = "dicom", "zip", "fhir", "ndjson", "vitals", "parquet"
SUFFIX = {DICOM: ".dcm", ZIP: ".zip", FHIR: ".json", NDJSON: ".ndjson", VITALS: ".csv", PARQUET: ".parquet"}

# pydicom test files: explicit / implicit / big-endian VR, RLE, JPEG baseline, JPEG 2000,
# JPEG-LS, deflated, multi-frame RGB, native RGB, no file meta, and non-image objects.
PYDICOM_SEEDS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEGLSNearLossless_08.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_small_odd.dcm",
    "image_dfl.dcm",
    "ExplVR_LitEndNoMeta.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
)

_CR_SOP = "1.2.840.10008.5.1.4.1.1.1"
_ENHANCED_CT_SOP = "1.2.840.10008.5.1.4.1.1.2.1"
_CT_SOP = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Seed:
    """One valid input: its kind, a file name, its bytes, and the structure text mutators edit."""

    kind: str
    name: str
    data: bytes
    doc: Any = None  # FHIR: the JSON object (NDJSON: the list of resources)
    rows: tuple[tuple[str, ...], ...] = field(default=())  # tables: header then data rows, as text


def _item(**attrs: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _part10(ds: Dataset, sop_class: str, syntax: str, instance: str) -> bytes:
    """`ds` as Part-10 bytes with a file meta header; `instance` is the SOP instance UID."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = instance
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.1", "2.25.1.1"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def radiograph_bytes() -> bytes:
    """A 12-bit MONOCHROME1 chest radiograph (CR), 24x20, with a stored window and a UTC offset."""
    ds = _item(
        Modality="CR",
        Rows=24,
        Columns=20,
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME1",
        BitsAllocated=16,
        BitsStored=12,
        HighBit=11,
        PixelRepresentation=0,
        ImagerPixelSpacing=[0.2, 0.2],
        ViewPosition="PA",
        BodyPartExamined="CHEST",
        WindowCenter=[2048, 1500],
        WindowWidth=[4096, 2000],
        AcquisitionDate="20240310",
        AcquisitionTime="081500.25",
        TimezoneOffsetFromUTC="-0500",
    )
    ds.PixelData = (np.arange(24 * 20, dtype=np.uint16).reshape(24, 20) * 8).tobytes()
    return _part10(ds, _CR_SOP, ExplicitVRLittleEndian, "2.25.1.1.1")


def enhanced_ct_bytes() -> bytes:
    """A 3-frame enhanced CT with per-frame positions and rescale, frames stored out of order."""
    per_frame = [
        _item(
            PlanePositionSequence=[_item(ImagePositionPatient=[0, 0, z])],
            PixelValueTransformationSequence=[_item(RescaleSlope=1, RescaleIntercept=-1024)],
        )
        for z in (20.0, 10.0, 15.0)
    ]
    shared = _item(
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])],
        PixelMeasuresSequence=[_item(PixelSpacing=[0.8, 0.8], SliceThickness=5)],
    )
    ds = _item(
        Modality="CT",
        Rows=8,
        Columns=6,
        NumberOfFrames=3,
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=16,
        BitsStored=16,
        HighBit=15,
        PixelRepresentation=1,
        SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=per_frame,
        AcquisitionDateTime="20240310081500+0100",
    )
    ds.PixelData = (np.arange(3 * 8 * 6, dtype=np.int16) - 50).tobytes()
    return _part10(ds, _ENHANCED_CT_SOP, ExplicitVRLittleEndian, "2.25.1.1.2")


def implicit_ct_bytes(z: float = 0.0) -> bytes:
    """A 16x16 implicit-VR CT slice with geometry and rescale (a member of a small volume)."""
    ds = _item(
        Modality="CT",
        Rows=16,
        Columns=16,
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=16,
        BitsStored=12,
        HighBit=11,
        PixelRepresentation=0,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        PixelSpacing=[0.7, 0.7],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        ImagePositionPatient=[0, 0, z],
        InstanceNumber=int(z) + 1,
        StudyDate="20240310",
        StudyTime="0800",
    )
    ds.PixelData = np.full((16, 16), 1000 + int(z), np.uint16).tobytes()
    return _part10(ds, _CT_SOP, ImplicitVRLittleEndian, f"2.25.1.1.3.{int(z)}")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive (stored, not compressed, so that byte mutations hit the members), the same
    bytes on every run (a fixed member time, not the clock)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def dicom_seeds() -> list[Seed]:
    """pydicom's local test files (never downloaded) and the files built here."""
    seeds = []
    for name in PYDICOM_SEEDS:
        path = get_testdata_file(name, download=False)
        if path is None:
            raise FileNotFoundError(f"pydicom test file {name} is not installed")
        with open(path, "rb") as fh:
            seeds.append(Seed(DICOM, name, fh.read()))
    seeds += [
        Seed(DICOM, "cr_monochrome1.dcm", radiograph_bytes()),
        Seed(DICOM, "enhanced_ct.dcm", enhanced_ct_bytes()),
        Seed(DICOM, "implicit_ct.dcm", implicit_ct_bytes()),
    ]
    volume = {f"ct/s{k}.dcm": implicit_ct_bytes(float(k)) for k in range(3)}
    seeds.append(Seed(ZIP, "volume.zip", zip_bytes(volume)))
    return seeds


_ODD_OBSERVATIONS = {uid("hr-implausible"), uid("temp-kelvin")}  # a value to drop, a unit to refuse


def small_bundle() -> dict[str, Any]:
    """The fixture's Synthea-like R4 bundle cut to one Observation per code and the odd ones (fast to read)."""
    bundle, _ = synthea_bundle()
    kept, per_code = [], {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation":
            code = res["code"]["coding"][0]["code"]
            per_code[code] = per_code.get(code, 0) + 1
            if per_code[code] > 1 and res.get("id") not in _ODD_OBSERVATIONS:
                continue
        kept.append(entry)
    return {**bundle, "entry": kept}


def fhir_seeds() -> list[Seed]:
    """An R4 transaction bundle, the same as an R5 searchset, and as Bulk Data NDJSON."""
    bundle = small_bundle()
    r5 = as_searchset(as_r5(copy.deepcopy(bundle)))
    resources = [e["resource"] for e in bundle["entry"]]
    ndjson = "\n".join(json.dumps(r) for r in resources) + "\n"
    return [
        Seed(FHIR, "bundle.json", json.dumps(bundle).encode(), doc=bundle),
        Seed(FHIR, "bundle_r5.json", json.dumps(r5).encode(), doc=r5),
        Seed(NDJSON, "export.ndjson", ndjson.encode(), doc=resources),
    ]


_LONG = (
    ("time", "code", "value", "unit"),
    ("2024-03-09T20:10:00+00:00", "8867-4", "88", "/min"),
    ("2024-03-09T20:10:00+00:00", "9279-1", "18", "/min"),
    ("2024-03-09T21:10:00-05:00", "59408-5", "95", "%"),
    ("2024-03-09T21:10:00", "8310-5", "100.4", "[degF]"),
    ("2024-03-09T22:10:00Z", "8480-6", "128", "mm[Hg]"),
    ("2024-03-09T22:10:00Z", "8462-4", "81", "mm[Hg]"),
    ("2024-03-09T23:00:00+01:00", "29463-7", "154", "[lb_av]"),
    ("2024-03-10T01:00:00+00:00", "heart_rate", "92", "{beats}/min"),
)
_WIDE = (
    ("time", "heart_rate [/min]", "8310-5 [Cel]", "spo2 [%]", "29463-7 [kg]"),
    ("2024-03-09T20:00:00+00:00", "80", "37.2", "97", "70.5"),
    ("2024-03-09T21:00:00+00:00", "", "38.4", "", ""),
    ("2024-03-09T22:00:00", "101", "", "93", ""),
)


def table_text(rows: tuple[tuple[str, ...], ...] | list[list[str]]) -> bytes:
    """Rows as CSV text without quoting, so that mutated cells reach the parser as written."""
    return ("\n".join(",".join(r) for r in rows) + "\n").encode("utf-8", "surrogateescape")


def parquet_bytes(rows: tuple[tuple[str, ...], ...] | list[list[str]], typed: bool = True) -> bytes:
    """Rows as a Parquet table; `typed` converts times to timestamps and values to floats."""
    header, body = list(rows[0]), [list(r) + [""] * (len(rows[0]) - len(r)) for r in rows[1:]]
    frame = pd.DataFrame([r[: len(header)] for r in body], columns=header)
    if typed:
        for column in frame.columns:
            if column == "time":
                frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
            elif column == "value":
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def vitals_seeds() -> list[Seed]:
    """A long and a wide CSV table and a long Parquet table."""
    return [
        Seed(VITALS, "vitals.csv", table_text(_LONG), rows=_LONG),
        Seed(VITALS, "vitals_wide.csv", table_text(_WIDE), rows=_WIDE),
        Seed(PARQUET, "vitals.parquet", parquet_bytes(_LONG), rows=_LONG),
    ]


@lru_cache(maxsize=1)
def all_seeds() -> tuple[Seed, ...]:
    """Every seed, DICOM first (built once per process)."""
    return tuple(dicom_seeds() + fhir_seeds() + vitals_seeds())
