"""Patient-level bootstrap: resampling weights and vectorised weighted metrics over resamples.

A bootstrap resample draws P patients with replacement from the P unique patients and takes
all rows of each drawn patient. That is the same as giving every row the weight "how many
times its patient was drawn", so one resample is a weight vector and B resamples are a
(B, N) weight matrix. The metrics below evaluate every resample at once from such weights;
they equal scikit-learn's metrics with `sample_weight` (checked in the tests) and exist only
because calling scikit-learn thousands of times per report is too slow.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from medmm.evaluate.arrays import EvaluationError

CHUNK = 100  # resamples per weight block: bounds memory at CHUNK * N floats


def bootstrap_weights(codes: np.ndarray, n_boot: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Yield (b, N) row weights for `n_boot` patient resamples, in blocks of at most `chunk`.

    `codes` gives each row's patient as 0..P-1 (see arrays.patient_codes). Seeded, so the
    same data and seed always give the same resamples.
    """
    if int(n_boot) < 1:
        raise EvaluationError("expected at least one bootstrap resample", where="n_boot")
    rng = np.random.default_rng(seed)
    n_patients = int(codes.max()) + 1
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draws = rng.integers(0, n_patients, size=(b, n_patients))  # (b, P) patient indices
        flat = (draws + np.arange(b)[:, None] * n_patients).ravel()
        counts = np.bincount(flat, minlength=b * n_patients).reshape(b, n_patients)  # (b, P)
        yield counts[:, codes].astype(np.float64)  # (b, N): every row of a patient shares its count
        done += b


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap values (NaN, NaN when there are none)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))


def _tie_blocks(score: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of `score` and the start index of each run of equal values in that order."""
    order = np.argsort(-score if descending else score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def weighted_class_totals(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted number of positives and negatives per resample: two (B,) arrays."""
    pos = w @ y.astype(np.float64)  # (B,)
    return pos, w.sum(axis=1) - pos


def weighted_auroc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC per resample (B,) from row weights (B, N); NaN where a class has no weight.

    Mann-Whitney form: the weighted share of (positive, negative) pairs ranked correctly,
    ties counted one half, which is the trapezoidal area under the weighted ROC curve.
    """
    order, starts = _tie_blocks(score, descending=False)
    yo = y[order].astype(np.float64)
    wo = w[:, order]  # (B, N) sorted by ascending score
    pos = np.add.reduceat(wo * yo, starts, axis=1)  # (B, G) positive weight per tie block
    neg = np.add.reduceat(wo * (1.0 - yo), starts, axis=1)  # (B, G)
    neg_below = np.cumsum(neg, axis=1) - neg  # (B, G) negative weight strictly below the block
    pairs = (pos * (neg_below + 0.5 * neg)).sum(axis=1)  # (B,)
    total = pos.sum(axis=1) * neg.sum(axis=1)  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, pairs / np.where(total > 0, total, 1.0), np.nan)


def weighted_average_precision(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision per resample (B,), scikit-learn's step-wise definition; NaN without positives.

    AP = sum over distinct thresholds (descending) of (R_n - R_{n-1}) * P_n.
    """
    order, starts = _tie_blocks(score, descending=True)
    yo = y[order].astype(np.float64)
    wo = w[:, order]  # (B, N) sorted by descending score
    tp = np.cumsum(np.add.reduceat(wo * yo, starts, axis=1), axis=1)  # (B, G) at each threshold
    called = np.cumsum(np.add.reduceat(wo, starts, axis=1), axis=1)  # (B, G) weight called positive
    total_pos = tp[:, -1:]  # (B, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(called > 0, tp / np.where(called > 0, called, 1.0), 0.0)  # (B, G)
        recall = tp / np.where(total_pos > 0, total_pos, 1.0)  # (B, G)
    gain = np.diff(np.concatenate([np.zeros_like(recall[:, :1]), recall], axis=1), axis=1)  # (B, G)
    ap = (gain * precision).sum(axis=1)
    return np.where(total_pos[:, 0] > 0, ap, np.nan)


def weighted_confusion(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted (tp, fp, fn, tn) per resample, each (B,)."""
    yf = y.astype(np.float64)
    pf = pred.astype(np.float64)
    tp = w @ (yf * pf)
    fp = w @ ((1.0 - yf) * pf)
    fn = w @ (yf * (1.0 - pf))
    tn = w @ ((1.0 - yf) * (1.0 - pf))
    return tp, fp, fn, tn


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (an undefined rate, not a zero one)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bin_index(prob: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability: bin b holds edges[b] < p <= edges[b+1], bin 0 also p = 0.

    The convention of sklearn.calibration.calibration_curve(strategy="uniform").
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], prob, side="left")


def weighted_ece(y: np.ndarray, prob: np.ndarray, w: np.ndarray, n_bins: int) -> np.ndarray:
    """Expected calibration error per resample (B,) over all (row, column) pairs of y, prob (N, K).

    ECE = sum_b |sum_{i in b} w_i (y_i - p_i)| / sum_i w_i: the weighted share of each bin
    times the gap between its observed rate and mean probability.
    """
    y2 = y.reshape(y.shape[0], -1).astype(np.float64)  # (N, K)
    p2 = prob.reshape(prob.shape[0], -1)  # (N, K)
    bins = bin_index(p2, n_bins)  # (N, K)
    gap = np.zeros((y2.shape[0], n_bins))  # (N, n_bins) summed (y - p) of each row's pairs per bin
    rows = np.repeat(np.arange(y2.shape[0]), y2.shape[1])
    np.add.at(gap, (rows, bins.ravel()), (y2 - p2).ravel())
    per_bin = w @ gap  # (B, n_bins)
    total = w.sum(axis=1) * y2.shape[1]  # (B,) weighted number of pairs
    return safe_ratio(np.abs(per_bin).sum(axis=1), total)
