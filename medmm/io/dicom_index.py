"""Header-only scan of a DICOM folder: which files hold which study, to join images to records.

Only the tags a join needs are read (no pixel data): StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID, PatientID, AccessionNumber and the acquisition or study date and time (in UTC,
as `medmm.io.dicom` reads them). A file that is not DICOM, or has no StudyInstanceUID, is reported
as an Issue naming it, never dropped silently; hidden files (".name") are skipped unreported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from medmm.io.dicom_attributes import _acquired
from medmm.records import Issue

_TAGS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "PatientID",
    "AccessionNumber",
    "TimezoneOffsetFromUTC",
    "AcquisitionDateTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "ContentDate",
    "ContentTime",
    "SeriesDate",
    "SeriesTime",
    "StudyDate",
    "StudyTime",
)


@dataclass(frozen=True)
class DicomHeader:
    """The join keys of one DICOM file."""

    path: Path
    study_uid: str
    series_uid: str | None
    sop_uid: str | None
    patient_id: str | None
    accession: str | None
    time: datetime | None  # acquisition (else content, series, study) date and time, UTC


def _text(ds, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed element: the join treats it as absent
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def read_header(path: str | Path) -> DicomHeader | Issue:
    """The join keys of one file, or an Issue saying why it has none."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_TAGS))
    except (
        InvalidDicomError,
        OSError,
        ValueError,
        EOFError,
        TypeError,
        KeyError,
        AttributeError,
        OverflowError,
    ) as exc:
        return Issue(str(path), "", f"not a readable DICOM file ({type(exc).__name__}); not indexed", "skipped")
    uid = _text(ds, "StudyInstanceUID")
    if uid is None:
        return Issue(str(path), "(0020,000D) StudyInstanceUID", "missing; file not indexed", "skipped")
    issues: list[Issue] = []
    try:
        when, _ = _acquired(ds, str(path), issues)
    except Exception:  # a malformed date element: no time, the file stays indexed
        when = None
    return DicomHeader(
        path,
        uid,
        _text(ds, "SeriesInstanceUID"),
        _text(ds, "SOPInstanceUID"),
        _text(ds, "PatientID"),
        _text(ds, "AccessionNumber"),
        when,
    )


def scan_headers(root: str | Path) -> Iterator[DicomHeader | Issue]:
    """Every file under `root` (sorted, recursively, hidden ones skipped): its header, or why it has none."""
    root = Path(root)
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield read_header(path)
