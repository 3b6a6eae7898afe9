"""DICOM ingest on pydicom's own test files: values against pydicom's decoding, then a sweep.

The sweep covers every entry of the corpus. Whether pydicom itself decodes a file is decided
independently (`dcmread(f).pixel_array`). Files pydicom decodes must be read without an error
(as series or as a non-image object); everything else (deliberately broken files, non-DICOM
files, folders) must either be read or raise a MedmmError. Run with -s to see the counts.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.pixels import apply_color_lut, apply_modality_lut

from medmm.errors import DicomError, MedmmError
from medmm.io.dicom import DicomRead, read_dicom

# --- values, compared with pydicom's decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "JPGExtended.dcm",
        "693_J2KI.dcm",
        "image_dfl.dcm",
    ],
)
def test_greyscale_matches_pydicom_with_modality_lut(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    (s,) = read_dicom(path).series
    np.testing.assert_array_equal(s.pixels, expected)
    if "PixelSpacing" in ds:
        assert s.spacing == tuple(float(v) for v in ds.PixelSpacing)
    if "WindowCenter" in ds:
        assert s.window == (float(np.atleast_1d(ds.WindowCenter)[0]), float(np.atleast_1d(ds.WindowWidth)[0]))
    assert s.transfer_syntax == ds.file_meta.TransferSyntaxUID and s.series_uid == ds.SeriesInstanceUID


def test_ct_small_values_in_hounsfield_units():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    (s,) = read_dicom(get_testdata_file("CT_small.dcm")).series
    raw = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(s.pixels, raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert s.rescale == (float(ds.RescaleSlope), float(ds.RescaleIntercept)) and s.modality == "CT"


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_rle.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_rle_2frame.dcm",
        "examples_ybr_color.dcm",
        "GDCMJ2K_TextGBR.dcm",
    ],
)
def test_colour_matches_pydicom_rgb(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    (s,) = read_dicom(get_testdata_file(name)).series
    np.testing.assert_array_equal(s.pixels, ds.pixel_array.astype(np.float32))  # pydicom converts YBR to RGB
    assert s.photometric == ds.PhotometricInterpretation and s.is_colour


def test_palette_colour_expanded_to_rgb():
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    (s,) = read_dicom(get_testdata_file("examples_palette.dcm")).series
    np.testing.assert_array_equal(s.pixels, apply_color_lut(ds.pixel_array, ds).astype(np.float32))
    assert s.photometric == "PALETTE COLOR" and s.pixels.shape == (350, 800, 3)


def test_pydicom_cr_monochrome1_inverted():
    (path,) = get_testdata_files("**/77654033/CR1/6154")
    ds = pydicom.dcmread(path)
    (s,) = read_dicom(path).series
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    lo, hi = intercept, (2**ds.BitsStored - 1) * slope + intercept  # output range of 12 stored bits
    expected = lo + hi - (ds.pixel_array.astype(np.float64) * slope + intercept)
    np.testing.assert_allclose(s.pixels, expected, rtol=1e-6)
    assert s.window == pytest.approx((lo + hi - float(ds.WindowCenter), float(ds.WindowWidth)))
    assert s.inverted and s.photometric == "MONOCHROME1"


def test_pydicom_truncated_file_is_a_dicom_error():
    path = get_testdata_file("MR_truncated.dcm")
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.path == path and err.value.where == "(7FE0,0010) PixelData"


# --- non-image objects and the whole-corpus sweep -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind",
    [
        ("rtplan.dcm", "RTPLAN"),
        ("rtstruct.dcm", "RTSTRUCT"),
        ("rtdose.dcm", "RTDOSE"),
        ("liver_1frame.dcm", "SEG"),
        ("test-SR.dcm", "SR"),
        ("waveform_ecg.dcm", "WAVEFORM"),
        ("DICOMDIR", "DICOMDIR"),
    ],
)
def test_pydicom_non_image_files_recognised(name, kind):
    read = read_dicom(get_testdata_file(name))
    assert read.series == () and [n.kind for n in read.non_images] == [kind]


def pydicom_decodes(path: str) -> bool:
    """True when pydicom alone turns the file into a pixel array."""
    if os.path.isdir(path):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pydicom.dcmread(path).pixel_array
        except Exception:
            return False
    return True


def test_every_corpus_entry_is_read_or_raises_a_typed_error():
    entries = sorted(get_testdata_files())
    assert len(entries) > 80  # the corpus is really there (files and the folders that hold them)
    counts = {"ok": 0, "typed errors": 0, "other": 0}
    failures: list[str] = []
    leaked: list[str] = []
    decodable = 0
    for path in entries:
        decodes = pydicom_decodes(path)
        decodable += decodes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                read = read_dicom(path)
            except MedmmError as err:
                counts["typed errors"] += 1
                if decodes:
                    failures.append(f"{path}: pydicom decodes it but read_dicom raised {err!r}")
                continue
            except Exception as err:  # the one outcome that is never allowed
                counts["other"] += 1
                failures.append(f"{path}: untyped {type(err).__name__}: {err}")
                continue
        leaked += [f"{path}: {w.category.__name__}" for w in caught]
        counts["ok"] += 1
        assert isinstance(read, DicomRead)
        if decodes and not (read.series or read.non_images):
            failures.append(f"{path}: pydicom decodes it but read_dicom found nothing")
    print(
        f"\ncorpus: {len(entries)} entries, pydicom decodes {decodable}; read_dicom: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
    )
    assert not failures, "\n".join(failures)
    assert counts["other"] == 0 and counts["ok"] >= decodable
    assert not leaked, "warnings escaped read_dicom:\n" + "\n".join(leaked)
