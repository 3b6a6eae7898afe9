"""Classical baselines: features by hand, classifiers equal to scikit-learn fitted by hand, fusion by
hand, and the paired bootstrap against a worked example."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from medmm.codes import VITAL_SIGNS
from medmm.evaluate.baseline_fusion import VARIANTS, BaselineSuite, late_fusion, macro_auroc
from medmm.evaluate.baselines import IMAGE_SIDE, VITAL_STATS, ModalityModels, case_table, image_vector, vitals_summary
from medmm.evaluate.paired import paired_auroc_difference
from medmm.records import ClinicalNote, Demographics, ImageSeries, Label, Study, VitalSeries

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
CHANNELS = tuple(v.name for v in VITAL_SIGNS)
NAMES = ("pneumonia", "heart_failure")


def grid(values: np.ndarray, mask: np.ndarray) -> VitalSeries:
    return VitalSeries(
        start=T0,
        step_seconds=3600.0,
        channels=CHANNELS,
        units=tuple(v.unit for v in VITAL_SIGNS),
        values=np.where(mask, values, np.nan).astype(np.float32),
        mask=mask,
    )


def test_vitals_summary_by_hand():
    values = np.full((24, len(CHANNELS)), 80.0)
    mask = np.zeros_like(values, dtype=bool)
    hr = CHANNELS.index("heart_rate")
    hours = np.array([0, 5, 13, 20, 23])
    values[hours, hr] = [70.0, 75.0, 90.0, 100.0, 110.0]
    mask[hours, hr] = True
    out = vitals_summary(Study("s", vitals=grid(values, mask)), CHANNELS, 24).reshape(len(CHANNELS), len(VITAL_STATS))
    x = np.array([70.0, 75.0, 90.0, 100.0, 110.0])
    slope = np.polyfit(hours.astype(float), x, 1)[0]
    recent = x[hours >= 12]  # the last 12 hours of a 24-hour grid: steps 12..23
    expected = [x.mean(), x.std(), 70.0, 110.0, 110.0, slope, 5 / 24, recent.mean(), recent.min(), recent.max()]
    np.testing.assert_allclose(out[hr], expected)
    assert np.isnan(out[CHANNELS.index("spo2")]).sum() == len(VITAL_STATS) - 1  # only "observed" (0) is known
    assert vitals_summary(Study("s"), CHANNELS, 24) is None


def test_image_vector_is_the_windowed_image_shrunk_by_area():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1000, size=(64, 64)).astype(np.float32)
    series = ImageSeries(pixels=pixels, spacing=(6.0, 6.0), modality="DX", series_uid="1", window=(500.0, 800.0))
    scaled = np.clip((pixels - 100.0) / 800.0, 0, 1)
    by_hand = scaled.reshape(IMAGE_SIDE, 2, IMAGE_SIDE, 2).mean(axis=(1, 3)).ravel()
    np.testing.assert_allclose(image_vector(Study("s", images=(series,))), by_hand, atol=1e-6)


def toy_studies(n: int, seed: int) -> list[Study]:
    """Pneumonia shows in the notes ("crackles") and the temperature; heart failure in the weight and the image."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pn, hf = rng.uniform() < 0.4, rng.uniform() < 0.35
        words = ["patient", "seen", "today"] + (
            ["crackles", "productive", "cough"] if pn and rng.uniform() < 0.8 else ["clear", "chest"]
        )
        rng.shuffle(words)
        values = np.zeros((24, len(CHANNELS)))
        for c, sign in enumerate(VITAL_SIGNS):
            values[:, c] = (sign.low + sign.high) / 2 + rng.normal(0, 1, 24)
        values[:, CHANNELS.index("temperature")] = 37.0 + (1.2 if pn else 0.0) + rng.normal(0, 0.5, 24)
        values[:, CHANNELS.index("weight")] = 70 + np.linspace(0, 3 if hf else 0, 24) + rng.normal(0, 0.3, 24)
        mask = rng.uniform(size=values.shape) < 0.7
        pixels = rng.normal(0.3, 0.05, size=(64, 64))
        if hf:
            pixels[20:50, 16:48] += 0.4  # a big heart
        image = ImageSeries(
            pixels=pixels.astype(np.float32), spacing=(6.0, 6.0), modality="DX", series_uid=str(i), window=(0.5, 1.0)
        )
        labels = tuple(Label("x", "y", name=n) for n, has in (("pneumonia", pn), ("heart_failure", hf)) if has)
        demo = Demographics(f"P{i}", sex="female" if i % 2 else "male", age_years=float(30 + i % 50), race="2106-3")
        has_image = i % 5 != 0  # some cases lack the image
        out.append(
            Study(
                f"P{seed}-{i}",
                demo,
                (image,) if has_image else (),
                (ClinicalNote(" ".join(words)),),
                grid(values, mask),
                labels,
            )
        )
    return out


@pytest.fixture(scope="module")
def tables():
    return tuple(case_table(toy_studies(n, seed), NAMES, CHANNELS, 24) for n, seed in ((120, 1), (60, 2), (60, 3)))


def test_the_notes_model_equals_scikit_learn_fitted_by_hand(tables):
    train, val, test = tables
    models = ModalityModels().fit(train, val, ("notes",))
    for k, name in enumerate(NAMES):
        c = float(models.choice["notes"][k].split("C=")[1].rstrip(")"))
        by_hand = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(C=c, max_iter=3000)
        )
        by_hand.fit(train.notes, train.labels[:, k])
        np.testing.assert_allclose(
            models.probabilities(test, "notes")[:, k], by_hand.predict_proba(test.notes)[:, 1], atol=1e-12
        )
        # and that C was the best on val among the grid
        val_scores = {}
        for grid_c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            m = make_pipeline(
                TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                LogisticRegression(C=grid_c, max_iter=3000),
            )
            val_scores[grid_c] = roc_auc_score(
                val.labels[:, k], m.fit(train.notes, train.labels[:, k]).predict_proba(val.notes)[:, 1]
            )
        assert val_scores[c] == max(val_scores.values())


def test_cases_without_a_modality_get_no_probability_from_it(tables):
    train, val, test = tables
    models = ModalityModels().fit(train, val, ("image",))
    p = models.probabilities(test, "image")
    assert np.isnan(p[~test.present["image"]]).all() and np.isfinite(p[test.present["image"]]).all()


def test_late_fusion_by_hand():
    per = {"image": np.array([[0.2, np.nan], [np.nan, np.nan]]), "notes": np.array([[0.6, 0.4], [np.nan, np.nan]])}
    prior = np.array([0.3, 0.1])
    np.testing.assert_allclose(late_fusion(per, ("image", "notes"), prior), [[0.4, 0.4], [0.3, 0.1]])


def test_the_suite_chooses_each_subsets_variant_on_val(tables):
    train, val, test = tables
    subsets = [("image",), ("notes",), ("vitals",), ("image", "notes", "vitals")]
    suite = BaselineSuite().fit(train, val, subsets)
    for subset in subsets:
        chosen = suite.subsets[subset]
        assert set(chosen.val_macro) == set(VARIANTS)
        assert chosen.val_macro[chosen.chosen] == max(v for v in chosen.val_macro.values() if v is not None)
        p = suite.probabilities(test, subset)
        assert p.shape == (len(test.patient_ids), 2) and np.isfinite(p).all()
    every = macro_auroc(test.labels, suite.probabilities(test, ("image", "notes", "vitals")))
    assert every > 0.85  # each diagnosis is plain in two modalities: the fused baseline finds both


def test_paired_bootstrap_against_a_worked_example():
    y = np.array([[1], [0], [1], [0], [1], [0]])
    a = np.array([[0.9], [0.1], [0.8], [0.3], [0.6], [0.4]])  # AUROC 1.0
    b = np.array([[0.7], [0.6], [0.4], [0.2], [0.8], [0.5]])  # pairs (pos > neg): 7 of 9
    out = paired_auroc_difference(y, a, b, ("x",), [f"p{i}" for i in range(6)], n_boot=200, seed=3)
    assert out["macro"]["first"] == pytest.approx(1.0) and out["macro"]["second"] == pytest.approx(7 / 9)
    assert out["by_diagnosis"]["x"]["difference"] == pytest.approx(2 / 9)
    # the same resamples drawn by hand: rng.integers over patients, 100 resamples a block
    rng = np.random.default_rng(3)
    diffs = []
    for block in (100, 100):
        draws = rng.integers(0, 6, size=(block, 6))
        for rows in draws:
            if 0 < y[rows, 0].sum() < 6:
                diffs.append(roc_auc_score(y[rows, 0], a[rows, 0]) - roc_auc_score(y[rows, 0], b[rows, 0]))
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert out["by_diagnosis"]["x"]["low"] == pytest.approx(low) and out["by_diagnosis"]["x"]["high"] == pytest.approx(
        high
    )
