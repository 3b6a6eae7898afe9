"""Paired comparison of two models on the same cases: the patient bootstrap of their AUROC difference.

Both models are scored on every resample of patients (the same resamples), so the interval of
the difference accounts for the correlation between them: a difference can be clear while the
two marginal intervals overlap. Per diagnosis and for the macro AUROC (the mean over the
diagnoses both classes of which are present in the resample).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medmm.evaluate.arrays import EvaluationError, patient_codes
from medmm.evaluate.bootstrap import bootstrap_weights, percentile_interval, weighted_auroc


def _auroc_columns(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(b, K) weighted AUROC of every diagnosis under every resample; NaN where one class is missing."""
    return np.stack([weighted_auroc(y[:, k], p[:, k], w) for k in range(y.shape[1])], axis=1)


def paired_auroc_difference(
    y: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    names: Sequence[str],
    patient_ids: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """AUROC of `first` and `second` (N, K) and their difference first - second with paired bootstrap intervals.

    Returns {"macro": {...}, "by_diagnosis": {name: {...}}}, each with first, second,
    difference, low, high (the interval of the difference), n_positive.
    """
    y = np.asarray(y, dtype=np.float64)
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != y.shape or second.shape != y.shape:
        raise EvaluationError(
            f"labels {y.shape} and scores {first.shape}, {second.shape} differ in shape", where="paired comparison"
        )
    codes = patient_codes(patient_ids, len(y))
    ones = np.ones((1, len(y)))
    point_a, point_b = _auroc_columns(y, first, ones)[0], _auroc_columns(y, second, ones)[0]  # (K,)
    diffs, macro = [], []
    for w in bootstrap_weights(codes, n_boot, seed):
        a, b = _auroc_columns(y, first, w), _auroc_columns(y, second, w)  # (b, K)
        diffs.append(a - b)
        both = np.isfinite(a) & np.isfinite(b)
        with np.errstate(invalid="ignore"):
            macro.append(np.where(both, a, 0).sum(1) / both.sum(1) - np.where(both, b, 0).sum(1) / both.sum(1))
    diffs, macro = np.concatenate(diffs), np.concatenate(macro)  # (B, K), (B,)

    def entry(a: float, b: float, samples: np.ndarray, positives: int) -> dict:
        low, high = percentile_interval(samples, confidence)
        return {"first": a, "second": b, "difference": a - b, "low": low, "high": high, "n_positive": positives}

    scored = np.isfinite(point_a) & np.isfinite(point_b)
    by = {
        name: entry(float(point_a[k]), float(point_b[k]), diffs[:, k], int(y[:, k].sum()))
        for k, name in enumerate(names)
        if scored[k]
    }
    macro_a, macro_b = float(point_a[scored].mean()), float(point_b[scored].mean())
    return {
        "macro": entry(macro_a, macro_b, macro, int(y.sum())),
        "by_diagnosis": by,
        "n_boot": int(n_boot),
        "confidence": confidence,
    }
