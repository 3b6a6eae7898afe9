import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from medmm.evaluate.arrays import EvaluationError
from medmm.evaluate.calibration import (
    apply_temperature,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    probs_to_logits,
    reliability_bins,
    summarise_calibration,
)


def test_ece_hand_worked_four_predictions_two_bins():
    # bin [0, .5]: p .2, .3 (mean .25), y 0, 1 (rate .5) -> 2/4 * .25 = .125
    # bin (.5, 1]: p .7, .9 (mean .8), y 1, 1 (rate 1) -> 2/4 * .2 = .1
    y = np.array([0, 1, 1, 1])
    p = np.array([0.2, 0.3, 0.7, 0.9])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.225)
    bins = reliability_bins(y, p, n_bins=2)
    assert bins.counts == (2, 2)
    assert bins.mean_predicted == pytest.approx((0.25, 0.8))
    assert bins.observed_rate == pytest.approx((0.5, 1.0))
    assert bins.edges == pytest.approx((0.0, 0.5, 1.0))


def test_reliability_bins_agree_with_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    p = rng.random(500) ** 2
    y = (rng.random(500) < p).astype(int)
    bins = reliability_bins(y, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    full = np.asarray(bins.counts) > 0
    assert np.asarray(bins.observed_rate)[full] == pytest.approx(prob_true)
    assert np.asarray(bins.mean_predicted)[full] == pytest.approx(prob_pred)
    assert sum(bins.counts) == 500
    assert np.isnan(np.asarray(bins.mean_predicted)[~full]).all()


def test_pooled_and_per_diagnosis_summary():
    rng = np.random.default_rng(1)
    p = rng.random((300, 3))
    y = (rng.random((300, 3)) < p**0.5).astype(int)  # under-predicted: miscalibrated on purpose
    s = summarise_calibration(y, p, names=["a", "b", "c"], n_bins=5)
    assert s.names == ("a", "b", "c")
    for k in range(3):
        assert s.ece[k] == pytest.approx(expected_calibration_error(y[:, k], p[:, k], 5))
        assert s.brier[k] == pytest.approx(brier_score_loss(y[:, k], p[:, k]))
    assert s.ece_pooled == pytest.approx(expected_calibration_error(y.ravel(), p.ravel(), 5))
    assert s.brier_pooled == pytest.approx(brier_score_loss(y.ravel(), p.ravel()))
    assert brier_score(y, p) == pytest.approx(np.mean((y - p) ** 2))
    assert s.ece_pooled > 0.1


def calibrated_logits(n, k, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    y = (rng.random((n, k)) < 1.0 / (1.0 + np.exp(-z))).astype(int)
    return z, y


def test_temperature_recovers_overconfidence_factor_and_lowers_ece():
    z_val, y_val = calibrated_logits(6000, 3, seed=2)
    z_test, y_test = calibrated_logits(6000, 3, seed=3)
    report = calibration_report(y_val, 3.0 * z_val, y_test, 3.0 * z_test, names=["a", "b", "c"])
    assert report.temperature == pytest.approx(3.0, rel=0.1)
    assert report.after.ece_pooled < 0.5 * report.before.ece_pooled
    assert report.after.brier_pooled < report.before.brier_pooled
    # one temperature rescales logits only: ranking (AUROC) is unchanged
    after = apply_temperature(3.0 * z_test, report.temperature)
    for k in range(3):
        assert roc_auc_score(y_test[:, k], after[:, k]) == pytest.approx(roc_auc_score(y_test[:, k], z_test[:, k]))
    json.dumps(report.to_dict(), allow_nan=False)


def test_calibrated_logits_give_temperature_near_one():
    z, y = calibrated_logits(8000, 2, seed=4)
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.08)


def test_apply_temperature_and_logits():
    z = np.array([-2.0, 0.0, 3.0])
    assert apply_temperature(z, 2.0) == pytest.approx(1.0 / (1.0 + np.exp(-z / 2.0)))
    assert probs_to_logits(np.array([0.5, 0.8])) == pytest.approx([0.0, np.log(4.0)])
    assert np.isfinite(probs_to_logits(np.array([0.0, 1.0]))).all()
    with pytest.raises(EvaluationError):
        apply_temperature(z, 0.0)


def test_fit_temperature_needs_both_classes_and_finite_logits():
    with pytest.raises(EvaluationError):
        fit_temperature(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(EvaluationError):
        fit_temperature(np.array([1.0, np.nan]), np.array([0, 1]))
