"""The non-pixel attributes of an image: identity, geometry, description, patient and acquisition time.

Read leniently: a problem becomes an Issue naming the element and the value is dropped, never
the image. Geometry is what series assembly needs (orientation, the position of every frame,
pixel and slice spacing), per-frame functional groups first; acquisition time is taken in UTC
from the first usable date/time source, which :mod:`medmm.io.dicom_index` reads the same way.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from pydicom.dataset import Dataset

from medmm.io.dates import PLAUSIBLE_FROM_YEAR, plausible_time
from medmm.io.dicom_elements import _group_item, _int, _numbers, _text, tag_label
from medmm.records import ImagePatient, Issue

_TIME_SOURCES = (
    ("AcquisitionDateTime", None),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("SeriesDate", "SeriesTime"),
    ("StudyDate", "StudyTime"),
)
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?")


def _attributes(ds: Dataset, source: str, n_frames: int, issues: list[Issue]) -> dict[str, Any]:
    """Identity, geometry, description and time of an image, leniently (problems become Issues)."""
    meta = getattr(ds, "file_meta", None)
    modality = _text(ds, "Modality", source, issues)
    if modality is None:
        modality = "OT"
        issues.append(Issue(source, tag_label("Modality"), "missing; OT (other) assumed"))
    plane = [_group_item(ds, i, "PlanePositionSequence") for i in range(n_frames)]
    if all(p is not None for p in plane):
        found = [_numbers(p, "ImagePositionPatient", 3, source, issues) for p in plane]
    else:
        found = [_numbers(ds, "ImagePositionPatient", 3, source, issues) if n_frames == 1 else None]
    measures = _group_item(ds, 0, "PixelMeasuresSequence") or ds
    spacing = _numbers(measures, "PixelSpacing", 2, source, issues, positive=True) or _numbers(
        ds, "ImagerPixelSpacing", 2, source, issues, positive=True
    )
    between = _numbers(measures, "SpacingBetweenSlices", 1, source, issues, positive=True) or _numbers(
        measures, "SliceThickness", 1, source, issues, positive=True
    )
    number = _numbers(ds, "InstanceNumber", 1, source, issues)
    acquired, assumed = _acquired(ds, source, issues)
    return dict(
        modality=modality,
        series_uid=_text(ds, "SeriesInstanceUID", source, issues),
        study_uid=_text(ds, "StudyInstanceUID", source, issues) or "",
        sop_uid=_text(ds, "SOPInstanceUID", source, issues)
        or (_text(meta, "MediaStorageSOPInstanceUID", source, issues) if meta is not None else None)
        or "",
        instance_number=None if number is None else int(number[0]),
        orientation=_numbers(
            _group_item(ds, 0, "PlaneOrientationSequence") or ds, "ImageOrientationPatient", 6, source, issues
        ),
        positions=tuple(found) if all(p is not None for p in found) else None,
        pixel_spacing=spacing,
        slice_spacing=None if between is None else between[0],
        bits_stored=_int(ds, "BitsStored", source, 0) or None,
        description=_text(ds, "SeriesDescription", source, issues),
        body_part=_text(ds, "BodyPartExamined", source, issues),
        view_position=_text(ds, "ViewPosition", source, issues),
        acquired=acquired,
        acquired_assumed_utc=assumed,
        patient=_patient(ds, source, issues),
    )


def _patient(ds: Dataset, source: str, issues: list[Issue]) -> ImagePatient | None:
    """Who the header says the image is of; None when it states nothing."""
    birth = _text(ds, "PatientBirthDate", source, issues)
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", birth or "")
    iso = f"{m[1]}-{m[2]}-{m[3]}" if m else None
    if birth and iso is None:
        issues.append(Issue(source, tag_label("PatientBirthDate"), "not a YYYYMMDD date; ignored"))
    sex = (_text(ds, "PatientSex", source, issues) or "").upper() or None
    age = _text(ds, "PatientAge", source, issues)
    if age is not None and not re.fullmatch(r"\d{3}[DWMY]", age):
        issues.append(Issue(source, tag_label("PatientAge"), "not nnnD/W/M/Y; ignored"))
        age = None
    patient = ImagePatient(_text(ds, "PatientID", source, issues), sex if sex in ("M", "F", "O") else None, age, iso)
    return None if patient == ImagePatient() else patient


def _acquired(ds: Dataset, source: str, issues: list[Issue]) -> tuple[datetime | None, bool]:
    """Acquisition time in UTC from the first usable date/time pair, and whether UTC was assumed.

    A date that is not a valid DICOM date/time, or that is implausible (before 1900, in the
    future), is reported and the next source is tried: only the time is dropped, never the image.
    """
    offset_text = _text(ds, "TimezoneOffsetFromUTC", source, issues)
    offset = _utc_offset(offset_text) if offset_text else None
    if offset_text and offset is None:
        issues.append(Issue(source, tag_label("TimezoneOffsetFromUTC"), "not +HHMM/-HHMM; ignored"))
    for date_kw, time_kw in _TIME_SOURCES:
        date = _text(ds, date_kw, source, issues)
        if not date:
            continue
        clock = _text(ds, time_kw, source, issues) if time_kw else ""
        text = date if time_kw is None else date.replace(".", "") + (clock or "").replace(":", "")
        m = _DT.fullmatch(text)
        try:
            y, mo, d, h, mi, s, frac, off = m.groups() if m else ()
            naive = datetime(
                int(y),
                int(mo or 1),
                int(d or 1),
                int(h or 0),
                int(mi or 0),
                min(int(s or 0), 59),
                int((frac or "0").ljust(6, "0")),
            )
            zone = _utc_offset(off) if off else offset
            when = naive.replace(tzinfo=zone or timezone.utc).astimezone(timezone.utc)
        except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset
            issues.append(Issue(source, tag_label(date_kw), "not a valid DICOM date/time; next source used"))
            continue
        if not plausible_time(when):
            issues.append(
                Issue(
                    source,
                    tag_label(date_kw),
                    f"implausible date (before {PLAUSIBLE_FROM_YEAR} or in the future); next source used",
                )
            )
            continue
        if time_kw and not clock:
            issues.append(Issue(source, tag_label(time_kw), "missing; 00:00 used"))
        return when, zone is None
    return None, False


def _utc_offset(text: str) -> timezone | None:
    m = re.fullmatch(r"([+-])(\d{2})(\d{2})", text.strip())
    if not m or int(m.group(2)) > 14 or int(m.group(3)) > 59:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))
