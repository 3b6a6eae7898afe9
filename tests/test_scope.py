"""Input scope: every image is checked against what the image encoder read (real DICOM files from
pydicom's test corpus and the synthetic radiograph rewritten with pydicom), notes by type, and a
study with nothing in scope gets no answer, in the predictor, the CLI and the batch outputs."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medmm.io import load_study
from medmm.predict import Predictor
from medmm.records import MODALITIES, ClinicalNote, ImageSeries, Study
from medmm.scope import NO_INPUT, ImageScope, InputScope, image_verdict, select_inputs
from tests.test_model import note_tokenizer, tiny_model

MEDMM = [str(Path(sys.executable).with_name("medmm"))]


def dicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(path)


def radiograph_file(small_cohort) -> Path:
    """The synthetic chest radiograph of the first patient that has one."""
    return next(p for p in sorted(small_cohort.glob("*/images/radiograph.dcm")))


@pytest.fixture(scope="module")
def predictor():
    return Predictor(tiny_model().eval(), note_tokenizer=note_tokenizer())


# -- real files that are not chest radiographs ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keyword", "label"),
    [
        ("CT_small.dcm", "Modality", "modality"),  # a single CT slice
        ("MR_small.dcm", "Modality", "modality"),
        ("examples_rgb_color.dcm", "Modality", "modality"),  # an ultrasound frame in colour
        ("JPEG2000.dcm", "Modality", "modality"),  # nuclear medicine
        ("6278", "BodyPartExamined", "body part"),  # a real CR of the cervical spine: a radiograph, not of the chest
    ],
)
def test_a_file_outside_the_scope_is_not_read_and_says_why(predictor, name, keyword, label):
    path = dicom_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    expected = f"{label} {ds.data_element(keyword).value}"
    study = load_study(path)
    assert len(study.images) == 1
    kept, uses = select_inputs(study, InputScope(), MODALITIES)
    assert kept.images == () and len(uses) == 1 and not uses[0].used
    assert expected in uses[0].reason
    pred = predictor.predict(study)
    assert not pred.answered and pred.scores == () and pred.conformal_set == () and pred.impression == ""
    assert pred.refusal.startswith(NO_INPUT) and expected in pred.refusal
    assert pred.present == () and pred.missing == MODALITIES


def test_the_ct_fov_and_the_us_photometric_reasons_are_all_given():
    ct = image_verdict(load_study(dicom_file("CT_small.dcm")).images[0], ImageScope())
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"), stop_before_pixels=True)
    across = float(ds.Rows) * float(ds.PixelSpacing[0])  # 128 x 0.66 mm: 85 mm, no chest
    assert not ct[0] and f"{across:.0f} x" in ct[1] and "not 150-650 mm" in ct[1]
    us = image_verdict(load_study(dicom_file("examples_rgb_color.dcm")).images[0], ImageScope())
    assert not us[0] and "photometric interpretation RGB" in us[1] and "pixel spacing" not in us[1]


# -- the synthetic chest radiograph, and the same file changed one attribute at a time ----------


def rewritten(src: Path, dst: Path, **changes) -> Path:
    ds = pydicom.dcmread(src)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst


def test_the_synthetic_radiograph_is_read(small_cohort):
    path = radiograph_file(small_cohort)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ok, reason = image_verdict(load_study(path).images[0], ImageScope())
    assert ok and reason == f"{ds.Modality} {ds.BodyPartExamined} {ds.ViewPosition}"


@pytest.mark.parametrize(
    ("changes", "used", "expected"),
    [
        ({"ViewPosition": "LL"}, False, "view LL, not PA/AP"),
        ({"BodyPartExamined": "HAND"}, False, "body part HAND, not CHEST"),
        ({"Modality": "MG"}, False, "modality MG"),
        ({"ViewPosition": None}, True, "view not stated: read as a chest radiograph"),
        ({"BodyPartExamined": None}, True, "body part not stated"),
    ],
)
def test_one_attribute_decides(small_cohort, tmp_path, changes, used, expected):
    path = rewritten(radiograph_file(small_cohort), tmp_path / "x.dcm", **changes)
    ok, reason = image_verdict(load_study(path).images[0], ImageScope())
    assert ok is used and expected in reason


def test_pixel_spacing_that_makes_no_chest_is_refused(small_cohort, tmp_path):
    src = radiograph_file(small_cohort)
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    keyword = "ImagerPixelSpacing" if "ImagerPixelSpacing" in ds else "PixelSpacing"
    path = rewritten(src, tmp_path / "x.dcm", **{keyword: ["0.05", "0.05"]})
    ok, reason = image_verdict(load_study(path).images[0], ImageScope())
    assert not ok and f"{ds.Rows * 0.05:.0f} x {ds.Columns * 0.05:.0f} mm across" in reason


def test_frames_colour_and_a_second_radiograph():
    scope = ImageScope()
    grey = np.zeros((2, 50, 40), dtype=np.float32)
    two = ImageSeries(pixels=grey, spacing=(1.0, 8.0, 8.0), modality="DX", series_uid="m", view_position="PA")
    assert two.frame_count == 2 and image_verdict(two, scope) == (False, "2 frames (at most 1)")
    pa = ImageSeries(pixels=grey[0], spacing=(8.0, 8.0), modality="DX", series_uid="pa", view_position="PA")
    ap = dataclasses.replace(pa, series_uid="ap", view_position="AP")
    kept, uses = select_inputs(Study("s", images=(ap, pa)), InputScope(), MODALITIES)
    assert kept.images == (pa,)  # PA before AP
    assert [(u.source, u.used) for u in uses] == [("(series pa)", True), ("(series ap)", False)]
    assert "one per study" in uses[1].reason


def test_notes_of_another_type_are_not_read():
    notes = (
        ClinicalNote("cough and fever", type_code="11506-3", source_id="DocumentReference/a"),
        ClinicalNote("consult", type_code="11488-4", source_id="DocumentReference/b"),
        ClinicalNote("no type stated", source_id="DocumentReference/c"),
    )
    kept, uses = select_inputs(Study("s", notes=notes), InputScope(), MODALITIES)
    assert [n.source_id for n in kept.notes] == ["DocumentReference/a", "DocumentReference/c"]
    assert [(u.source, u.used) for u in uses] == [
        ("DocumentReference/a", True),
        ("DocumentReference/b", False),
        ("DocumentReference/c", True),
    ]
    assert "11488-4" in uses[1].reason and uses[2].reason == "document type not stated"


def test_the_scope_travels_with_the_checkpoint(tmp_path):
    from medmm.checkpoint import load_checkpoint, save_checkpoint
    from tests.test_model import tiny_bert, tiny_config

    narrow = InputScope(image=ImageScope(views=("PA",)))
    folder = save_checkpoint(tiny_model(tiny_config(scope=narrow)), tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["config"]["scope"]["image"]["views"] == ["PA"]
    assert load_checkpoint(folder, text_backbone=tiny_bert(0)).config.scope == narrow


# -- no answer from nothing ----------------------------------------------------------------------


def test_a_folder_with_nothing_readable_gets_no_answer(predictor, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "record.json").write_text("true")
    shutil.copy(dicom_file("CT_small.dcm"), tmp_path / "p" / "ct.dcm")
    study = load_study(tmp_path / "p")
    pred = predictor.predict(study)
    assert not pred.answered and pred.scores == () and pred.impression == ""
    assert "modality CT" in pred.refusal and any("record.json" in w for w in pred.warnings)
    empty = predictor.predict(Study("empty"))
    assert not empty.answered and empty.refusal == f"{NO_INPUT}: the input holds no image, note or vital sign"


def test_a_batch_mixing_readable_and_unreadable_studies_answers_each_as_alone(predictor, small_cohort):
    good = load_study(sorted(p for p in small_cohort.iterdir() if p.is_dir())[0])
    ct = load_study(dicom_file("CT_small.dcm"))
    both = predictor.predict_many([ct, good], impression=False)
    alone = predictor.predict(good, impression=False)
    assert not both[0].answered and both[1].answered
    assert [s.probability for s in both[1].scores] == pytest.approx([s.probability for s in alone.scores], abs=1e-6)


def test_cli_predict_says_no_answer_and_lists_the_inputs(tmp_path):
    from tests.batch.helpers import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "model")
    proc = subprocess.run(
        MEDMM
        + [
            "predict",
            "--model",
            str(model),
            "--json",
            "--trail",
            str(tmp_path / "a.sqlite"),
            str(dicom_file("MR_small.dcm")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["status"] == "ok" and out["answered"] is False and out["scores"] == [] and out["conformal_set"] == []
    assert out["inputs"][0]["used"] is False and "modality MR" in out["inputs"][0]["reason"]
    assert out["study_time"].startswith("2004-08-26") and out["time_source"] == "image acquisition (latest)"
