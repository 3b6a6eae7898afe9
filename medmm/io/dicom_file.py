"""One DICOM file to decoded frames: read, check, classify, decode pixels, apply the modality LUT.

Series assembly (grouping, slice order, spacing) lives in :mod:`medmm.io.dicom`. This module
turns one file into a :class:`DecodedFile` (an image) or a :class:`NonImageObject` (SR, RT,
SEG, DICOMDIR ...) and any failure into a :class:`~medmm.errors.DicomError` naming the file and
the element, never a value read from it. It owns the file as a whole (recognising DICOM,
completeness, classification, photometric handling, parser warnings); the steps it calls live
beside it: element reading in :mod:`medmm.io.dicom_elements`, pixel decoding in
:mod:`medmm.io.dicom_codecs`, output units in :mod:`medmm.io.dicom_lut` and the header
attributes in :mod:`medmm.io.dicom_attributes`.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medmm.errors import DicomError, MedmmError, UnsupportedDicomError
from medmm.io.dicom_attributes import _attributes
from medmm.io.dicom_codecs import _PIXEL_KEYWORDS, _pixels, _store_integers, _transfer_syntax
from medmm.io.dicom_elements import (
    _UNDEFINED_LENGTH,
    INVALID,
    NO_PIXELS,
    NOT_DICOM,
    TRUNCATED,
    UNREADABLE,
    UNSUPPORTED,
    _int,
    _text,
    tag_label,
)
from medmm.io.dicom_lut import _modality_lut, _window
from medmm.records import ImagePatient, Issue

DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_RT_IMAGE_SOP = "1.2.840.10008.5.1.4.1.1.481.1"
_NON_IMAGE_SOP: dict[str, str] = {
    DICOMDIR_SOP: "DICOMDIR",
    "1.2.840.10008.5.1.4.1.1.88.59": "KO",
    "1.2.840.10008.5.1.4.1.1.481.2": "RTDOSE",
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
    "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",
    "1.2.840.10008.5.1.4.1.1.481.8": "RTPLAN",  # RT Ion Plan
    "1.2.840.10008.5.1.4.1.1.66": "RAW",
    "1.2.840.10008.5.1.4.1.1.66.1": "REG",
    "1.2.840.10008.5.1.4.1.1.66.2": "FID",
    "1.2.840.10008.5.1.4.1.1.66.3": "REG",
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.66.5": "SEG",  # surface segmentation
    "1.2.840.10008.5.1.4.1.1.104.1": "DOC",  # encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.104.2": "DOC",  # encapsulated CDA
}
_NON_IMAGE_PREFIX = (
    ("1.2.840.10008.5.1.4.1.1.88.", "SR"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PR"),
    ("1.2.840.10008.5.1.4.1.1.9.", "WAVEFORM"),
    ("1.2.840.10008.5.1.4.1.1.481.", "RT"),  # RT Image (.481.1) is a picture and excluded
)
_NON_IMAGE_MODALITIES = frozenset(
    {"SR", "KO", "PR", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "SEG", "REG", "FID", "DOC", "ECG", "HD"}
)
_PHOTOMETRICS = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
)
_ONE_SAMPLE = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)


@dataclass(frozen=True)
class NonImageObject:
    """A valid DICOM object that is reported, not turned into pixels (SR, RT, SEG, DICOMDIR ...)."""

    path: str
    kind: str  # "DICOMDIR" | "SR" | "KO" | "PR" | "RTSTRUCT" | "RTPLAN" | "RTDOSE" | "SEG" | "WAVEFORM" | ...
    sop_class_uid: str | None
    modality: str | None


@dataclass(frozen=True)
class DecodedFile:
    """One image file as frames in output units, plus the attributes series assembly needs."""

    source: str
    frames: np.ndarray  # (F, H, W) or (F, H, W, 3) float32; modality LUT applied, MONOCHROME1 inverted
    modality: str
    series_uid: str | None
    study_uid: str
    sop_uid: str
    instance_number: int | None
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 6 direction cosines
    positions: tuple[tuple[float, ...], ...] | None  # ImagePositionPatient of every frame, or None
    pixel_spacing: tuple[float, float] | None  # (row, column) mm: PixelSpacing, else ImagerPixelSpacing
    slice_spacing: float | None  # SpacingBetweenSlices, else SliceThickness
    photometric: str  # as stored
    inverted: bool
    window: tuple[float, float] | None  # (center, width) in output units; None when absent or colour
    rescale: tuple[float, float]  # (slope, intercept) of the first frame
    bits_stored: int | None
    transfer_syntax: str | None
    description: str | None
    body_part: str | None
    view_position: str | None
    acquired: datetime | None  # UTC
    acquired_assumed_utc: bool  # no offset in the file: the naive time was taken as UTC
    patient: ImagePatient | None = None  # PatientID, PatientSex, PatientAge, PatientBirthDate as stated
    issues: tuple[Issue, ...] = ()


def looks_like_dicom(head: bytes, size: int) -> bool:
    """True for a Part-10 file ('DICM' at 128) or a bare data set that starts in group 0002/0008."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    for order in "<>":
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _VRS:  # explicit VR
            return True
        (length,) = struct.unpack("<L", head[4:8])
        if order == "<" and (length == 4 if element == 0 else 0 < length <= size - 8):  # implicit VR
            return True
    return False


def decode_file(source: str, data: bytes | None = None) -> DecodedFile | NonImageObject:
    """Decode one DICOM file, from `data` when given, else from the path `source`.

    Raises DicomError naming `source` and the element; every exception from pydicom, numpy or a
    codec is converted (without its text, which may quote patient values), none escapes.
    """
    issues: list[Issue] = []
    try:  # catch_warnings is process-wide: parallel reads belong in processes, not threads
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _decode(source, data, issues)
        if isinstance(result, DecodedFile):
            result = replace(result, issues=tuple(issues + _warning_issues(source, caught)))
        return result
    except MedmmError:
        raise
    except Exception as exc:
        raise DicomError(f"{UNREADABLE}: unexpected {type(exc).__name__}", path=source, where="data set") from None


def _decode(source: str, data: bytes | None, issues: list[Issue]) -> DecodedFile | NonImageObject:
    if data is None:
        try:
            with open(source, "rb") as fh:
                head = fh.read(132)  # look before reading the rest: folders hold other large files
                if not looks_like_dicom(head, os.fstat(fh.fileno()).st_size):
                    raise DicomError(NOT_DICOM, path=source)
                data = head + fh.read()
        except OSError as exc:
            raise DicomError(f"{UNREADABLE} ({type(exc).__name__})", path=source) from None
    size = len(data)
    if not looks_like_dicom(data[:132], size):
        raise DicomError(NOT_DICOM, path=source)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise DicomError(f"{TRUNCATED}: parsing failed ({type(exc).__name__})", path=source, where="data set") from None
    _check_complete(ds, size, source)
    non_image = _classify(ds, source)
    return non_image if non_image is not None else _decode_image(ds, source, issues)


def _check_complete(ds: Dataset, size: int, source: str) -> None:
    """Fail when an element is cut short: pydicom reads a truncated file without complaint."""
    if len(ds) == 0:
        raise DicomError(f"{TRUNCATED}: no data set after the file meta information", path=source)
    meta = getattr(ds, "file_meta", None)
    deflated = meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    end, last = 0, None  # offsets of a deflated file refer to the inflated stream: lengths only
    for tag in ds.keys():
        elem = ds.get_item(tag, keep_deferred=True)
        tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
        if tell is None or length is None or length == _UNDEFINED_LENGTH:
            continue
        value = getattr(elem, "value", None)
        if isinstance(value, (bytes, bytearray)) and len(value) < length or not deflated and tell + length > size:
            raise DicomError(f"{TRUNCATED}: value shorter than its declared length", path=source, where=tag_label(tag))
        if tell + length > end:
            end, last = tell + length, tag
    if not deflated and last is not None and 0 < size - end < 8:
        raise DicomError(
            f"{TRUNCATED}: file ends inside an element header", path=source, where=f"after {tag_label(last)}"
        )


def _classify(ds: Dataset, source: str) -> NonImageObject | None:
    """A NonImageObject for DICOMDIR, SR, RT, SEG, PR and the like; None for an image."""
    meta = getattr(ds, "file_meta", None)
    sop = _text(ds, "SOPClassUID", source, []) or (_text(meta, "MediaStorageSOPClassUID", source, []) if meta else None)
    modality = _text(ds, "Modality", source, [])
    kind = _NON_IMAGE_SOP.get(sop or "")
    if sop == DICOMDIR_SOP or "DirectoryRecordSequence" in ds:
        kind = "DICOMDIR"
    elif kind is None and sop and sop != _RT_IMAGE_SOP:
        kind = next((k for prefix, k in _NON_IMAGE_PREFIX if sop.startswith(prefix)), None)
    if kind is None and not any(k in ds for k in _PIXEL_KEYWORDS):
        if modality not in _NON_IMAGE_MODALITIES:
            raise DicomError(
                f"{NO_PIXELS}, and not a known non-image object", path=source, where=tag_label("PixelData")
            )
        kind = modality
    return None if kind is None else NonImageObject(source, kind, sop, modality)


def _decode_image(ds: Dataset, source: str, issues: list[Issue]) -> DecodedFile:
    syntax = _transfer_syntax(ds, source, issues)
    samples = _int(ds, "SamplesPerPixel", source, 1)
    photometric = _text(ds, "PhotometricInterpretation", source, issues)
    if photometric is None:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
        issues.append(Issue(source, tag_label("PhotometricInterpretation"), f"missing; {photometric} assumed"))
        ds.PhotometricInterpretation = photometric
    if photometric not in _PHOTOMETRICS or samples != (1 if photometric in _ONE_SAMPLE else 3):
        raise UnsupportedDicomError(
            f"{UNSUPPORTED}: photometric interpretation not handled with this many samples per pixel",
            path=source,
            where=tag_label("PhotometricInterpretation"),
        )
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if _int(ds, keyword, source, 0) <= 0:
            raise DicomError(f"{INVALID}: missing or not a positive integer", path=source, where=tag_label(keyword))
    if _int(ds, "NumberOfFrames", source, 1) <= 0:
        raise DicomError(f"{INVALID}: not a positive integer", path=source, where=tag_label("NumberOfFrames"))
    _store_integers(ds, source)
    arr, decoded_as = _pixels(ds, syntax, source)
    if photometric == "PALETTE COLOR":
        arr, decoded_as = apply_color_lut(arr, ds), "RGB"
    colour = samples == 3 or photometric == "PALETTE COLOR"
    frames = arr[None] if arr.ndim == (3 if colour else 2) else arr  # (F, H, W[, 3])
    common: dict[str, Any] = dict(
        source=source,
        photometric=photometric,
        transfer_syntax=syntax,
        **_attributes(ds, source, frames.shape[0], issues),
    )
    if colour:
        if decoded_as in ("YBR_FULL", "YBR_FULL_422"):
            if frames.dtype != np.uint8:
                raise UnsupportedDicomError(
                    f"{UNSUPPORTED}: YBR colour above 8 bits", path=source, where=tag_label("PhotometricInterpretation")
                )
            frames = convert_color_space(frames, decoded_as, "RGB")
        return DecodedFile(frames=frames.astype(np.float32), inverted=False, window=None, rescale=(1.0, 0.0), **common)
    values, rescale, ranges = _modality_lut(frames, ds, source, issues)  # (F, H, W) float64, (F, 2)
    window = _window(ds, source, issues)
    inverted = photometric == "MONOCHROME1"
    if inverted:  # flip within the range the stored bits can hold, so every slice flips alike
        values = ranges[:, 0, None, None] + ranges[:, 1, None, None] - values  # (F, H, W)
        if window is not None:
            window = (float(ranges[0, 0] + ranges[0, 1] - window[0]), window[1])
    return DecodedFile(frames=values.astype(np.float32), inverted=inverted, window=window, rescale=rescale, **common)


def _warning_issues(source: str, caught: list[warnings.WarningMessage]) -> list[Issue]:
    """Parser warnings as Issues, with quoted text (which may be a patient value) removed."""
    seen: dict[str, None] = {}
    for w in caught:
        text = re.sub(r"b?'[^']*'|b?\"[^\"]*\"", "'...'", str(w.message)).split(" in file ")[0]
        seen.setdefault(" ".join(text.split())[:160], None)
    return [Issue(source, "data set", f"reader warning: {text}") for text in list(seen)[:5]]
