"""The in-page viewer's payloads (real values for the browser to window), orientation markers and the DICOM header view."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from medmm.deid.header import read_header
from medmm.records import ImageSeries
from tests.ui.conftest import full_patient
from ui.dicom_header import header_table
from ui.viewer import MAX_SIDE, colour_payload, direction_label, grey_payload, orientation_markers


def series(pixels, spacing=(1.0, 1.0), modality="DX", orientation=None) -> ImageSeries:
    return ImageSeries(
        pixels=np.asarray(pixels, np.float32),
        spacing=spacing,
        modality=modality,
        series_uid="1",
        orientation=orientation,
    )


def test_grey_payloads_carry_the_real_values_and_the_starting_window():
    pixels = np.arange(12, dtype=np.float32).reshape(3, 4) * 100.0 - 500.0  # -500 .. 600 HU
    s = series(pixels, spacing=(2.0, 1.0), modality="CT")
    p = json.loads(
        grey_payload(s, pixels, (40.0, 400.0), key="k", preset="Mediastinum", caption="c", markers=None, note="")
    )
    q = np.frombuffer(base64.b64decode(p["data"]), dtype="<u2").reshape(p["h"], p["w"])
    values = p["lo"] + q.astype(np.float64) * (p["hi"] - p["lo"]) / 65535.0
    np.testing.assert_allclose(values, pixels, atol=(1100.0 / 65535.0))
    assert (p["center"], p["width"], p["unit"], p["aspect"]) == (40.0, 400.0, "HU", 2.0)


def test_large_images_are_averaged_down_and_say_so():
    pixels = np.ones((MAX_SIDE * 2 + 4, 10), np.float32)
    p = json.loads(
        grey_payload(series(pixels), pixels, (1.0, 1.0), key="k", preset="", caption="big", markers=None, note="")
    )
    assert max(p["h"], p["w"]) <= MAX_SIDE and "shown at 1/3" in p["caption"]


def test_colour_payloads_are_pngs():
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[1, 2] = (255, 10, 0)
    p = json.loads(colour_payload(rgb, key="k", caption="overlay"))
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(p["data"]))))
    np.testing.assert_array_equal(picture, rgb)
    assert p["kind"] == "rgb" and (p["w"], p["h"]) == (6, 5)


@pytest.mark.parametrize(
    "vector, label",
    [
        ((1, 0, 0), "L"),
        ((-1, 0, 0), "R"),
        ((0, 1, 0), "P"),
        ((0, -1, 0), "A"),
        ((0, 0, 1), "H"),
        ((0, 0, -1), "F"),
        ((0.8, -0.6, 0), "LA"),
        ((0.1, 0.0, -0.99), "F"),
    ],
)
def test_directions_in_patient_coordinates(vector, label):
    assert direction_label(vector) == label


def test_markers_from_image_orientation_then_patient_orientation_else_none():
    axial = series(np.zeros((2, 2)), orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    assert orientation_markers(axial) == (
        {"left": "R", "right": "L", "top": "A", "bottom": "P"},
        "orientation from ImageOrientationPatient",
    )
    radiograph = series(np.zeros((2, 2)))
    assert orientation_markers(radiograph, ("L", "F"))[0] == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    markers, note = orientation_markers(radiograph, None)
    assert markers is None and "not stated" in note
    assert orientation_markers(radiograph, ("X", "F"))[0] is None


def test_the_dicom_header_view_shows_no_identifier_beyond_the_page_header(small_cohort, tmp_path):
    source = sorted((full_patient(small_cohort) / "images").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(source)
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "St Elsewhere"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.add_new(0x00091010, "LO", "private secret")
    path = tmp_path / "named.dcm"
    ds.save_as(path)
    header = read_header(path, "named.dcm")
    shown = {r.keyword: r.value for r in header.rows}
    assert (
        shown["PatientID"] == ds.PatientID and shown["Modality"] == ds.Modality and shown["PatientSex"] == ds.PatientSex
    )
    page = header_table(header)
    for secret in (
        "Doe",
        "Jane",
        "1970",
        "Elsewhere",
        "House",
        "private secret",
        ds.StudyInstanceUID,
        ds.AccessionNumber,
        ds.StudyDate,
    ):
        assert secret not in page
    assert header.patient_orientation == tuple(ds.PatientOrientation) and header.hidden > 5
    assert "PatientOrientation" in shown and shown["PatientOrientation"] == "\\".join(ds.PatientOrientation)
