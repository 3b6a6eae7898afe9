"""What each stage sends to the page, checked without a server: component keys are plain names here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.ui.conftest import make_service
from ui.page import Page, error_text, summary
from ui.views import viewer_frame, window_presets

NAMES = ("token", "status", "modalities", "diagnoses", "impression", "card", "series", "preset", "slice", "viewer", "target",
         "overlay_attention", "overlay_gradcam", "vitals", "notes", "answer", "feedback_status", "summary")


@pytest.fixture(scope="module")
def page(ui_model, ui_predictor, small_cohort, tmp_path_factory):
    service = make_service(ui_model, tmp_path_factory.mktemp("ui-page"), small_cohort, predictor=ui_predictor)
    p = Page(service)
    for name in NAMES:
        setattr(p, name, name)
    yield p
    service.close()


def ct_patient(cohort) -> str:
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    return next(pid for pid, folder in zip(manifest["patient_id"], manifest["folder"]) if (cohort / folder / "images" / "ct").is_dir())


def test_a_volume_gets_hu_presets_and_a_slice_slider_starting_in_the_middle(page, small_cohort):
    case = page.service.open_demo(ct_patient(small_cohort))
    loaded = page.loaded(case)
    labels = [label for label, _ in loaded["series"]["choices"]]
    volume = next(i for i, s in enumerate(case.study.images) if s.is_volume)
    series = case.study.images[volume]
    assert f"CT {series.description} ({series.pixels.shape[0]} slices)".replace("  ", " ") in labels
    view = page.viewer_for(case, volume)
    middle = series.pixels.shape[0] // 2
    assert view["slice"]["visible"] and view["slice"]["maximum"] == series.pixels.shape[0] - 1 and view["slice"]["value"] == middle
    assert "Lung" in view["preset"]["choices"] and view["preset"]["value"] == window_presets(series)[0]
    np.testing.assert_array_equal(view["viewer"], viewer_frame(series, window_presets(series)[0], middle))
    flat = next(i for i, s in enumerate(case.study.images) if not s.is_volume)
    assert page.viewer_for(case, flat)["slice"]["visible"] is False


def test_stages_send_only_what_they_change_and_the_summary_has_no_patient_data(page, small_cohort):
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str)
    case = page.service.open_demo(manifest["patient_id"][0])
    stages = list(page.service.analyse(case))
    diagnosed, drafted = page.diagnosed(stages[0]), page.drafted(stages[1])
    assert set(diagnosed) == {"status", "diagnoses", "modalities", "target", "summary"}
    assert set(drafted) == {"status", "impression", "summary"}
    explained = page.explained(stages[2], stages[2].prediction.scores[0].name, 0.5)
    assert {"status", "summary", "overlay_attention", "overlay_gradcam"} <= set(explained)
    s = summary(stages[2])
    assert [x["name"] for x in s["scores"]] == [x.name for x in stages[2].prediction.scores]
    assert manifest["patient_id"][0] not in str(s) and set(s["seconds"]) == {"load", "diagnoses", "impression", "explanations"}
    cleared = page.cleared("gone")
    assert set(cleared) == set(NAMES) and cleared["token"] is None and cleared["summary"] is None


def test_unexpected_errors_show_only_their_type(caplog):
    assert error_text(ValueError("scans/Jane Doe/scan.dcm")) == "Internal error (ValueError); nothing was changed. The service keeps running."
    assert "Jane" not in caplog.text
