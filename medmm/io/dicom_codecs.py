"""Pixel data to an array: the transfer syntax, the pixel module's integers, and the codecs.

The transfer syntax is inferred from the encoding when the meta header lacks it; the pixel
module's numbers are stored as integers before pydicom sizes the pixel data from them;
encapsulated (compressed) data is checked against the image attributes before a decoder
allocates for them; pydicom's decoders and their plugins decode, and any failure becomes a
typed DicomError naming the element.
"""

from __future__ import annotations

import struct

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import parse_fragments
from pydicom.pixels import as_pixel_options, get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from medmm.errors import DicomError, MedmmError, UnsupportedDicomError
from medmm.io.dicom_elements import (
    _UNDEFINED_LENGTH,
    INVALID,
    TRUNCATED,
    UNDECODABLE,
    UNSUPPORTED,
    _get,
    _int,
    _text,
    tag_label,
)
from medmm.records import Issue

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
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
