"""Token maps back onto pixels, the vitals time axis and words, checked against values worked out by hand."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from medmm.codes import VITAL_NAMES
from medmm.errors import ConfigError
from medmm.explain.mapping import image_map, kept_notes, model_pixels, notes_map, upsample, vitals_map, word_spans
from tests.explain.conftest import NOTE_TEXTS, STUDY_TIME, make_study


def test_bilinear_upsampling_by_hand():
    # align_corners=False, scale 2: output pixel i samples source (i + 0.5) / 2 - 0.5, clamped to [0, 1]
    weights = np.array([1.0, 0.75, 0.25, 0.0])  # share of source cell 0 in output pixels 0..3
    expected = np.outer(weights, weights)
    got = upsample(np.array([[1.0, 0.0], [0.0, 0.0]]), (4, 4))
    np.testing.assert_allclose(got, expected / expected.sum(), atol=1e-12)
    assert got.sum() == pytest.approx(1.0)


def test_volume_maps_are_per_slice():
    grid = np.zeros((2, 2, 2))
    grid[1, 0, 0] = 1.0
    got = upsample(grid, (4, 6, 6))
    assert got.shape == (4, 6, 6) and got.sum() == pytest.approx(1.0)
    per_slice = got.reshape(4, -1).sum(axis=1)
    assert per_slice[0] == 0 and per_slice[3] > per_slice[2] > per_slice[1] > 0  # relevance grows toward slice cell 1
    with pytest.raises(ConfigError):
        upsample(grid, (6, 6))


def test_image_map_lies_on_the_original_pixel_grid():
    study = make_study(shape=(40, 50))
    grid = np.arange(16, dtype=np.float64).reshape(4, 4)
    grid /= grid.sum()
    m = image_map(study, grid)
    assert m.relevance.shape == (40, 50) == model_pixels(study.images[0]).shape
    assert m.relevance.sum() == pytest.approx(1.0) and (m.relevance >= 0).all()
    assert m.relevance[39, 49] == m.relevance.max() > m.relevance[0, 0]  # the largest cell is bottom right
    np.testing.assert_array_equal(m.grid, grid)
    with pytest.raises(ConfigError):
        image_map(make_study(image=False), grid)


def test_word_spans():
    text = "Crackles right lower-lobe, don't; x2 (SpO2 93%)"
    assert [text[s:e] for s, e in word_spans(text)] == ["Crackles", "right", "lower-lobe", "don't", "x2", "SpO2", "93"]


def test_kept_notes_are_the_newest():
    study = make_study()
    assert kept_notes(study, 2) == (0, 1) and kept_notes(study, 1) == (1,) and kept_notes(study, 5) == (0, 1)


def test_notes_map_sums_token_relevance_into_words(predictor, study, batch):
    offsets = batch["notes_offsets"][0].numpy()
    valid = (batch["notes_attention"][0].bool() & batch["notes_present"][0][:, None]).numpy()
    grid = np.zeros(valid.shape)
    grid[valid] = np.arange(1, valid.sum() + 1)  # token t of the read tokens gets t + 1
    grid /= grid.sum()
    m = notes_map(study, grid, offsets, valid, max_notes=2)
    assert m.notes == (0, 1)
    # The word-level tokenizer gives [CLS] w1 w2 ... [SEP]; punctuation is its own token and belongs to no word.
    # Note 0 "patient reports cough." -> tokens [CLS] patient reports cough . [SEP] (values 1..6)
    # Note 1 is cut at 8 tokens: [CLS] crackles right lower lobe , denies [SEP] (values 7..14)
    word_values = {
        (0, "patient"): 2,
        (0, "reports"): 3,
        (0, "cough"): 4,
        (1, "crackles"): 8,
        (1, "right"): 9,
        (1, "lower"): 10,
        (1, "lobe"): 11,
        (1, "denies"): 13,
    }
    total = valid.sum() * (valid.sum() + 1) / 2
    got = {(w.note, NOTE_TEXTS[w.note][w.start : w.end]): w for w in m.words}
    for key, value in word_values.items():
        assert got[key].relevance * sum(word_values.values()) / total == pytest.approx(value / total)
        assert got[key].read
    assert sum(w.relevance for w in m.words) == pytest.approx(1.0)
    unread = [NOTE_TEXTS[1][w.start : w.end] for w in m.words if not w.read]
    assert unread[:3] == ["chest", "pain", "sudden"] and all(w.relevance == 0 for w in m.words if not w.read)
    assert len(m.words) == len(word_spans(NOTE_TEXTS[0])) + len(word_spans(NOTE_TEXTS[1]))


def test_notes_map_with_no_relevance_is_uniform_over_words_read(study, batch):
    offsets = batch["notes_offsets"][0].numpy()
    valid = (batch["notes_attention"][0].bool() & batch["notes_present"][0][:, None]).numpy()
    m = notes_map(study, np.zeros(valid.shape), offsets, valid, max_notes=2)
    read = [w for w in m.words if w.read]
    assert len(read) == 8 and all(w.relevance == pytest.approx(1 / 8) for w in read)


def test_vitals_map_keeps_the_time_axis(study):
    observed = study.vitals.mask.copy()
    grid = np.where(observed, 1.0, 0.0) / observed.sum()
    m = vitals_map(study, grid, observed, VITAL_NAMES)
    assert m.channels == tuple(VITAL_NAMES) and m.relevance.shape == (4, 7)
    assert m.times == tuple(STUDY_TIME - timedelta(hours=4 - t) for t in range(4))
    np.testing.assert_array_equal(m.hours, [0, 1, 2, 3])
    with pytest.raises(ConfigError):
        vitals_map(study, np.zeros((5, 7)), np.ones((5, 7), bool), VITAL_NAMES)
