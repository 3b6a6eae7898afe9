"""One DICOM file to decoded frames: parse, classify, decode pixels, apply the modality LUT.

Series assembly (grouping, slice order, spacing) lives in :mod:`medmm.io.dicom`. This module
turns one file into a :class:`DecodedFile` (an image) or a :class:`NonImageObject` (SR, RT,
SEG, DICOMDIR ...) and any failure into a :class:`~medmm.errors.DicomError` naming the file and
the element, never a value read from it.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import parse_fragments
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, as_pixel_options, convert_color_space, get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from medmm.errors import DicomError, MedmmError, UnsupportedDicomError
from medmm.io.dates import PLAUSIBLE_FROM_YEAR, plausible_time
from medmm.records import ImagePatient, Issue

# Failure reasons: every DicomError message raised here starts with one, so that a folder read
# can count its failures by kind.
NOT_DICOM = "not a DICOM file"
TRUNCATED = "truncated or corrupted"
NO_PIXELS = "no pixel data"
UNSUPPORTED = "unsupported encoding"
UNDECODABLE = "pixel data could not be decoded"
INVALID = "invalid attribute"
UNREADABLE = "file could not be read"

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
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PHOTOMETRICS = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
)
_ONE_SAMPLE = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_RLE_MAX_RATIO = 64
_CODESTREAM_STARTS = {
    **dict.fromkeys(JPEGTransferSyntaxes + JPEGLSTransferSyntaxes, (b"\xff\xd8",)),  # SOI
    **dict.fromkeys(JPEG2000TransferSyntaxes, (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")),
}
_PIXEL_INTEGERS = (
    "SamplesPerPixel",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
)
_TIME_SOURCES = (
    ("AcquisitionDateTime", None),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("SeriesDate", "SeriesTime"),
    ("StudyDate", "StudyTime"),
)
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?")


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


def tag_label(tag: int | str) -> str:
    """'(gggg,eeee) Keyword' for a tag or keyword, the form every message and Issue uses."""
    t = Tag(tag)
    return f"({t.group:04X},{t.element:04X}) {keyword_for_tag(t) or 'private element'}"


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


def _store_integers(ds: Dataset, source: str) -> None:
    """Store the pixel module's numbers as integers of their dictionary VR, as `_int` reads them.

    pydicom sizes the pixel data from the raw values: under a wrong VR a number stays text, and
    text times Rows x Columns is a repeated string of gigabytes, not a product.
    """
    for keyword in _PIXEL_INTEGERS:
        value = _get(ds, keyword, source)
        if value not in (None, "") and not isinstance(value, int):
            number = _int(ds, keyword, source, 0)
            ds.add_new(keyword, dictionary_VR(keyword), str(number) if keyword == "NumberOfFrames" else number)


def _transfer_syntax(ds: Dataset, source: str, issues: list[Issue]) -> str:
    """The transfer syntax, inferred from the encoding read when the meta header lacks it."""
    meta = getattr(ds, "file_meta", None)
    syntax = _text(meta, "TransferSyntaxUID", source, issues) if meta is not None else None
    if syntax:
        return syntax
    pixel = next((ds.get_item(k) for k in _PIXEL_KEYWORDS if k in ds), None)
    implicit, little = ds.original_encoding
    if getattr(pixel, "length", 0) == _UNDEFINED_LENGTH or implicit is None:
        raise DicomError(
            f"{INVALID}: missing, and the pixel data is encapsulated", path=source, where=tag_label("TransferSyntaxUID")
        )
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    issues.append(Issue(source, tag_label("TransferSyntaxUID"), f"missing; {syntax.name} inferred from the encoding"))
    ds.file_meta = meta if meta is not None else FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    return syntax


def _pixels(ds: Dataset, syntax: str, source: str) -> tuple[np.ndarray, str]:
    """Pixels as pydicom decodes them, and the photometric interpretation they come out in."""
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    where = tag_label(keyword)
    try:
        decoder = get_decoder(UID(syntax))
    except NotImplementedError:
        raise UnsupportedDicomError(
            f"{UNSUPPORTED}: no pixel decoder for transfer syntax {UID(syntax).name}",
            path=source,
            where=tag_label("TransferSyntaxUID"),
        ) from None
    if not decoder.is_available:
        raise UnsupportedDicomError(
            f"{UNSUPPORTED}: no installed plugin decodes {UID(syntax).name}",
            path=source,
            where=tag_label("TransferSyntaxUID"),
        )
    try:
        if decoder.is_native:
            have, need = len(ds[keyword].value), get_expected_length(ds)
            if have < need:
                raise DicomError(
                    f"{TRUNCATED}: {have} bytes of pixel data, the image attributes need {need}",
                    path=source,
                    where=where,
                )
        else:
            _check_encapsulated(ds, keyword, syntax, source)
        arr, props = decoder.as_array(ds, **as_pixel_options(ds))
    except MedmmError:
        raise
    except Exception as exc:
        raise DicomError(
            f"{UNDECODABLE} ({UID(syntax).name}, {type(exc).__name__})", path=source, where=where
        ) from None
    return arr, str(props.get("photometric_interpretation", ds.PhotometricInterpretation))


def _check_encapsulated(ds: Dataset, keyword: str, syntax: str, source: str) -> None:
    """Refuse image attributes the compressed data cannot fill, before a decoder allocates for them.

    Each frame takes one fragment or more; RLE decodes to at most 64 times its size (a 2-byte
    PackBits run repeats a byte 128 times); a JPEG-family frame starts with its codec's marker
    and states its size, which must be Rows x Columns. Decoders allocate for every frame before
    they look at the data.
    """
    data = ds[keyword].value
    items, offsets = parse_fragments(data)  # the Basic Offset Table item, then the fragments
    frames = _int(ds, "NumberOfFrames", source, 1)
    if frames > items - 1:
        raise DicomError(
            f"{TRUNCATED}: {frames} frame(s) declared, the encapsulated pixel data holds "
            f"{max(items - 1, 0)} fragment(s)",
            path=source,
            where=tag_label("NumberOfFrames"),
        )
    need = get_expected_length(ds)
    if syntax == RLELossless and need > _RLE_MAX_RATIO * len(data):
        raise DicomError(
            f"{TRUNCATED}: the image attributes need {need} bytes, more than {len(data)} bytes of RLE data can hold",
            path=source,
            where=tag_label(keyword),
        )
    first = bytes(data[offsets[1] + 8 : offsets[1] + 8 + 65536])  # the start of frame 0's codestream
    starts = _CODESTREAM_STARTS.get(syntax)
    if starts is not None and not first.startswith(starts):
        raise DicomError(
            f"{UNDECODABLE}: frame 0 does not start as {UID(syntax).name} data", path=source, where=tag_label(keyword)
        )
    size = _codestream_size(first, syntax)
    if size is not None and size != (_int(ds, "Rows", source, 0), _int(ds, "Columns", source, 0)):
        raise DicomError(
            f"{INVALID}: Rows and Columns differ from the size in the compressed image",
            path=source,
            where=tag_label("Rows"),
        )


def _codestream_size(stream: bytes, syntax: str) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG / JPEG-LS SOF or a JPEG 2000 SIZ segment; None when not found."""
    if syntax in JPEG2000TransferSyntaxes:  # SOC, SIZ, Lsiz, Rsiz, then Xsiz Ysiz XOsiz YOsiz
        if stream[:4] != b"\xff\x4f\xff\x51" or len(stream) < 24:
            return None
        x, y, x0, y0 = struct.unpack(">4L", stream[8:24])
        return y - y0, x - x0
    at = 2 if stream[:2] == b"\xff\xd8" and syntax in JPEGTransferSyntaxes + JPEGLSTransferSyntaxes else None
    while at is not None and at + 9 <= len(stream) and stream[at] == 0xFF:
        marker = stream[at + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xF7:  # SOFn, SOF55
            rows, columns = struct.unpack(">HH", stream[at + 5 : at + 9])
            return (rows, columns) if rows else None  # 0 rows: the height comes later, in a DNL marker
        at += 2 + struct.unpack(">H", stream[at + 2 : at + 4])[0]
    return None


def _modality_lut(
    frames: np.ndarray, ds: Dataset, source: str, issues: list[Issue]
) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    """Output values (F, H, W), the first frame's (slope, intercept), each frame's output range (F, 2)."""
    n = frames.shape[0]
    bits = _int(ds, "BitsStored", source, 0) or _int(ds, "BitsAllocated", source, 0)
    signed = _int(ds, "PixelRepresentation", source, 0) == 1
    if frames.dtype.kind == "f" or not 0 < bits <= 32:
        stored = np.array([np.nanmin(frames), np.nanmax(frames)], dtype=np.float64)
    else:
        stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1], dtype=np.int64)
    per_frame = [_rescale(_group_item(ds, i, "PixelValueTransformationSequence"), source, issues) for i in range(n)]
    if any(r is not None for r in per_frame):
        fallback = _rescale(ds, source, issues) or (1.0, 0.0)
        pairs = np.array([r or fallback for r in per_frame], dtype=np.float64)  # (F, 2)
        values = frames.astype(np.float64) * pairs[:, 0, None, None] + pairs[:, 1, None, None]
        ends = stored[None, :] * pairs[:, :1] + pairs[:, 1:]  # (F, 2)
        return values, (float(pairs[0, 0]), float(pairs[0, 1])), np.sort(ends, axis=1)
    if ds.get("ModalityLUTSequence"):
        values = apply_modality_lut(frames, ds).astype(np.float64)
        ends = apply_modality_lut(stored, ds).astype(np.float64)
        return values, (1.0, 0.0), np.tile(np.sort(ends), (n, 1))
    slope, intercept = _rescale(ds, source, issues) or (1.0, 0.0)
    values = frames.astype(np.float64) * slope + intercept  # the rescale of pydicom's apply_modality_lut
    return values, (slope, intercept), np.tile(np.sort(stored * slope + intercept), (n, 1))


def _rescale(item: Dataset | None, source: str, issues: list[Issue]) -> tuple[float, float] | None:
    """(slope, intercept) of an item; strict, since a wrong rescale would silently mislead."""
    if item is None or ("RescaleSlope" not in item and "RescaleIntercept" not in item):
        return None
    pair = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = _numbers(item, keyword, 1, source, None)
        if value is None:
            issues.append(Issue(source, tag_label(keyword), f"missing beside its partner; {default} used"))
        pair.append(default if value is None else value[0])
    if pair[0] == 0.0:
        raise DicomError(f"{INVALID}: rescale slope is zero", path=source, where=tag_label("RescaleSlope"))
    return pair[0], pair[1]


def _window(ds: Dataset, source: str, issues: list[Issue]) -> tuple[float, float] | None:
    """The first (WindowCenter, WindowWidth) pair, per-frame group first; None when absent or invalid."""
    item = _group_item(ds, 0, "FrameVOILUTSequence") or ds
    center, width = (_numbers(item, k, None, source, issues) for k in ("WindowCenter", "WindowWidth"))
    if center is None or width is None:
        return None
    if width[0] <= 0:
        issues.append(Issue(source, tag_label("WindowWidth"), "not positive; modality default used"))
        return None
    return center[0], width[0]


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


def _group_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The item of a functional-group sequence for a frame: per-frame groups override shared ones."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        outer = ds.get(groups)
        if outer and len(outer) > index and outer[index].get(sequence):
            return outer[index].get(sequence)[0]
    return None


def _get(item: Dataset, keyword: str, source: str) -> Any:
    try:
        return item.get(keyword)
    except Exception as exc:
        raise DicomError(
            f"{INVALID}: value cannot be read ({type(exc).__name__})", path=source, where=tag_label(keyword)
        ) from None


def _text(item: Dataset | None, keyword: str, source: str, issues: list[Issue]) -> str | None:
    """A string value (first of several), None when absent; unreadable values become an Issue."""
    try:
        value = _get(item, keyword, source) if item is not None else None
    except DicomError as err:
        issues.append(Issue(source, err.where or "", err.detail))
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    text = None if value is None else str(value).strip()
    return text or None


def _int(ds: Dataset, keyword: str, source: str, default: int) -> int:
    """A required integer of the image pixel module; strict, since pixels depend on it."""
    value = _get(ds, keyword, source)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DicomError(f"{INVALID}: expected an integer", path=source, where=tag_label(keyword)) from None


def _numbers(
    item: Dataset, keyword: str, count: int | None, source: str, issues: list[Issue] | None, *, positive: bool = False
) -> tuple[float, ...] | None:
    """`count` finite numbers (the first when count is None); None when absent or invalid.

    An invalid value becomes an Issue, or a DicomError when `issues` is None (strict).
    """
    try:
        value = _get(item, keyword, source)
        if value is None or value == "":
            return None
        values = [float(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
        values = values[:1] if count is None else values
        if len(values) != (count or 1) or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
            raise ValueError
    except (DicomError, TypeError, ValueError):
        expected = f"{count or 1} {'positive ' if positive else ''}number(s)"
        if issues is None:
            raise DicomError(f"{INVALID}: expected {expected}", path=source, where=tag_label(keyword)) from None
        issues.append(Issue(source, tag_label(keyword), f"expected {expected}; ignored"))
        return None
    return tuple(values)


def _warning_issues(source: str, caught: list[warnings.WarningMessage]) -> list[Issue]:
    """Parser warnings as Issues, with quoted text (which may be a patient value) removed."""
    seen: dict[str, None] = {}
    for w in caught:
        text = re.sub(r"b?'[^']*'|b?\"[^\"]*\"", "'...'", str(w.message)).split(" in file ")[0]
        seen.setdefault(" ".join(text.split())[:160], None)
    return [Issue(source, "data set", f"reader warning: {text}") for text in list(seen)[:5]]
