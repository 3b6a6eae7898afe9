"""Encapsulated pixel data checked before a decoder allocates for it (medmm.io.dicom_codecs).

Regressions found by the ingest fuzzer (tests/fuzz): pydicom's test files with image attributes
the compressed data cannot fill, each refused with a DicomError naming the element.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medmm.errors import DicomError
from medmm.io.dicom import read_dicom


def pydicom_file_with(tmp_path: Path, name: str, **attrs: object) -> Path:
    """A copy of a pydicom test file with some attributes changed."""
    ds = pydicom.dcmread(get_testdata_file(name))
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_rle_image_larger_than_its_data_can_hold_is_refused_before_decoding(tmp_path):
    # the decoder allocated and filled 8 GiB for 6 kB of RLE data before this check
    path = pydicom_file_with(tmp_path, "MR_small_RLE.dcm", Rows=65535, Columns=65535)
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.where == "(7FE0,0010) PixelData" and "RLE data can hold" in err.value.detail
    assert f"need {65535 * 65535 * 2} bytes" in err.value.detail


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEGLSNearLossless_08.dcm"]
)
def test_more_frames_than_fragments_are_refused_before_decoding(tmp_path, name):
    path = pydicom_file_with(tmp_path, name, NumberOfFrames=100_000)
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.where == "(0028,0008) NumberOfFrames"
    assert "100000 frame(s) declared, the encapsulated pixel data holds 1 fragment(s)" in err.value.detail


@pytest.mark.parametrize(
    "name, size",
    [("JPEG2000.dcm", (1024, 256)), ("SC_rgb_jpeg_dcmtk.dcm", (100, 100)), ("JPEGLSNearLossless_08.dcm", (45, 10))],
)
def test_rows_and_columns_must_match_the_compressed_image(tmp_path, name, size):
    (s,) = read_dicom(get_testdata_file(name)).series  # as stored: attributes and codestream agree
    assert s.pixels.shape[:2] == size
    path = pydicom_file_with(tmp_path, name, Rows=65535, Columns=16384)
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.where == "(0028,0010) Rows" and "differ from the size in the compressed image" in err.value.detail


def test_compressed_data_of_another_codec_than_the_transfer_syntax_is_refused(tmp_path):
    path = pydicom_file_with(tmp_path, "MR_small_jp2klossless.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.80"  # JPEG-LS lossless, over JPEG 2000 data
    ds.save_as(path)
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.where == "(7FE0,0010) PixelData"
    assert (
        err.value.detail == "pixel data could not be decoded: frame 0 does not start as JPEG-LS Lossless "
        "Image Compression data"
    )
