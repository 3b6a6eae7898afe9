import json

import numpy as np
import pytest

from medmm.errors import CheckpointError
from medmm.evaluate.arrays import EvaluationError
from medmm.evaluate.conformal import ConformalCalibrator, conformal_rank, conformal_threshold, nonconformity_scores


def test_nonconformity_score_by_hand():
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    p = np.array([[0.9, 0.1, 0.6], [0.5, 0.5, 0.5], [0.3, 0.2, 0.99]])
    # case 0: max(1-.9, 1-.6) = .4; case 1: no true diagnosis -> 0; case 2: 1-.2 = .8
    assert nonconformity_scores(y, p) == pytest.approx([0.4, 0.0, 0.8])


@pytest.mark.parametrize(
    "alpha, expected",
    [
        (0.4, 0.3),  # k = ceil(6 * .6) = 4 -> 4th smallest
        (0.2, 0.4),  # k = ceil(6 * .8) = 5 -> largest
        (0.1, 1.0),  # k = ceil(6 * .9) = 6 > n: every diagnosis in every set
        (0.5, 0.2),  # k = ceil(6 * .5) = 3
    ],
)
def test_threshold_hand_computed(alpha, expected):
    scores = np.array([0.05, 0.4, 0.1, 0.3, 0.2])
    assert conformal_threshold(scores, alpha) == pytest.approx(expected)
    k = int(np.ceil(6 * (1 - alpha) - 1e-9))
    if k <= 5:
        assert expected == np.quantile(scores, k / 5, method="inverted_cdf")


def test_rank_is_robust_to_float_error():
    assert 10 * (1 - 0.7) > 3  # 3.0000000000000004 in floating point
    assert conformal_rank(9, 0.7) == 3
    assert conformal_rank(19, 0.1) == 18


def test_sets_hold_diagnoses_with_probability_at_least_one_minus_q():
    y_cal = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p_cal = np.array([[0.8, 0.1], [0.2, 0.7], [0.9, 0.6], [0.3, 0.3]])
    # scores .2, .3, .4, 0 ; alpha .2 -> k = ceil(5 * .8) = 4 -> q = .4 -> keep p >= .6
    cal = ConformalCalibrator(alpha=0.2, names=["a", "b"]).fit(y_cal, p_cal)
    assert cal.threshold == pytest.approx(0.4)
    sets = cal.predict_sets(np.array([[0.65, 0.59], [0.1, 0.95]]))
    assert sets.tolist() == [[True, False], [False, True]]
    assert cal.set_names(np.array([0.6, 0.61])) == ("a", "b")
    assert cal.predict_sets(np.array([0.1, 0.2])).tolist() == [False, False]


def calibrated(n, k, seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 1.8, size=(n, k))
    return (rng.random((n, k)) < p).astype(int), p


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_empirical_coverage_near_target(alpha):
    y_cal, p_cal = calibrated(2000, 5, seed=10)
    y_test, p_test = calibrated(2000, 5, seed=11)
    cal = ConformalCalibrator(alpha=alpha).fit(y_cal, p_cal)
    report = cal.evaluate(y_test, p_test)
    assert abs(report.coverage - (1 - alpha)) <= 0.03
    sets = cal.predict_sets(p_test)
    covered = np.all(sets | (y_test == 0), axis=1)  # every true diagnosis in the set
    assert report.coverage == pytest.approx(covered.mean())
    assert report.mean_set_size == pytest.approx(sets.sum(axis=1).mean())
    assert report.inclusion_rate == pytest.approx(tuple(sets.mean(axis=0)))
    assert report.n == 2000 and report.target_coverage == pytest.approx(1 - alpha)


def test_lower_alpha_gives_larger_sets():
    y, p = calibrated(1000, 5, seed=12)
    small = ConformalCalibrator(alpha=0.3).fit(y, p).evaluate(y, p).mean_set_size
    large = ConformalCalibrator(alpha=0.05).fit(y, p).evaluate(y, p).mean_set_size
    assert large > small


def test_round_trip_through_json():
    y, p = calibrated(300, 5, seed=13)
    cal = ConformalCalibrator(alpha=0.15).fit(y, p)
    restored = ConformalCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert restored.threshold == cal.threshold and restored.names == cal.names and restored.alpha == cal.alpha
    assert np.array_equal(restored.predict_sets(p), cal.predict_sets(p))
    json.dumps(cal.evaluate(y, p).to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "change",
    [
        {"format": "other/1"},
        {"threshold": 1.5},
        {"alpha": 1.0},
        {"names": []},
        {"n_calibration": "many"},
        {"extra": 1},
    ],
)
def test_from_dict_rejects_malformed_state(change):
    y, p = calibrated(100, 2, seed=14)
    state = ConformalCalibrator(alpha=0.1).fit(y, p).to_dict()
    state.update(change)
    with pytest.raises(CheckpointError):
        ConformalCalibrator.from_dict(state, source="model/conformal.json")


def test_unfitted_and_bad_arguments():
    with pytest.raises(EvaluationError, match="not fitted"):
        ConformalCalibrator().predict_sets(np.array([[0.5]]))
    with pytest.raises(EvaluationError):
        ConformalCalibrator(alpha=0.0)
    cal = ConformalCalibrator(alpha=0.1).fit(np.array([[1, 0]]), np.array([[0.5, 0.5]]))
    with pytest.raises(EvaluationError):
        cal.predict_sets(np.array([[0.5, 0.5, 0.5]]))
