"""What each stage sends to the page, checked without a server: component keys are plain names here."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.ui.conftest import make_service
from ui.localtime import zone_named
from ui.page import Page, error_text, summary
from ui.views import preset_window, window_presets

NAMES = (
    "token",
    "form",
    "status",
    "notice",
    "header",
    "modalities",
    "diagnoses",
    "impression",
    "card",
    "series",
    "preset",
    "slice",
    "viewer",
    "dicom",
    "target",
    "compare",
    "answer",
    "verdict",
    "named",
    "comment",
    "feedback_status",
    "summary",
)
SIDE_VIEWS = ("attention", "gradcam", "vitals", "notes")
ZONE = zone_named("UTC")


@pytest.fixture(scope="module")
def page(ui_model, ui_predictor, small_cohort, tmp_path_factory):
    service = make_service(ui_model, tmp_path_factory.mktemp("ui-page"), small_cohort, predictor=ui_predictor)
    p = Page(service)
    for name in NAMES:
        setattr(p, name, name)
    p.sides = {side: {k: f"{k}_{side}" for k in SIDE_VIEWS} for side in ("a", "b")}
    yield p
    service.close()


def ct_patient(cohort) -> str:
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    return next(
        pid
        for pid, folder in zip(manifest["patient_id"], manifest["folder"])
        if (cohort / folder / "images" / "ct").is_dir()
    )


def test_a_volume_gets_hu_presets_and_a_slice_slider_starting_in_the_middle(page, small_cohort):
    case = page.service.open_demo(ct_patient(small_cohort))
    loaded = page.loaded(case, ZONE)
    labels = [label for label, _ in loaded["series"]["choices"]]
    volume = next(i for i, s in enumerate(case.study.images) if s.is_volume)
    series = case.study.images[volume]
    assert f"CT {series.description} ({series.pixels.shape[0]} slices)".replace("  ", " ") in labels
    view = page.viewer_for(case, volume)
    middle = series.pixels.shape[0] // 2
    assert (
        view["slice"]["visible"]
        and view["slice"]["maximum"] == series.pixels.shape[0] - 1
        and view["slice"]["value"] == middle
    )
    assert "Lung" in view["preset"]["choices"] and view["preset"]["value"] == window_presets(series)[0]
    payload = json.loads(view["viewer"])
    frame = series.pixels[middle]
    assert (payload["w"], payload["h"], payload["unit"]) == (frame.shape[1], frame.shape[0], "HU")
    assert (payload["center"], payload["width"]) == pytest.approx(
        preset_window(series, frame, window_presets(series)[0])
    )
    assert (payload["lo"], payload["hi"]) == pytest.approx((float(frame.min()), float(frame.max())))
    assert payload["markers"] == {
        "left": "R",
        "right": "L",
        "top": "A",
        "bottom": "P",
    }  # axial slices, from ImageOrientationPatient
    assert "<table>" in view["dicom"]
    flat = next(i for i, s in enumerate(case.study.images) if not s.is_volume)
    assert page.viewer_for(case, flat)["slice"]["visible"] is False


def test_a_new_analysis_empties_every_result_first(page):
    start = page.starting("2 uploaded files", ["a.dcm", "b.json"])
    assert start["token"] is None and start["summary"] is None and start["diagnoses"] == "" and start["viewer"] == ""
    assert all(start[f"{k}_{s}"] == "" for k in SIDE_VIEWS for s in "ab")
    assert (
        "a.dcm, b.json" in start["header"] and "Reading 2 uploaded files" in start["status"] and start["notice"] == ""
    )
    assert start["verdict"]["value"] is None and start["named"]["value"] == []


def test_stages_send_only_what_they_change_and_the_summary_has_no_patient_data(page, small_cohort):
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str)
    case = page.service.open_demo(manifest["patient_id"][0])
    stages = list(page.service.analyse(case))
    diagnosed, drafted = page.diagnosed(stages[0], ZONE), page.drafted(stages[1])
    assert set(diagnosed) == {"status", "header", "diagnoses", "modalities", "target", "compare", "summary"}
    assert set(drafted) == {"status", "impression", "summary"}
    explained = page.explained(stages[2], stages[2].prediction.scores[0].name, 0.5, ZONE)
    assert {"status", "summary", "attention_a", "gradcam_a", "vitals_a", "notes_a"} == set(explained)
    assert json.loads(explained["attention_a"])["kind"] == "rgb" and "data:image/png;base64," in explained["vitals_a"]
    s = summary(stages[2])
    assert [x["name"] for x in s["scores"]] == [x.name for x in stages[2].prediction.scores]
    assert manifest["patient_id"][0] not in str(s) and set(s["seconds"]) == {
        "load",
        "diagnoses",
        "impression",
        "explanations",
    }
    cleared = page.cleared("gone")
    assert set(cleared) == set(NAMES) | {f"{k}_{s}" for k in SIDE_VIEWS for s in "ab"}
    assert cleared["token"] is None and cleared["summary"] is None


def test_unexpected_errors_show_only_their_type(caplog):
    assert (
        error_text(ValueError("scans/Jane Doe/scan.dcm"))
        == "Internal error (ValueError); nothing was changed. The service keeps running."
    )
    assert "Jane" not in caplog.text
