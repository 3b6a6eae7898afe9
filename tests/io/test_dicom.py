"""DICOM ingest: files built here with pydicom, checked against values worked out by hand."""

from __future__ import annotations

import math
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medmm.errors import DicomError, MedmmError, UnsupportedDicomError
from medmm.io.dicom import DicomRead, NonImageObject, default_window, is_dicom_file, read_dicom
from medmm.io.dicom_file import DecodedFile, decode_file
from medmm.io.window import CT_PRESETS

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"
SC_SOP = "1.2.840.10008.5.1.4.1.1.7"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    modality: str = "CT",
    sop_class: str = CT_SOP,
    series_uid: str = "1.2.3.4",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    signed: bool = False,
    syntax: str = ExplicitVRLittleEndian,
    **attrs: object,
) -> Path:
    """Write a Part-10 image; `pixels` is (H, W), (F, H, W) or (..., 3) for colour; attrs set any keyword."""
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-SECRET-42"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if pixels.ndim == (4 if colour else 3):
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    allocated = 8 if pixels.dtype.itemsize == 1 else 16
    ds.BitsAllocated, ds.BitsStored = allocated, min(bits_stored, allocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    if "PixelData" not in attrs:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_slices(folder: Path, zs: list[float], *, iop=AXIAL, names=None, **attrs) -> list[Path]:
    """One 2x3 CT slice per z, slice k filled with k*10 so that order can be read off the pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, z in enumerate(zs):
        name = names[k] if names else f"s{k}.dcm"
        extra = dict(ImageOrientationPatient=list(iop), ImagePositionPatient=[0.0, 0.0, z]) if iop else {}
        extra.update(attrs)
        paths.append(
            write_image(
                folder / name,
                np.full((2, 3), k * 10, np.uint16),
                PixelSpacing=[0.5, 0.7],
                InstanceNumber=k + 1,
                **extra,
            )
        )
    return paths


# --- single files: modality LUT, photometric, colour, multi-frame -------------------------------------------


def test_ct_rescale_slope_intercept_gives_hounsfield_units(tmp_path):
    stored = np.array([[0, 1, 1024], [2000, 3000, 4095]], np.uint16)
    path = write_image(tmp_path / "ct.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024, PixelSpacing=[0.5, 0.7])
    (s,) = read_dicom(path).series
    expected = np.array([[-1024, -1022, 1024], [2976, 4976, 7166]], np.float32)  # 2 * v - 1024 by hand
    np.testing.assert_array_equal(s.pixels, expected)
    assert s.pixels.dtype == np.float32 and s.rescale == (2.0, -1024.0)
    assert s.spacing == (0.5, 0.7) and s.modality == "CT" and not s.inverted
    assert s.window == CT_PRESETS["Mediastinum"] == (40.0, 400.0)  # no WindowCenter/Width stored


def test_stored_window_is_kept_and_first_of_several_used(tmp_path):
    path = write_image(
        tmp_path / "ct.dcm",
        np.zeros((2, 2), np.uint16),
        WindowCenter=[-600, 40],
        WindowWidth=[1500, 400],
        RescaleSlope=1,
        RescaleIntercept=-1024,
    )
    assert read_dicom(path).series[0].window == (-600.0, 1500.0)


def test_monochrome1_is_inverted_with_its_window(tmp_path):
    stored = np.array([[0, 100], [4000, 4095]], np.uint16)
    path = write_image(
        tmp_path / "cr.dcm",
        stored,
        modality="CR",
        sop_class=CR_SOP,
        photometric="MONOCHROME1",
        WindowCenter=1000,
        WindowWidth=500,
        ImagerPixelSpacing=[0.2, 0.2],
    )
    (s,) = read_dicom(path).series
    np.testing.assert_array_equal(s.pixels, [[4095, 3995], [95, 0]])  # 12 bits: 4095 - v
    assert s.inverted and s.photometric == "MONOCHROME1"
    assert s.window == (3095.0, 500.0)  # centre mirrored in the same range, width unchanged
    assert s.spacing == (0.2, 0.2)  # ImagerPixelSpacing when PixelSpacing is absent


def test_monochrome1_inversion_spans_the_rescaled_range(tmp_path):
    stored = np.array([[0, 10]], np.uint16)
    path = write_image(
        tmp_path / "cr.dcm",
        stored,
        modality="CR",
        sop_class=CR_SOP,
        photometric="MONOCHROME1",
        bits_stored=10,
        RescaleSlope=1,
        RescaleIntercept=100,
        PixelSpacing=[1, 1],
    )
    (s,) = read_dicom(path).series
    # output range [100, 1123] for 10 bits; inverted = 100 + 1123 - (v + 100)
    np.testing.assert_array_equal(s.pixels, [[1123, 1113]])


def test_rgb_image_kept_as_rgb(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = write_image(tmp_path / "sc.dcm", rgb, modality="OT", sop_class=SC_SOP, photometric="RGB", bits_stored=8)
    (s,) = read_dicom(path).series
    np.testing.assert_array_equal(s.pixels, rgb.astype(np.float32))
    assert s.is_colour and s.window is None and s.pixels.shape == (4, 5, 3)


def test_ybr_full_converted_to_rgb(tmp_path):
    red, green = np.meshgrid(np.linspace(0, 255, 6), np.linspace(40, 200, 4))  # (4, 6) each
    rgb = np.stack([red, green, np.full((4, 6), 128.0)], -1)
    rgb = rgb.astype(np.uint8)  # (4, 6, 3)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write_image(
        tmp_path / "ybr.dcm", ybr, modality="OT", sop_class=SC_SOP, photometric="YBR_FULL", bits_stored=8
    )
    (s,) = read_dicom(path).series
    assert s.photometric == "YBR_FULL" and s.is_colour
    assert np.abs(s.pixels - rgb).max() <= 2  # 8-bit round trip through YCbCr


def test_multiframe_without_positions_keeps_frame_order(tmp_path):
    frames = np.arange(3 * 2 * 2, dtype=np.uint16).reshape(3, 2, 2)
    path = write_image(
        tmp_path / "xa.dcm", frames, modality="XA", sop_class="1.2.840.10008.5.1.4.1.1.12.1", PixelSpacing=[0.3, 0.3]
    )
    read = read_dicom(path)
    (s,) = read.series
    np.testing.assert_array_equal(s.pixels, frames)
    assert s.spacing == (1.0, 0.3, 0.3)
    assert any("1.0 mm assumed" in i.message for i in read.issues)


def test_enhanced_multiframe_sorted_by_frame_positions_with_per_frame_rescale(tmp_path):
    z = [20.0, 10.0, 15.0]  # stored out of order
    slopes, intercepts = [1.0, 2.0, 1.0], [-1000.0, -1024.0, 0.0]
    frames = np.stack([np.full((2, 2), k + 1, np.uint16) for k in range(3)])  # frame k holds k + 1

    def item(**kw):
        ds = Dataset()
        for key, value in kw.items():
            setattr(ds, key, value)
        return ds

    shared = item(
        PlaneOrientationSequence=[item(ImageOrientationPatient=list(AXIAL))],
        PixelMeasuresSequence=[item(PixelSpacing=[0.8, 0.8], SliceThickness=5)],
    )
    per_frame = [
        item(
            PlanePositionSequence=[item(ImagePositionPatient=[0, 0, z[k]])],
            PixelValueTransformationSequence=[
                item(RescaleSlope=slopes[k], RescaleIntercept=intercepts[k], RescaleType="HU")
            ],
        )
        for k in range(3)
    ]
    path = write_image(
        tmp_path / "ect.dcm",
        frames,
        sop_class="1.2.840.10008.5.1.4.1.1.2.1",
        SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=per_frame,
    )
    (s,) = read_dicom(path).series
    # by z: frame 1 (z=10, 2*2-1024), frame 2 (z=15, 3*1+0), frame 0 (z=20, 1*1-1000)
    np.testing.assert_array_equal(s.pixels[:, 0, 0], [-1020.0, 3.0, -999.0])
    assert s.spacing == (5.0, 0.8, 0.8) and s.origin == (0.0, 0.0, 10.0)


# --- volumes: grouping and slice order ------------------------------------------------------------------------


def test_ct_slices_sorted_by_position_not_by_name_or_instance_number(tmp_path):
    zs = [17.5, 10.0, 20.0, 12.5, 15.0]
    ct_slices(tmp_path, zs, names=["a.dcm", "e.dcm", "b.dcm", "d.dcm", "c.dcm"])
    (s,) = read_dicom(tmp_path).series
    by_z = np.argsort(zs)  # slice k holds k*10
    np.testing.assert_array_equal(s.pixels[:, 0, 0], by_z * 10)
    assert s.pixels.shape == (5, 2, 3) and s.is_volume
    assert s.spacing == (2.5, 0.5, 0.7) and s.origin == (0.0, 0.0, 10.0) and s.orientation == AXIAL
    assert [Path(p).name for p in s.source_files] == ["e.dcm", "d.dcm", "c.dcm", "a.dcm", "b.dcm"]


def test_tilted_slices_sorted_along_the_normal(tmp_path):
    a = math.radians(30)
    row, col = np.array([1.0, 0, 0]), np.array([0, math.cos(a), math.sin(a)])
    normal = np.cross(row, col)  # (0, -sin, cos)
    shifts = [20.0, 0.0, 10.0, -20.0, 5.0]  # in-plane shifts along col: z alone would misorder
    positions = [k * 3.0 * normal + shifts[k] * col for k in range(5)]
    assert list(np.argsort([p[2] for p in positions])) != [0, 1, 2, 3, 4]
    shuffled = [3, 0, 4, 1, 2]
    for k in shuffled:
        write_image(
            tmp_path / f"{k}.dcm",
            np.full((2, 2), k, np.uint16),
            PixelSpacing=[1, 1],
            ImageOrientationPatient=list(row) + list(col),
            ImagePositionPatient=list(positions[k]),
            InstanceNumber=10 - k,
        )
    (s,) = read_dicom(tmp_path).series
    np.testing.assert_array_equal(s.pixels[:, 0, 0], [0, 1, 2, 3, 4])
    assert s.spacing[0] == pytest.approx(3.0)
    np.testing.assert_allclose(s.origin, positions[0], atol=1e-6)


def test_instance_number_fallback_without_positions(tmp_path):
    for k, number in enumerate([3, 1, 2]):
        write_image(
            tmp_path / f"{k}.dcm",
            np.full((2, 2), number, np.uint16),
            PixelSpacing=[1, 1],
            InstanceNumber=number,
            SliceThickness=2.5,
        )
    read = read_dicom(tmp_path)
    (s,) = read.series
    np.testing.assert_array_equal(s.pixels[:, 0, 0], [1, 2, 3])
    assert s.spacing == (2.5, 1.0, 1.0)
    assert any("ordered by InstanceNumber" in i.message for i in read.issues)


def test_two_series_in_one_folder_grouped_apart(tmp_path):
    ct_slices(tmp_path / "one", [0.0, 1.0, 2.0], series_uid="1.2.3.4.1")
    ct_slices(tmp_path / "two", [5.0, 7.0], series_uid="1.2.3.4.2")
    read = read_dicom(tmp_path)
    assert [(s.series_uid, s.pixels.shape) for s in read.series] == [("1.2.3.4.1", (3, 2, 3)), ("1.2.3.4.2", (2, 2, 3))]
    assert [s.spacing[0] for s in read.series] == [1.0, 2.0]


def test_radiographs_of_one_series_stay_separate_2d_images(tmp_path):
    for k in range(2):
        write_image(
            tmp_path / f"{k}.dcm",
            np.full((3, 3), k, np.uint16),
            modality="DX",
            sop_class="1.2.840.10008.5.1.4.1.1.1.1",
            PixelSpacing=[0.1, 0.1],
            ViewPosition=["PA", "LL"][k],
        )
    read = read_dicom(tmp_path)
    assert [(s.pixels.shape, s.view_position) for s in read.series] == [((3, 3), "PA"), ((3, 3), "LL")]


def test_duplicate_instance_read_once(tmp_path):
    (first,) = ct_slices(tmp_path / "a", [0.0])
    shutil.copy(first, tmp_path / "copy.dcm")
    read = read_dicom(tmp_path)
    assert len(read.series) == 1 and read.series[0].pixels.shape == (2, 3)
    assert any(i.kind == "skipped" and "duplicate" in i.message for i in read.issues)


def test_uneven_spacing_reported_and_median_used(tmp_path):
    ct_slices(tmp_path, [0.0, 1.0, 2.0, 5.0])
    read = read_dicom(tmp_path)
    assert read.series[0].spacing[0] == 1.0  # median of (1, 1, 3)
    assert any("uneven slice spacing" in i.message for i in read.issues)


def test_missing_pixel_spacing_defaults_to_1mm_with_issue(tmp_path):
    path = write_image(tmp_path / "x.dcm", np.zeros((2, 2), np.uint16))
    read = read_dicom(path)
    assert read.series[0].spacing == (1.0, 1.0)
    assert any(i.where.startswith("(0028,0030)") and "1.0 mm assumed" in i.message for i in read.issues)


# --- time ------------------------------------------------------------------------------------------------------


def test_acquisition_datetime_with_offset_converted_to_utc(tmp_path):
    path = write_image(
        tmp_path / "x.dcm",
        np.zeros((2, 2), np.uint16),
        PixelSpacing=[1, 1],
        AcquisitionDateTime="20240301103000.5+0200",
        StudyDate="20200101",
        StudyTime="000000",
    )
    read = read_dicom(path)
    assert read.series[0].acquired == datetime(2024, 3, 1, 8, 30, 0, 500000, tzinfo=timezone.utc)
    assert not any("UTC" in i.message for i in read.issues)


def test_date_and_time_with_timezone_offset_attribute(tmp_path):
    path = write_image(
        tmp_path / "x.dcm",
        np.zeros((2, 2), np.uint16),
        PixelSpacing=[1, 1],
        SeriesDate="20240301",
        SeriesTime="233000",
        TimezoneOffsetFromUTC="-0500",
    )
    assert read_dicom(path).series[0].acquired == datetime(2024, 3, 2, 4, 30, tzinfo=timezone.utc)


def test_naive_time_taken_as_utc_and_reported_once(tmp_path):
    ct_slices(tmp_path, [0.0, 1.0, 2.0], StudyDate="20240301", StudyTime="0830")
    read = read_dicom(tmp_path)
    assert read.series[0].acquired == datetime(2024, 3, 1, 8, 30, tzinfo=timezone.utc)
    assert sum("taken as UTC" in i.message for i in read.issues) == 1


def test_repeated_warning_reported_once_with_a_count(tmp_path):
    ct_slices(tmp_path, [0.0, 1.0, 2.0], TimezoneOffsetFromUTC="bogus")
    read = read_dicom(tmp_path)
    (issue,) = [i for i in read.issues if i.where == "(0008,0201) TimezoneOffsetFromUTC"]
    assert Path(issue.source).name == "s0.dcm" and issue.message.endswith("(and 2 more file(s))")


# --- zip archives ---------------------------------------------------------------------------------------------


def test_zip_of_a_folder_reads_like_the_folder(tmp_path):
    ct_slices(tmp_path / "study" / "series", [4.0, 0.0, 2.0])
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tmp_path / "study").rglob("*.dcm")):
            zf.write(p, p.relative_to(tmp_path))
        zf.writestr("../escape.dcm", (tmp_path / "study" / "series" / "s0.dcm").read_bytes())
    from_zip, from_folder = read_dicom(archive), read_dicom(tmp_path / "study")
    (s,) = from_zip.series
    np.testing.assert_array_equal(s.pixels, from_folder.series[0].pixels)
    np.testing.assert_array_equal(s.pixels[:, 0, 0], [10, 20, 0])
    assert s.source_files[0] == f"{archive}/study/series/s1.dcm"
    assert [(i.where, i.kind) for i in from_zip.issues if "unsafe" in i.message] == [("../escape.dcm", "skipped")]


def test_zip_over_the_size_limit_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * 100_000)  # compresses to a few hundred bytes
    with pytest.raises(DicomError, match="limit"):
        read_dicom(archive, max_zip_bytes=50_000)


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [300, -100])  # cut in the header, cut in the pixel data
def test_truncated_file_raises_naming_the_file(tmp_path, keep):
    path = write_image(tmp_path / "cut.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8), PixelSpacing=[1, 1])
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert str(path) in str(err.value) and err.value.path == str(path)
    assert "truncated" in str(err.value) or "no pixel data" in str(err.value)
    assert "Doe" not in str(err.value) and "SECRET" not in str(err.value)


def test_truncated_pixel_data_names_the_element(tmp_path):
    path = write_image(tmp_path / "cut.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.where == "(7FE0,0010) PixelData"


def test_every_truncation_of_a_real_file_raises(tmp_path):
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    path = tmp_path / "cut.dcm"
    for keep in range(0, len(data), 613):
        path.write_bytes(data[:keep])
        with pytest.raises(DicomError) as err:
            read_dicom(path)
        assert err.value.path == str(path)


def test_corrupted_bytes_give_a_read_or_a_typed_error():
    rng = np.random.default_rng(7)
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"):
        data = np.frombuffer(Path(get_testdata_file(name)).read_bytes(), np.uint8)
        for _ in range(60):
            bad = data.copy()
            bad[rng.integers(0, bad.size, 4)] = rng.integers(0, 256, 4)
            try:
                decoded = decode_file(name, bad.tobytes())
            except MedmmError:
                continue
            assert isinstance(decoded, (DecodedFile, NonImageObject))


def test_non_dicom_file_raises(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image at all, just some words " * 10)
    with pytest.raises(DicomError, match="not a DICOM file") as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_missing_pixel_data_names_the_element(tmp_path):
    path = write_image(tmp_path / "x.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DicomError) as err:
        read_dicom(path)
    assert err.value.where == "(7FE0,0010) PixelData" and "no pixel data" in str(err.value)


def test_unsupported_transfer_syntax_is_a_typed_error(tmp_path):
    mpeg2 = "1.2.840.10008.1.2.4.100"
    path = write_image(
        tmp_path / "x.dcm", np.zeros((2, 2), np.uint8), bits_stored=8, syntax=mpeg2, PixelData=encapsulate([b"\0" * 16])
    )
    with pytest.raises(UnsupportedDicomError) as err:
        read_dicom(path)
    assert err.value.where == "(0002,0010) TransferSyntaxUID" and str(path) in str(err.value)


def test_invalid_attribute_named_without_patient_values(tmp_path):
    with pytest.warns(UserWarning, match="VR DA"):  # pydicom warns while writing the malformed date
        path = write_image(
            tmp_path / "x.dcm",
            np.zeros((2, 2), np.uint16),
            PixelSpacing=[1, 1],
            ImagePositionPatient=[0, 0],
            SeriesDate="2024-03-01",
        )
    read = read_dicom(path)
    assert {i.where for i in read.issues} >= {"(0020,0032) ImagePositionPatient", "(0008,0021) SeriesDate"}
    assert not any("Doe" in str(i) or "SECRET" in str(i) or "2024-03-01" in str(i) for i in read.issues)


def test_folder_with_corrupt_files_keeps_the_good_series(tmp_path):
    ct_slices(tmp_path, [0.0, 1.0, 2.0])
    bad = write_image(tmp_path / "bad.dcm", np.zeros((8, 8), np.uint16), series_uid="9.9")
    bad.write_bytes(bad.read_bytes()[:-30])
    (tmp_path / "readme.txt").write_text("hello")
    read = read_dicom(tmp_path)
    assert [s.pixels.shape for s in read.series] == [(3, 2, 3)]
    skipped = {Path(i.source).name: i for i in read.issues if i.kind == "skipped"}
    assert set(skipped) == {"bad.dcm", "readme.txt"}
    assert skipped["bad.dcm"].where == "(7FE0,0010) PixelData" and "not a DICOM" in skipped["readme.txt"].message


def test_folder_with_nothing_usable_raises_a_summary(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 200)
    (tmp_path / "b.txt").write_text("y" * 200)
    with pytest.raises(DicomError, match="2 not a DICOM file") as err:
        read_dicom(tmp_path)
    assert err.value.path == str(tmp_path)


def test_empty_folder_gives_an_empty_read(tmp_path):
    read = read_dicom(tmp_path)
    assert read.series == () and read.non_images == () and "no files" in read.issues[0].message


def test_missing_path_raises(tmp_path):
    with pytest.raises(DicomError, match="no such file"):
        read_dicom(tmp_path / "absent.dcm")


# --- non-image objects ----------------------------------------------------------------------------------------


def test_structured_report_is_a_non_image_object(tmp_path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    read = read_dicom(path)
    assert read == DicomRead((), (NonImageObject(str(path), "SR", "1.2.840.10008.5.1.4.1.1.88.11", "SR"),), ())


def test_folder_mixing_images_and_a_report(tmp_path):
    ct_slices(tmp_path, [0.0, 1.0])
    shutil.copy(get_testdata_file("test-SR.dcm"), tmp_path / "report.dcm")
    read = read_dicom(tmp_path)
    assert len(read.series) == 1 and [n.kind for n in read.non_images] == ["SR"]


# --- helpers --------------------------------------------------------------------------------------------------


def test_is_dicom_file(tmp_path):
    (tmp_path / "t.txt").write_text("hello world, this is text")
    assert is_dicom_file(get_testdata_file("CT_small.dcm"))
    assert is_dicom_file(get_testdata_file("ExplVR_LitEndNoMeta.dcm"))  # no preamble, explicit VR
    assert is_dicom_file(get_testdata_file("ExplVR_BigEndNoMeta.dcm"))  # no preamble, big endian
    assert is_dicom_file(get_testdata_file("rtstruct.dcm"))  # no preamble, implicit VR
    assert not is_dicom_file(tmp_path / "t.txt")
    assert not is_dicom_file(tmp_path)
    assert not is_dicom_file(tmp_path / "absent.dcm")


def test_default_window():
    assert default_window("CT", np.zeros((2, 2))) == (40.0, 400.0)
    pixels = np.arange(1001.0)
    lo, hi = np.percentile(pixels, [1, 99])  # 10 and 990
    assert default_window("MR", pixels) == ((lo + hi) / 2, hi - lo) == (500.0, 980.0)
    assert default_window("CR", np.full((3, 3), 7.0)) == (7.0, 7.0)
    assert default_window("MR", np.full((2, 2), np.nan)) == (0.0, 1.0)


# --- regressions found by the ingest fuzzer (tests/fuzz) ------------------------------------------------------


def test_pixel_module_numbers_stored_as_text_are_read_as_numbers(tmp_path):
    # under a text VR pydicom multiplied "3" by Rows x Columns: a repeated string, gigabytes for large images
    frames = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = write_image(tmp_path / "mf.dcm", frames, modality="MR", PixelSpacing=[1, 1])
    ds = pydicom.dcmread(path)
    ds.add_new("NumberOfFrames", "LO", "3")
    ds.add_new("Rows", "SH", "4")
    ds.save_as(path)
    assert isinstance(pydicom.dcmread(path).NumberOfFrames, str)  # as written
    (s,) = read_dicom(path).series
    np.testing.assert_array_equal(s.pixels, frames.astype(np.float32))
