"""Faithfulness figures on hand-made maps and ground truth, worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch

from medmm.errors import EvaluationError
from medmm.explain.faithfulness import (
    CaseFigures,
    PairFigure,
    deletion_drops,
    distinctness,
    phrase_in_top,
    pointing_hit,
    summarise,
    summarise_distinctness,
    tolerance_pixels,
    top_patches,
    top_ranked,
    window_cells,
    window_masses,
)
from medmm.explain.mapping import NotesMap, VitalsMap, WordRelevance
from medmm.synth.planted import PlantedSpan, PlantedWindow

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_tolerance_is_15_pixels_at_224():
    assert tolerance_pixels((224, 200)) == pytest.approx(15.0)
    assert tolerance_pixels((64, 64)) == pytest.approx(64 * 15 / 224)
    assert tolerance_pixels((8, 8)) == 1.0


def test_pointing_game():
    lesion = np.zeros((64, 64), dtype=bool)
    lesion[20:30, 40:50] = True  # rows 20..29, columns 40..49
    tol = tolerance_pixels(lesion.shape)  # 4.29 px

    def peak_at(r, c):
        m = np.zeros(lesion.shape)
        m[r, c] = 1.0
        return m

    assert pointing_hit(peak_at(25, 45), lesion)
    assert pointing_hit(peak_at(25, 53), lesion)  # 4 px right of column 49
    assert not pointing_hit(peak_at(25, 54), lesion)  # 5 px
    assert pointing_hit(peak_at(32, 52), lesion)  # (3, 3) from the corner: 4.24 px
    assert not pointing_hit(peak_at(33, 53), lesion)  # (4, 4): 5.66 px
    assert pointing_hit(peak_at(25, 55), lesion, tolerance=6.0)
    assert not pointing_hit(np.full(lesion.shape, 0.1), lesion)  # a constant map points nowhere
    two = peak_at(0, 0) + peak_at(25, 45)
    assert not pointing_hit(two, lesion)  # the first maximum in row-major order counts
    with pytest.raises(EvaluationError):
        pointing_hit(np.zeros((10, 10)), lesion)
    assert tol == pytest.approx(4.2857, abs=1e-4)


def test_top_ranked_counts_ties_against_the_method():
    scores = np.array([5, 3, 3] + [0] * 17, dtype=float)  # n = 20 -> the top 10% are 2 ranks
    np.testing.assert_array_equal(top_ranked(scores), [True, False, False] + [False] * 17)
    scores[2] = 2
    np.testing.assert_array_equal(top_ranked(scores)[:3], [True, True, False])
    assert not top_ranked(np.full(20, 0.05)).any()  # a uniform map ranks nothing on top
    assert top_ranked(np.array([1.0])).all()


def _words(values, note=0):
    return tuple(WordRelevance(note, 10 * i, 10 * i + 5, float(v), True) for i, v in enumerate(values))


def test_phrase_in_top():
    words = _words([0.0] * 8 + [0.5, 0.1] + [0.0] * 10)  # 20 words, word 8 best, word 9 second
    notes = NotesMap(words + (WordRelevance(0, 300, 305, 0.4, False),), (0,))  # unread words never count
    assert phrase_in_top(notes, [PlantedSpan(0, 80, 92, "pneumonia", "evidence")])  # words 8 and 9
    assert phrase_in_top(notes, [PlantedSpan(0, 92, 95, "pneumonia", "evidence")])  # word 9, rank 2 of 20
    assert not phrase_in_top(notes, [PlantedSpan(0, 0, 45, "pneumonia", "evidence")])  # words 0-4: tied at 0
    assert phrase_in_top(notes, [PlantedSpan(0, 300, 305, "pneumonia", "evidence")]) is None  # not read
    assert phrase_in_top(notes, [PlantedSpan(1, 80, 92, "pneumonia", "evidence")]) is None  # another note


def _vitals(relevance, observed):
    return VitalsMap(
        T0, 3600.0, ("heart_rate", "spo2", "weight"), np.asarray(relevance, float), np.asarray(observed, bool)
    )


def test_window_cells_and_masses():
    observed = np.ones((6, 3), dtype=bool)
    observed[4, 0] = False
    observed[:, 2] = False
    rel = np.where(observed, 1.0, 0.0)
    rel[5, 0] = 6.0
    rel /= rel.sum()  # 11 observed cells with weights 1 (x10) and 6
    window = PlantedWindow(T0 + timedelta(hours=2.5), T0 + timedelta(hours=6), ("heart_rate", "weight"))
    cells = window_cells(_vitals(rel, observed), window)
    expected = np.zeros((6, 3), dtype=bool)
    expected[[2, 3, 5], 0] = True  # steps 2..5 overlap [2.5 h, 6 h); step 4 is unobserved; weight never observed
    np.testing.assert_array_equal(cells, expected)
    m, u = window_masses(_vitals(rel, observed), window)
    assert m == pytest.approx((1 + 1 + 6) / 16) and u == pytest.approx(3 / 11)
    outside = PlantedWindow(T0 + timedelta(hours=7), T0 + timedelta(hours=9), ("heart_rate",))
    assert window_masses(_vitals(rel, observed), outside) is None


def test_top_patches_break_ties_by_position():
    np.testing.assert_array_equal(top_patches(np.array([[0.1, 0.3], [0.3, 0.2]]), 0.5), [1, 2])
    np.testing.assert_array_equal(top_patches(np.full((4, 4), 1 / 16)), [0, 1])  # ceil(1.6) = 2 patches


def test_deletion_drops_by_hand(model, batch):
    index = 2
    grid = np.zeros((4, 4))
    grid[1, 2], grid[3, 0] = 0.7, 0.3  # the top 2 patches are tokens 6 and 12
    drops, random_drop = deletion_drops(model, batch, index, {"attention": grid}, np.random.default_rng(3), draws=4)
    image = batch["image"]
    mean = image.mean()
    encoder = model.encoders["image"]

    def prob(cells):
        x = image.clone()
        for c in cells:
            x[(0, 0, *encoder.token_region(c, image.shape[2:]))] = mean
        with torch.no_grad():
            ids, attn = model.prompt_ids(["Impression:"], "cpu")
            return float(
                torch.sigmoid(
                    model({**batch, "image": x}, ids, attn, torch.tensor([ids.shape[1] - 1])).diagnosis_logits[0, index]
                )
            )

    base = prob([])
    assert drops["attention"] == pytest.approx(base - prob([6, 12]), abs=1e-5)
    rng = np.random.default_rng(3)
    expected_random = np.mean([base - prob(rng.choice(16, size=2, replace=False)) for _ in range(4)])
    assert random_drop == pytest.approx(expected_random, abs=1e-5)


def test_summarise_per_method():
    rows = [
        CaseFigures(
            "pneumonia",
            "attention",
            pointing=True,
            window_mass=0.5,
            window_uniform=0.2,
            note_hit=True,
            drop_top=0.3,
            drop_random=0.1,
        ),
        CaseFigures(
            "heart_failure",
            "attention",
            pointing=False,
            window_mass=0.6,
            window_uniform=0.5,
            note_hit=False,
            negated_hit=True,
            drop_top=0.1,
            drop_random=0.1,
        ),
        CaseFigures("pneumonia", "gradcam", pointing=True, drop_top=0.0, drop_random=0.1),
        CaseFigures(
            "pneumonia", "integrated_gradients", window_mass=0.1, window_uniform=0.2, note_hit=True, negated_hit=False
        ),
    ]
    out = summarise(rows, ("attention", "gradcam", "integrated_gradients"))
    att = out["pointing_game"]["attention"]
    assert att["value"] == 0.5 and att["n"] == 2 and att["target"] == 0.8 and att["meets_target"] is False
    assert att["by_diagnosis"] == {"heart_failure": {"value": 0.0, "n": 1}, "pneumonia": {"value": 1.0, "n": 1}}
    win = out["vitals_window_ratio"]["attention"]
    assert win["value"] == pytest.approx(1.1 / 0.7) and win["median_case_ratio"] == pytest.approx((2.5 + 1.2) / 2)
    assert win["best_possible"] == pytest.approx(2 / 0.7) and win["meets_target"] is False
    assert out["vitals_window_ratio"]["gradcam"]["value"] is None and out["vitals_window_ratio"]["gradcam"]["n"] == 0
    assert out["note_evidence_top10"]["integrated_gradients"]["value"] == 1.0
    assert out["negated_top10"]["attention"] == {
        "value": 1.0,
        "n": 1,
        "by_diagnosis": {"heart_failure": {"value": 1.0, "n": 1}},
    }
    dele = out["deletion_ratio"]["attention"]
    assert dele["value"] == pytest.approx(2.0) and dele["meets_target"] is True
    assert out["deletion_ratio"]["gradcam"]["value"] == pytest.approx(0.0)
    assert out["pointing_game"]["integrated_gradients"]["value"] is None


def test_distinctness_is_one_minus_the_cosine_of_the_two_maps():
    a, b = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.5], [0.5, 0.0]])
    assert distinctness(a, b) == pytest.approx(1.0)  # no token in common
    assert distinctness(a, 3 * a) == pytest.approx(0.0)  # the same picture at another scale
    c = np.array([[0.6, 0.4], [0.0, 0.0]])
    assert distinctness(a, c) == pytest.approx(1 - 0.6 / np.sqrt(0.6**2 + 0.4**2))
    assert distinctness(a, np.zeros((2, 2))) is None
    pairs = [
        PairFigure("attention", "image", 0.2),
        PairFigure("attention", "image", 0.6),
        PairFigure("attention", "image", 0.4),
        PairFigure("attention", "vitals", 0.01),
        PairFigure("rollout", "image", 0.0),
    ]
    out = summarise_distinctness(pairs, ("attention", "rollout", "gradcam"))
    assert out["attention"]["image"] == {"median": pytest.approx(0.4), "mean": pytest.approx(0.4), "n": 3}
    assert out["attention"]["vitals"]["n"] == 1 and out["rollout"]["image"]["median"] == 0.0 and out["gradcam"] == {}
