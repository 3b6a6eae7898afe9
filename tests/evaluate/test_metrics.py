import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from medmm.evaluate.arrays import EvaluationError, patient_codes
from medmm.evaluate.bootstrap import bootstrap_weights
from medmm.evaluate.metrics import METRICS, OperatingPoints, choose_operating_points, evaluate_diagnoses

N_BOOT = 200


def make_cases(n, k=3, seed=0, rows_per_patient=1):
    """Calibrated synthetic predictions: y ~ Bernoulli(p) with varying informativeness per column."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-0.5, 1.0 + np.arange(k) * 0.5, size=(n, k))
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.random((n, k)) < p).astype(int)
    ids = np.repeat([f"p{i}" for i in range(n)], rows_per_patient)
    return np.repeat(y, rows_per_patient, axis=0), np.repeat(p, rows_per_patient, axis=0), ids


def hand_rates(y, p, t):
    tn, fp, fn, tp = confusion_matrix(y, (p >= t).astype(int), labels=[0, 1]).ravel()
    return {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp), "ppv": tp / (tp + fp), "npv": tn / (tn + fn)}


def test_point_estimates_equal_sklearn():
    y_val, p_val, _ = make_cases(300, seed=1)
    y, p, ids = make_cases(400, seed=2)
    points = choose_operating_points(y_val, p_val, names=["a", "b", "c"])
    report = evaluate_diagnoses(y, p, points, patient_ids=ids, n_boot=N_BOOT, seed=0)
    assert [d.name for d in report.diagnoses] == ["a", "b", "c"]
    for k, d in enumerate(report.diagnoses):
        assert d.threshold == points.thresholds[k]
        assert d.auroc.value == pytest.approx(roc_auc_score(y[:, k], p[:, k]))
        assert d.auprc.value == pytest.approx(average_precision_score(y[:, k], p[:, k]))
        for m, v in hand_rates(y[:, k], p[:, k], d.threshold).items():
            assert d.estimate(m).value == pytest.approx(v)
        assert (d.n_positive, d.n_negative) == (y[:, k].sum(), (1 - y[:, k]).sum())
    for m in METRICS:
        assert report.macro.estimate(m).value == pytest.approx(np.mean([d.estimate(m).value for d in report.diagnoses]))
    assert report.n_cases == 400 and report.n_patients == 400 and report.macro_over == ("a", "b", "c")


def test_youden_rule_hand_example_prefers_higher_threshold_on_ties():
    # t=0.8: sens .5 spec 1 (J .5); t=0.4: J 0; t=0.35: sens 1 spec .5 (J .5); t=0.1: J 0
    points = choose_operating_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert points.thresholds == (0.8,) and points.rule == "youden"


def test_youden_and_sensitivity_rules_are_optimal_by_brute_force():
    y, p, _ = make_cases(300, k=2, seed=4)
    youden = choose_operating_points(y, p, rule="youden")
    target = choose_operating_points(y, p, rule="sensitivity", target_sensitivity=0.9)
    for k in range(2):
        candidates = np.unique(p[:, k])
        called = p[:, k][None, :] >= candidates[:, None]  # (T, N) calls at every candidate threshold
        sens = (called & (y[:, k] == 1)).sum(axis=1) / y[:, k].sum()
        spec = (~called & (y[:, k] == 0)).sum(axis=1) / (1 - y[:, k]).sum()
        chosen = hand_rates(y[:, k], p[:, k], youden.thresholds[k])
        assert chosen["sensitivity"] + chosen["specificity"] - 1 == pytest.approx((sens + spec - 1).max())
        assert target.thresholds[k] == pytest.approx(candidates[sens >= 0.9].max())
    assert target.target_sensitivity == 0.9


def test_one_class_on_validation_falls_back_with_issue():
    y = np.array([[0, 1], [0, 0], [0, 1]])
    p = np.array([[0.2, 0.9], [0.3, 0.1], [0.1, 0.7]])
    points = choose_operating_points(y, p, names=["rare", "common"])
    assert points.thresholds[0] == 0.5 and len(points.issues) == 1 and "rare" in points.issues[0].where


def test_ci_contains_point_and_shrinks_with_more_patients():
    widths = {}
    for n in (150, 2400):
        y, p, ids = make_cases(n, seed=7)
        report = evaluate_diagnoses(y, p, [0.4, 0.4, 0.4], patient_ids=ids, n_boot=N_BOOT, seed=3)
        for d in report.diagnoses + (report.macro,):
            for m in METRICS:
                e = d.estimate(m)
                assert e.low <= e.value <= e.high, (n, d.name, m)
        widths[n] = np.mean([d.estimate(m).high - d.estimate(m).low for d in report.diagnoses for m in METRICS])
    # 16x the patients: intervals about 4x narrower
    assert widths[2400] < 0.5 * widths[150]


def test_patient_resampling_takes_all_rows_of_a_patient():
    y, p, ids = make_cases(120, seed=11)
    y2, p2, ids2 = make_cases(120, seed=11, rows_per_patient=2)  # every patient has two identical rows
    once = evaluate_diagnoses(y, p, [0.5] * 3, patient_ids=ids, n_boot=N_BOOT, seed=5)
    twice = evaluate_diagnoses(y2, p2, [0.5] * 3, patient_ids=ids2, n_boot=N_BOOT, seed=5)
    assert twice.n_cases == 240 and twice.n_patients == 120
    for a, b in zip(once.diagnoses, twice.diagnoses):
        for m in METRICS:
            ea, eb = a.estimate(m), b.estimate(m)
            assert (eb.value, eb.low, eb.high) == pytest.approx((ea.value, ea.low, ea.high), abs=1e-12)
    # resampling rows instead treats the copies as independent patients: falsely narrow intervals
    rows = evaluate_diagnoses(y2, p2, [0.5] * 3, n_boot=N_BOOT, seed=5)
    width = lambda r: np.mean([d.auroc.high - d.auroc.low for d in r.diagnoses])  # noqa: E731
    assert width(rows) < 0.85 * width(twice)


def test_degenerate_resamples_are_skipped_and_counted():
    rng = np.random.default_rng(2)
    n = 50
    y = np.zeros((n, 2), dtype=int)
    y[0, 0] = 1  # one positive patient for diagnosis 0
    y[:, 1] = rng.integers(0, 2, n)
    y[:2, 1] = [0, 1]
    p = rng.random((n, 2))
    report = evaluate_diagnoses(y, p, [0.5, 0.5], names=["rare", "common"], n_boot=N_BOOT, seed=8)
    weights = np.vstack(list(bootstrap_weights(patient_codes(None, n), N_BOOT, 8)))
    expected = int((weights[:, 0] == 0).sum())  # resamples that missed the one positive patient
    assert 0.2 * N_BOOT < expected < 0.55 * N_BOOT
    assert report.diagnosis("rare").skipped_resamples == expected
    assert report.macro.skipped_resamples >= expected


def test_given_thresholds_and_json():
    y, p, _ = make_cases(200, k=2, seed=12)
    report = evaluate_diagnoses(y, p, (0.3, 0.6), names=["x", "y"], n_boot=20, seed=0)
    assert report.operating_points == OperatingPoints(("x", "y"), (0.3, 0.6), "given")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["diagnoses"][1]["auroc"]["value"] == pytest.approx(roc_auc_score(y[:, 1], p[:, 1]))
    assert data["macro"]["threshold"] is None


def test_inconsistent_arguments_are_errors():
    y, p, _ = make_cases(50, k=2, seed=13)
    points = choose_operating_points(y, p, names=["x", "y"])
    with pytest.raises(EvaluationError):
        evaluate_diagnoses(y, p, points, names=["y", "x"], n_boot=5)
    with pytest.raises(EvaluationError):
        evaluate_diagnoses(y, p, [0.5], n_boot=5)
    with pytest.raises(EvaluationError):
        evaluate_diagnoses(y, p, [0.5, float("nan")], n_boot=5)
    with pytest.raises(EvaluationError):
        evaluate_diagnoses(y, p, [0.5, 0.5], n_boot=0)
    with pytest.raises(EvaluationError):
        choose_operating_points(y, p, rule="f1")
    with pytest.raises(EvaluationError):
        evaluate_diagnoses(y, p, [0.5, 0.5], n_boot=5).diagnosis("z")
