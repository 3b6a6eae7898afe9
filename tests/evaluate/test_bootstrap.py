import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from medmm.evaluate.arrays import EvaluationError, patient_codes
from medmm.evaluate.bootstrap import (
    bin_index,
    bootstrap_weights,
    percentile_interval,
    weighted_auroc,
    weighted_average_precision,
    weighted_confusion,
    weighted_ece,
)
from medmm.evaluate.calibration import expected_calibration_error


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 250
    y = rng.integers(0, 2, n)
    score = np.round(rng.random(n) * 0.7 + 0.3 * y, 1)  # rounded: many ties
    w = rng.integers(0, 4, size=(6, n)).astype(float)  # includes zero weights, like resamples
    return y, score, w


def test_weighted_auroc_and_ap_equal_sklearn_with_sample_weight(data):
    y, score, w = data
    auroc = weighted_auroc(y, score, w)
    ap = weighted_average_precision(y, score, w)
    for b in range(w.shape[0]):
        assert auroc[b] == pytest.approx(roc_auc_score(y, score, sample_weight=w[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(y, score, sample_weight=w[b]), abs=1e-12)


def test_weighted_metrics_undefined_without_a_class():
    y = np.array([0, 1, 1])
    score = np.array([0.2, 0.6, 0.9])
    w = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])  # first: no negatives; second: no positives
    assert np.isnan(weighted_auroc(y, score, w)).all()
    ap = weighted_average_precision(y, score, w)
    assert ap[0] == pytest.approx(1.0) and np.isnan(ap[1])


def test_weighted_confusion_equals_sklearn(data):
    y, score, w = data
    pred = score >= 0.5
    tp, fp, fn, tn = weighted_confusion(y, pred, w)
    for b in range(w.shape[0]):
        (e_tn, e_fp), (e_fn, e_tp) = confusion_matrix(y, pred, labels=[0, 1], sample_weight=w[b])
        assert (tp[b], fp[b], fn[b], tn[b]) == pytest.approx((e_tp, e_fp, e_fn, e_tn))


def test_weighted_ece_equals_ece_of_replicated_rows():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (40, 3))
    p = rng.random((40, 3))
    w = rng.integers(0, 3, size=(3, 40)).astype(float)
    got = weighted_ece(y, p, w, n_bins=10)
    for b in range(3):
        rows = np.repeat(np.arange(40), w[b].astype(int))  # a resample as explicit rows
        assert got[b] == pytest.approx(expected_calibration_error(y[rows], p[rows], 10), abs=1e-12)


def test_bin_index_follows_upper_closed_edges():
    # edges 0, .5, 1: 0 and .5 fall in bin 0, anything above .5 (and 1) in bin 1
    assert bin_index(np.array([0.0, 0.2, 0.5, 0.5001, 1.0]), 2).tolist() == [0, 0, 0, 1, 1]


def test_bootstrap_weights_take_whole_patients():
    ids = ["a", "a", "b", "c", "c", "c"]
    codes = patient_codes(ids, len(ids))
    w = np.vstack(list(bootstrap_weights(codes, 50, seed=1, chunk=7)))
    assert w.shape == (50, 6)
    # every row of a patient carries the patient's draw count
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    # each resample draws 3 patients in total
    assert (w[:, [0, 2, 3]].sum(axis=1) == 3).all()


def test_bootstrap_weights_are_seeded_and_independent_of_chunking():
    codes = patient_codes(None, 20)
    one = np.vstack(list(bootstrap_weights(codes, 30, seed=9, chunk=100)))
    many = np.vstack(list(bootstrap_weights(codes, 30, seed=9, chunk=7)))
    other = np.vstack(list(bootstrap_weights(codes, 30, seed=10)))
    assert np.array_equal(one, many) and not np.array_equal(one, other)
    with pytest.raises(EvaluationError):
        next(bootstrap_weights(codes, 0, seed=1))


def test_percentile_interval_ignores_undefined_resamples():
    samples = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    low, high = percentile_interval(samples, 0.5)
    assert (low, high) == pytest.approx(tuple(np.quantile([1, 2, 3, 4, 5], [0.25, 0.75])))
    assert all(np.isnan(percentile_interval(np.array([np.nan]), 0.95)))
