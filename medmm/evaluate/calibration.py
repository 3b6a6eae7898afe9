"""Calibration: reliability bins, expected calibration error, Brier score and temperature scaling.

ECE definition (equal-width bins): split [0, 1] into `n_bins` bins of width 1/n_bins; bin b
holds the predictions p with edges[b] < p <= edges[b+1] (bin 0 also holds p = 0), the
convention of sklearn.calibration.calibration_curve. Then

    ECE = sum_b (n_b / N) * |observed rate in b - mean predicted probability in b|

Per diagnosis, N counts cases; pooled over diagnoses, every (case, diagnosis) pair is one
prediction. The Brier score is scikit-learn's brier_score_loss (pooled: over all pairs).

Temperature scaling fits ONE temperature T > 0 for all diagnoses on the validation split by
minimising the binary cross-entropy of sigmoid(logit / T); it changes calibration, never the
ranking (AUROC is unchanged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss

from medmm.evaluate.arrays import (
    EvaluationError,
    diagnosis_names,
    json_safe,
    label_matrix,
    labels_and_probs,
    score_matrix,
)
from medmm.evaluate.bootstrap import bin_index

LOG_T_BOUNDS = (-5.0, 5.0)  # T searched in [e^-5, e^5], about [0.0067, 148]
PROB_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before taking logits


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width reliability bins: per-bin count, mean probability and observed rate (NaN when empty)."""

    edges: tuple[float, ...]  # n_bins + 1 edges from 0 to 1
    counts: tuple[int, ...]
    mean_predicted: tuple[float, ...]
    observed_rate: tuple[float, ...]

    @property
    def ece(self) -> float:
        """ECE from these bins (the module's definition)."""
        n = np.asarray(self.counts, dtype=np.float64)
        full = n > 0
        gap = np.abs(np.asarray(self.observed_rate)[full] - np.asarray(self.mean_predicted)[full])
        return float((n[full] * gap).sum() / n.sum())


@dataclass(frozen=True)
class CalibrationSummary:
    """ECE and Brier per diagnosis and pooled, with reliability bins, for one set of probabilities."""

    names: tuple[str, ...]
    ece: tuple[float, ...]
    brier: tuple[float, ...]
    ece_pooled: float
    brier_pooled: float
    bins_pooled: ReliabilityBins
    bins: tuple[ReliabilityBins, ...]  # per diagnosis


@dataclass(frozen=True)
class CalibrationReport:
    """Test-split calibration before and after the temperature fitted on the validation split."""

    temperature: float
    before: CalibrationSummary
    after: CalibrationSummary
    n_bins: int

    def to_dict(self) -> dict:
        """A JSON-able copy (NaN becomes None)."""
        return json_safe(asdict(self))


def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> ReliabilityBins:
    """Reliability bins of all predictions in `y_prob` (any shape; pooled over every entry)."""
    if int(n_bins) < 1:
        raise EvaluationError("expected at least one bin", where="n_bins")
    y, p = labels_and_probs(y_true, y_prob)
    bins = bin_index(p.ravel(), n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p.ravel(), minlength=n_bins)
    sum_y = np.bincount(bins, weights=y.ravel().astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sum_p / np.maximum(counts, 1), np.nan)
        rate = np.where(counts > 0, sum_y / np.maximum(counts, 1), np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return ReliabilityBins(
        tuple(float(e) for e in edges),
        tuple(int(c) for c in counts),
        tuple(float(v) for v in mean_p),
        tuple(float(v) for v in rate),
    )


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> float:
    """ECE pooled over every prediction given (pass one column for a single diagnosis)."""
    return reliability_bins(y_true, y_prob, n_bins).ece


def brier_score(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean squared error of the probabilities, pooled over every prediction given."""
    y, p = labels_and_probs(y_true, y_prob)
    return float(brier_score_loss(y.ravel(), p.ravel(), pos_label=1))


def summarise_calibration(
    y_true: np.ndarray, y_prob: np.ndarray, names: Sequence[str] | None = None, n_bins: int = 10
) -> CalibrationSummary:
    """ECE, Brier and reliability bins per diagnosis and pooled over diagnoses."""
    y, p = labels_and_probs(y_true, y_prob)
    labels = diagnosis_names(names, y.shape[1])
    per = [reliability_bins(y[:, k], p[:, k], n_bins) for k in range(y.shape[1])]
    pooled = reliability_bins(y, p, n_bins)
    return CalibrationSummary(
        labels,
        tuple(b.ece for b in per),
        tuple(brier_score(y[:, k], p[:, k]) for k in range(y.shape[1])),
        pooled.ece,
        brier_score(y, p),
        pooled,
        tuple(per),
    )


def probs_to_logits(y_prob: np.ndarray, eps: float = PROB_EPS) -> np.ndarray:
    """Logits of probabilities, clipped to [eps, 1 - eps] so that 0 and 1 stay finite."""
    p = np.asarray(y_prob, dtype=np.float64)
    return logit(np.clip(p, eps, 1.0 - eps))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities sigmoid(logits / T)."""
    t = float(temperature)
    if not np.isfinite(t) or t <= 0.0:
        raise EvaluationError("expected a finite temperature > 0", where="temperature")
    return expit(np.asarray(logits, dtype=np.float64) / t)


def _bce_with_logits(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of sigmoid(z), in the overflow-free form log(1 + e^z) - y z."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The one temperature T > 0 minimising the BCE of sigmoid(logits / T) against labels y.

    Searched over log T (bounded Brent): BCE is convex in 1/T, so it has one minimum there.
    """
    labels = label_matrix(y, where="y")
    z = score_matrix(logits, labels.shape, where="logits", unit=False)
    if labels.min() == labels.max():
        raise EvaluationError("expected both classes among the labels to fit a temperature", where="y")
    yf = labels.astype(np.float64)
    res = minimize_scalar(
        lambda u: _bce_with_logits(z * np.exp(-u), yf), bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(res.x))


def calibration_report(
    y_true_val: np.ndarray,
    logits_val: np.ndarray,
    y_true_test: np.ndarray,
    logits_test: np.ndarray,
    names: Sequence[str] | None = None,
    n_bins: int = 10,
) -> CalibrationReport:
    """Fit T on validation logits, then summarise test calibration before and after scaling."""
    temperature = fit_temperature(logits_val, y_true_val)
    y = label_matrix(y_true_test)
    z = score_matrix(logits_test, y.shape, where="logits_test", unit=False)
    before = summarise_calibration(y, expit(z), names, n_bins)
    after = summarise_calibration(y, apply_temperature(z, temperature), names, n_bins)
    return CalibrationReport(temperature, before, after, int(n_bins))
