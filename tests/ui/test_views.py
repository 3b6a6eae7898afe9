"""The page's content drawn without a browser: conformal sets in words, tables, window/level, overlays."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from matplotlib import colormaps

from medmm.explain.mapping import ImageMap
from medmm.records import Claim, ClinicalNote, DiagnosisScore, ImageSeries, InputUse, Prediction, Study
from ui.views import (
    CONTRAST,
    CT_PRESETS,
    FULL,
    STORED,
    conformal_sentence,
    diagnoses_html,
    impression_html,
    modalities_html,
    names_list,
    overlay_frame,
    viewer_frame,
    window_presets,
)


def prediction(
    probs: dict[str, float], in_set: tuple[str, ...], coverage: float | None = 0.9, present=("image",)
) -> Prediction:
    display = {"pneumonia": "Pneumonia", "heart_failure": "Heart failure", "sepsis": "Sepsis"}
    ranked = sorted(probs, key=lambda n: -probs[n])
    return Prediction(
        study_id="P",
        scores=tuple(DiagnosisScore(n, display[n], probs[n], n in in_set) for n in ranked),
        conformal_set=in_set,
        coverage_target=coverage,
        impression="",
        present=present,
        missing=tuple(m for m in ("image", "notes", "vitals") if m not in present),
        model_id="m",
        model_version="0",
        calibrated=coverage is not None,
        seconds=0.1,
    )


def test_the_prediction_set_is_said_as_diagnoses_not_ruled_out_that_may_coexist():
    probs = {"pneumonia": 0.7, "heart_failure": 0.6, "sepsis": 0.1}
    two = conformal_sentence(prediction(probs, ("pneumonia", "heart_failure")))
    assert two == (
        "Prediction set at 90% coverage: Pneumonia and Heart failure. The model cannot rule out any of these 2 diagnoses; "
        "each is judged on its own, so they may be present together. It rules out the other diagnoses it knows."
    )
    three = conformal_sentence(prediction(probs, ("pneumonia", "heart_failure", "sepsis")))
    assert (
        three.startswith("Prediction set at 90% coverage: Pneumonia, Heart failure and Sepsis.")
        and "present together" in three
    )
    for sentence in (
        two,
        three,
    ):  # a multi-label set lists diagnoses that can coexist, never alternatives to choose between
        assert "tell between" not in sentence and "either" not in sentence
    one = conformal_sentence(prediction(probs, ("pneumonia",)))
    assert (
        one
        == "Prediction set at 90% coverage: Pneumonia. The model cannot rule it out; it rules out the other diagnoses it knows."
    )
    assert "empty" in conformal_sentence(prediction(probs, ()))
    assert "no conformal calibration" in conformal_sentence(prediction(probs, (), coverage=None))
    assert names_list(["A"]) == "A" and names_list([]) == ""


def test_diagnoses_table_is_ranked_with_percentages_and_set_marks():
    page = diagnoses_html(prediction({"pneumonia": 0.2, "heart_failure": 0.65, "sepsis": 0.05}, ("heart_failure",)))
    assert re.findall(r'data-diagnosis="(\w+)"', page) == ["heart_failure", "pneumonia", "sepsis"]
    assert re.findall(r'class="medmm-prob">([\d.]+)%', page) == ["65.0", "20.0", "5.0"]
    assert page.count("in set</span>") == 1 and "calibrated probability" in page
    uncalibrated = diagnoses_html(
        prediction({"pneumonia": 0.2, "heart_failure": 0.65, "sepsis": 0.05}, (), coverage=None)
    )
    assert "not calibrated" in uncalibrated


def test_modalities_say_used_missing_and_present_but_unused():
    study = Study(study_id="P", notes=(ClinicalNote(text="cough"),))
    base = prediction({"pneumonia": 0.5, "heart_failure": 0.4, "sepsis": 0.1}, (), present=())
    unread = dataclasses.replace(
        base,
        scores=(),
        answered=False,
        refusal="nothing this model can read: ...",
        inputs=(InputUse("notes", "DocumentReference/a", False, "document type 11488-4 is not one the model read"),),
    )
    page = modalities_html(unread, study)
    assert "Imaging: missing" in page and "Vital signs: missing" in page
    assert "Clinical notes: present in the files but not used" in page
    assert "Clinical notes DocumentReference/a: document type 11488-4 is not one the model read" in page
    assert "No answer" in page and "no diagnosis, no prediction set and no impression" in page


def test_viewer_applies_the_window_by_hand():
    pixels = np.arange(100, dtype=np.float32).reshape(10, 10) * 10.0  # 0 .. 990
    series = ImageSeries(pixels=pixels, spacing=(1.0, 1.0), modality="DX", series_uid="1", window=(500.0, 200.0))
    frame = viewer_frame(series, STORED)
    expected = np.round(255 * np.clip((pixels - 400.0) / 200.0, 0, 1)).astype(np.uint8)
    np.testing.assert_array_equal(frame, expected)
    np.testing.assert_array_equal(viewer_frame(series, FULL), np.round(255 * pixels / 990.0).astype(np.uint8))
    lo, hi = np.percentile(pixels, [5, 95])
    np.testing.assert_array_equal(
        viewer_frame(series, CONTRAST), np.round(255 * np.clip((pixels - lo) / (hi - lo), 0, 1)).astype(np.uint8)
    )
    assert window_presets(series) == [STORED, FULL, CONTRAST]


def test_ct_presets_are_in_hounsfield_units_and_the_slider_picks_the_slice():
    volume = np.stack([np.full((4, 4), v, dtype=np.float32) for v in (-1000.0, -600.0, 40.0, 1000.0)])  # (S, H, W)
    series = ImageSeries(pixels=volume, spacing=(2.0, 1.0, 1.0), modality="CT", series_uid="2")
    assert set(CT_PRESETS) <= set(window_presets(series))
    # lung window (-600, 1500): [-1350, 150]
    for index, value in enumerate((-1000.0, -600.0, 40.0, 1000.0)):
        want = round(255 * min(max((value + 1350.0) / 1500.0, 0.0), 1.0))
        assert np.all(viewer_frame(series, "Lung", index) == want)
    assert np.all(viewer_frame(series, "Lung", 99) == 255)  # clipped to the last slice


def test_overlay_blends_heat_by_opacity_times_relative_relevance():
    pixels = np.full((2, 2), 50.0, dtype=np.float32)
    series = ImageSeries(pixels=pixels, spacing=(1.0, 1.0), modality="DX", series_uid="3", window=(50.0, 100.0))
    relevance = np.array([[0.0, 0.25], [0.25, 0.5]])
    frame = overlay_frame(series, ImageMap(relevance, relevance, "3"), opacity=0.4)
    heat = relevance / 0.5
    colour = colormaps["inferno"](heat)[..., :3]
    want = (1 - 0.4 * heat[..., None]) * 0.5 + 0.4 * heat[..., None] * colour
    np.testing.assert_array_equal(frame, np.round(255 * want).astype(np.uint8))
    assert np.all(overlay_frame(series, ImageMap(relevance, relevance, "3"), opacity=0.0) == round(255 * 0.5))


def test_colour_images_get_no_window():
    pixels = np.zeros((2, 2, 3), dtype=np.float32)
    pixels[0, 0] = (100.0, 50.0, 0.0)
    series = ImageSeries(pixels=pixels, spacing=(1.0, 1.0), modality="XC", series_uid="4", photometric="RGB")
    assert window_presets(series) == [FULL]
    assert viewer_frame(series, FULL)[0, 0].tolist() == [255, 128, 0]


def test_the_impression_shows_what_it_states_and_what_was_withheld_and_why():
    base = prediction({"pneumonia": 0.8, "heart_failure": 0.1, "sepsis": 0.1}, ("pneumonia",))
    kept = Claim("crackles", "notes", "pneumonia", "supported", "note 1: 'Crackles at the right base.'")
    fever = Claim(
        "fever", "vitals", "pneumonia", "contradicted", "max temperature 37.1 Cel (2024-05-01 10:00), below 38.0"
    )
    page = impression_html(
        dataclasses.replace(base, impression="pneumonia (crackles).", claims=(kept,), removed_claims=(fever,))
    )
    assert "<blockquote>pneumonia (crackles).</blockquote>" in page
    assert "crackles: note 1: &#x27;Crackles at the right base.&#x27;" in page
    assert "fever (contradicted): max temperature 37.1 Cel (2024-05-01 10:00), below 38.0" in page
    assert "withheld" in page and "1 finding(s) the model drafted were withheld" in page
    assert "withheld" not in impression_html(dataclasses.replace(base, impression="pneumonia."))
