"""Rendering: overlay colours by hand, PNG files of the stated size, notes HTML that keeps the text exactly."""

from __future__ import annotations

import html
import re

import numpy as np
from matplotlib import colormaps
from matplotlib.image import imread

from medmm.codes import VITAL_NAMES
from medmm.explain.mapping import ImageMap, NotesMap, VitalsMap, WordRelevance, notes_map, upsample, word_spans
from medmm.explain.render import (
    DISCLAIMER,
    caption,
    heat_fraction,
    notes_html,
    overlay,
    render_image,
    render_notes,
    render_vitals,
    slice_to_draw,
)
from medmm.records import ClinicalNote, Study
from tests.explain.conftest import make_study


def test_caption():
    assert (
        caption("pneumonia", 0.834, "attention", "Pneumonia")
        == "Pneumonia (probability 83%): attention (gradient-weighted)"
    )
    assert (
        caption("acute_bronchitis", 0.5, "attention")
        == "acute_bronchitis (probability 50%): attention (gradient-weighted)"
    )
    assert caption("impression", None, "gradcam") == "Impression: Grad-CAM"


def test_heat():
    np.testing.assert_allclose(heat_fraction(np.array([0.1, 0.4, 0.2])), [0.25, 1.0, 0.5])
    assert not heat_fraction(np.zeros(3)).any()


def test_overlay_colours_by_hand():
    grey = np.full((2, 2), 0.5)
    rel = np.array([[0.0, 0.2], [0.4, 0.1]])
    got = overlay(grey, rel, opacity=0.6)
    top = np.array(colormaps["inferno"](1.0)[:3])
    np.testing.assert_allclose(got[0, 0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(got[1, 0], 0.4 * 0.5 + 0.6 * top)
    half = np.array(colormaps["inferno"](0.5)[:3])
    np.testing.assert_allclose(got[0, 1], 0.7 * 0.5 + 0.3 * half)


def test_slice_to_draw():
    rel = np.zeros((3, 2, 2))
    rel[1, 0, 0], rel[2] = 0.5, 0.1
    assert slice_to_draw(rel) == 1


def test_png_files(tmp_path):
    study = make_study()
    image = ImageMap(upsample(np.eye(4), (40, 50)), np.eye(4) / 4, "1.2.3.4")
    path = render_image(study.images[0], image, caption("pneumonia", 0.5, "attention"), tmp_path / "a" / "image.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and imread(path).shape == (640, 600, 4)
    observed = study.vitals.mask
    vitals = VitalsMap(
        study.vitals.start, 3600.0, tuple(VITAL_NAMES), np.where(observed, 1.0, 0) / observed.sum(), observed
    )
    path = render_vitals(study.vitals, vitals, "x", tmp_path / "vitals.png")
    shown = sum(observed[:, c].any() for c in range(observed.shape[1]))
    assert imread(path).shape == (int(round(100 * (0.6 * shown + 1.6))), 800, 4)


def test_notes_html_keeps_the_text_and_shades_by_relevance(tmp_path):
    text = 'Cough <worse> & "fever"; denies pain.'
    study = Study(study_id="s", notes=(ClinicalNote(text=text),))
    spans = word_spans(text)
    assert [text[s:e] for s, e in spans] == ["Cough", "worse", "fever", "denies", "pain"]
    values = [(0.5, True), (0.25, True), (0.25, True), (0.0, True), (0.0, False)]
    words = tuple(WordRelevance(0, s, e, v, r) for (s, e), (v, r) in zip(spans, values))
    page = notes_html(study, NotesMap(words, (0,)), caption("pneumonia", 0.9, "integrated_gradients", "Pneumonia"))
    body = re.search(r"<pre>\n?(.*?)\n?</pre>", page, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == text
    marks = re.findall(r'rgba\(220, 38, 38, ([0-9.]+)\)" title="relevance [0-9.]+">([^<]+)</mark>', body)
    assert marks == [("1.000", "Cough"), ("0.500", "worse"), ("0.500", "fever")]
    assert '<span class="unread">pain</span>' in body
    assert "Pneumonia (probability 90%): integrated gradients" in page and DISCLAIMER in page
    path = render_notes(study, NotesMap(words, (0,)), "x", tmp_path / "n.html")
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_notes_html_from_a_mapped_study(study, batch):
    valid = (batch["notes_attention"][0].bool() & batch["notes_present"][0][:, None]).numpy()
    m = notes_map(study, np.where(valid, 1.0, 0.0) / valid.sum(), batch["notes_offsets"][0].numpy(), valid, 2)
    page = notes_html(study, m, "x")
    for note in study.notes:
        assert html.escape(note.text.split()[0]) in page
    assert page.count('<section class="note"') == 2
