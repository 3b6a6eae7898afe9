"""The subgroup metrics of the fairness audit, for fairlearn's MetricFrame and for bootstrap resamples.

All metrics are computed over the K diagnoses of a group's cases:
- auroc: macro mean over the diagnoses with both classes present in the group;
- tpr, fpr, ppv: pooled over every (case, diagnosis) pair at the per-diagnosis thresholds,
  e.g. tpr = sum_k TP_k / sum_k (TP_k + FN_k) (stable where a diagnosis is rare in a group);
- ece: expected calibration error pooled over every (case, diagnosis) pair
  (medmm.evaluate.calibration's definition).
MetricFrame passes row indices as y_true / y_pred; the metric closures look the rows up.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from medmm.evaluate.bootstrap import safe_ratio, weighted_auroc, weighted_confusion, weighted_ece
from medmm.evaluate.calibration import expected_calibration_error

AUDIT_METRICS: tuple[str, ...] = ("auroc", "tpr", "fpr", "ppv", "ece")


def both_classes(y: np.ndarray) -> tuple[int, ...]:
    """Columns of y (n, K) holding both a positive and a negative."""
    return tuple(int(k) for k in np.flatnonzero((y.max(axis=0) == 1) & (y.min(axis=0) == 0)))


def metric_functions(
    y: np.ndarray, prob: np.ndarray, pred: np.ndarray, n_bins: int
) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """MetricFrame metrics (name -> f(row_idx, row_idx)) over the audit's arrays, one per AUDIT_METRICS."""
    counts_cache: dict[bytes, np.ndarray] = {}  # tpr, fpr and ppv of a group share one confusion matrix

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.asarray(idx, dtype=np.int64)

    def auroc(idx: np.ndarray, _: np.ndarray) -> float:
        r = rows(idx)
        cols = both_classes(y[r])
        if not cols:
            return float("nan")
        return float(np.mean([roc_auc_score(y[r, k], prob[r, k]) for k in cols]))

    def pooled_counts(idx: np.ndarray) -> np.ndarray:
        r = rows(idx)
        key = r.tobytes()
        if key not in counts_cache:
            # [[tn, fp], [fn, tp]] pooled over the diagnoses (sklearn's multilabel_confusion_matrix would read a
            # single-label task's (n, 1) column as binary classes and pool the matrices of class 0 and class 1)
            truth, calls = y[r].astype(bool), pred[r].astype(bool)
            counts_cache[key] = np.array(
                [[(~truth & ~calls).sum(), (~truth & calls).sum()], [(truth & ~calls).sum(), (truth & calls).sum()]]
            )
        return counts_cache[key]

    def tpr(idx: np.ndarray, _: np.ndarray) -> float:
        c = pooled_counts(idx)
        return float(safe_ratio(c[1, 1], c[1, 1] + c[1, 0]))

    def fpr(idx: np.ndarray, _: np.ndarray) -> float:
        c = pooled_counts(idx)
        return float(safe_ratio(c[0, 1], c[0, 1] + c[0, 0]))

    def ppv(idx: np.ndarray, _: np.ndarray) -> float:
        c = pooled_counts(idx)
        return float(safe_ratio(c[1, 1], c[1, 1] + c[0, 1]))

    def ece(idx: np.ndarray, _: np.ndarray) -> float:
        r = rows(idx)
        return expected_calibration_error(y[r], prob[r], n_bins)

    return {"auroc": auroc, "tpr": tpr, "fpr": fpr, "ppv": ppv, "ece": ece}


def resampled_group_metrics(
    y: np.ndarray, prob: np.ndarray, pred: np.ndarray, w: np.ndarray, auroc_over: tuple[int, ...], n_bins: int
) -> dict[str, np.ndarray]:
    """Every audit metric for one group's rows under resample weights w (B, n): name -> (B,).

    The AUROC macro runs over `auroc_over` (the diagnoses with both classes in the group on
    the full data) and is NaN in a resample where any of them lacks a class.
    """
    if auroc_over:
        per = np.stack([weighted_auroc(y[:, k], prob[:, k], w) for k in auroc_over])  # (D, B)
        auroc = per.mean(axis=0)  # NaN propagates
    else:
        auroc = np.full(w.shape[0], np.nan)
    tp = fp = fn = tn = np.zeros(w.shape[0])
    for k in range(y.shape[1]):
        c = weighted_confusion(y[:, k], pred[:, k], w)
        tp, fp, fn, tn = tp + c[0], fp + c[1], fn + c[2], tn + c[3]
    return {
        "auroc": auroc,
        "tpr": safe_ratio(tp, tp + fn),
        "fpr": safe_ratio(fp, fp + tn),
        "ppv": safe_ratio(tp, tp + fp),
        "ece": weighted_ece(y, prob, w, n_bins),
    }
