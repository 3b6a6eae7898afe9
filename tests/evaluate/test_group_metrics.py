import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medmm.evaluate.group_metrics import AUDIT_METRICS, both_classes, metric_functions, resampled_group_metrics


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(21)
    p = rng.random((120, 3))
    y = (rng.random((120, 3)) < p).astype(int)
    y[:, 2] = 0  # a diagnosis absent from the data: left out of the AUROC macro
    return y, p, p >= 0.5


def test_both_classes():
    assert both_classes(np.array([[0, 1, 1], [1, 1, 0]])) == (0, 2)


def test_metric_functions_by_hand(arrays):
    y, p, pred = arrays
    funcs = metric_functions(y, p, pred, n_bins=10)
    assert tuple(funcs) == AUDIT_METRICS
    rows = np.arange(0, 120, 2)
    yr, pr, cr = y[rows], p[rows], pred[rows]
    tp = (cr & (yr == 1)).sum()
    fp = (cr & (yr == 0)).sum()
    fn = (~cr & (yr == 1)).sum()
    tn = (~cr & (yr == 0)).sum()
    assert funcs["auroc"](rows, rows) == pytest.approx(np.mean([roc_auc_score(yr[:, k], pr[:, k]) for k in (0, 1)]))
    assert funcs["tpr"](rows, rows) == pytest.approx(tp / (tp + fn))
    assert funcs["fpr"](rows, rows) == pytest.approx(fp / (fp + tn))
    assert funcs["ppv"](rows, rows) == pytest.approx(tp / (tp + fp))


def test_resampled_metrics_with_unit_weights_equal_point_metrics(arrays):
    y, p, pred = arrays
    funcs = metric_functions(y, p, pred, n_bins=10)
    rows = np.arange(120)
    w = np.ones((2, 120))
    out = resampled_group_metrics(y, p, pred, w, both_classes(y), n_bins=10)
    for m in AUDIT_METRICS:
        assert out[m] == pytest.approx([funcs[m](rows, rows)] * 2)


def test_resampled_metrics_with_integer_weights_equal_replicated_rows(arrays):
    y, p, pred = arrays
    rng = np.random.default_rng(4)
    w = rng.integers(0, 3, size=(1, 120)).astype(float)
    rows = np.repeat(np.arange(120), w[0].astype(int))
    funcs = metric_functions(y, p, pred, n_bins=10)
    out = resampled_group_metrics(y, p, pred, w, both_classes(y), n_bins=10)
    for m in AUDIT_METRICS:
        assert out[m][0] == pytest.approx(funcs[m](rows, rows))


def test_auroc_undefined_when_an_averaged_diagnosis_loses_a_class(arrays):
    y, p, pred = arrays
    w = np.zeros((1, 120))
    w[0, y[:, 0] == 1] = 1.0  # only positives of diagnosis 0 drawn
    out = resampled_group_metrics(y, p, pred, w, (0, 1), n_bins=10)
    assert np.isnan(out["auroc"][0])
