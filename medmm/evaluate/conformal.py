"""Split conformal prediction sets for multi-label diagnoses.

Nonconformity score of a case: the largest 1 - p_k over its true diagnoses (0 when it has
none), i.e. how low the model scored the least-believed true diagnosis. On n calibration
cases with scores s, the threshold is the k-th smallest score with k = ceil((n + 1)(1 - alpha))
(numpy's quantile(s, k / n, method="inverted_cdf"); no interpolation). The prediction set
of a new case is {k : 1 - p_k <= q}, i.e. every diagnosis with p_k >= 1 - q. For
exchangeable cases this guarantees P(all true diagnoses are in the set) >= 1 - alpha.
When k > n (too few calibration cases for alpha) q is 1 and every set holds every diagnosis,
which keeps the guarantee.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from medmm.errors import CheckpointError
from medmm.evaluate.arrays import (
    EvaluationError,
    check_fraction,
    diagnosis_names,
    json_safe,
    labels_and_probs,
    score_matrix,
)

FORMAT = "medmm.conformal/1"


def nonconformity_scores(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """Per case (N,): max over its true diagnoses of 1 - p_k, and 0 for a case with none."""
    y, p = labels_and_probs(y_true, y_prob)
    return np.where(y == 1, 1.0 - p, 0.0).max(axis=1)


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)), robust to float error such as 10 * (1 - 0.7) = 3.0000000000000004."""
    return int(math.ceil(round((n + 1) * (1.0 - alpha), 9)))


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The k-th smallest calibration score (see module doc); 1.0 when k exceeds n."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0 or not np.all(np.isfinite(s)):
        raise EvaluationError("expected a non-empty array of finite scores", where="scores")
    alpha = check_fraction(alpha, "alpha")
    k = conformal_rank(s.size, alpha)
    if k > s.size:
        return 1.0
    return float(np.sort(s)[k - 1])


@dataclass(frozen=True)
class ConformalReport:
    """Empirical behaviour of conformal sets on a held-out split."""

    alpha: float
    target_coverage: float
    coverage: float  # share of cases whose every true diagnosis is in the set
    mean_set_size: float
    empty_set_rate: float
    n: int
    inclusion_rate: tuple[float, ...]  # per diagnosis: share of sets that contain it
    names: tuple[str, ...]

    def to_dict(self) -> dict:
        """A JSON-able copy."""
        return json_safe(asdict(self))


class ConformalCalibrator:
    """Split-conformal calibrator for multi-label probabilities: fit on calibration data, then predict sets."""

    def __init__(self, alpha: float = 0.1, names: Sequence[str] | None = None):
        self.alpha = check_fraction(alpha, "alpha")
        self.names: tuple[str, ...] | None = None if names is None else tuple(str(n) for n in names)
        self.threshold: float | None = None
        self.n_calibration = 0

    @property
    def target_coverage(self) -> float:
        return 1.0 - self.alpha

    def fit(self, y_true: np.ndarray, y_prob: np.ndarray) -> "ConformalCalibrator":
        """Set the threshold q from calibration labels and probabilities (N, K)."""
        y, p = labels_and_probs(y_true, y_prob)
        self.names = diagnosis_names(self.names, y.shape[1])
        self.threshold = conformal_threshold(nonconformity_scores(y, p), self.alpha)
        self.n_calibration = int(y.shape[0])
        return self

    def _fitted(self) -> tuple[float, tuple[str, ...]]:
        if self.threshold is None or self.names is None:
            raise EvaluationError(
                "calibrator is not fitted; call fit on calibration data first", where="ConformalCalibrator"
            )
        return self.threshold, self.names

    def predict_sets(self, y_prob: np.ndarray) -> np.ndarray:
        """Membership mask (N, K): True where p_k >= 1 - q (a 1-D input is one case)."""
        q, names = self._fitted()
        p = np.asarray(y_prob, dtype=np.float64)
        single = p.ndim == 1
        p = score_matrix(p[None, :] if single else p, (1 if single else p.shape[0], len(names)))
        mask = (1.0 - p) <= q  # (N, K)
        return mask[0] if single else mask

    def set_names(self, y_prob: np.ndarray) -> tuple[str, ...]:
        """Diagnosis names in the set of one case, given its (K,) probabilities."""
        _, names = self._fitted()
        mask = self.predict_sets(np.asarray(y_prob, dtype=np.float64).reshape(-1))
        return tuple(n for n, keep in zip(names, mask) if keep)

    def evaluate(self, y_true: np.ndarray, y_prob: np.ndarray) -> ConformalReport:
        """Empirical coverage, mean set size and per-diagnosis inclusion on a test split."""
        _, names = self._fitted()
        y, p = labels_and_probs(y_true, y_prob)
        mask = self.predict_sets(p)  # (N, K)
        covered = np.all(mask | (y == 0), axis=1)  # (N,)
        size = mask.sum(axis=1)
        return ConformalReport(
            self.alpha,
            self.target_coverage,
            float(covered.mean()),
            float(size.mean()),
            float((size == 0).mean()),
            int(y.shape[0]),
            tuple(float(v) for v in mask.mean(axis=0)),
            names,
        )

    def to_dict(self) -> dict:
        """JSON-able state, saved beside a checkpoint."""
        q, names = self._fitted()
        return {
            "format": FORMAT,
            "alpha": self.alpha,
            "threshold": q,
            "n_calibration": self.n_calibration,
            "names": list(names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], source: str = "conformal state") -> "ConformalCalibrator":
        """Rebuild a fitted calibrator from to_dict output; anything malformed is a CheckpointError."""
        if not isinstance(data, Mapping):
            raise CheckpointError("expected a JSON object", path=source)
        expected = {"format", "alpha", "threshold", "n_calibration", "names"}
        if set(data) != expected:
            raise CheckpointError(f"expected exactly the keys {', '.join(sorted(expected))}", path=source)
        if data["format"] != FORMAT:
            raise CheckpointError(f"expected format {FORMAT}", path=source, where="format")
        names = data["names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise CheckpointError("expected a non-empty list of diagnosis names", path=source, where="names")
        try:
            alpha = check_fraction(data["alpha"], "alpha")  # type: ignore[arg-type]
            q = float(data["threshold"])  # type: ignore[arg-type]
            n_cal = int(data["n_calibration"])  # type: ignore[call-overload]
        except (EvaluationError, TypeError, ValueError) as exc:
            raise CheckpointError(
                "expected alpha in (0, 1) and numeric threshold and n_calibration", path=source
            ) from exc
        if not 0.0 <= q <= 1.0 or n_cal < 1:
            raise CheckpointError("expected threshold in [0, 1] and n_calibration >= 1", path=source, where="threshold")
        out = cls(alpha, names)
        out.threshold, out.n_calibration = q, n_cal
        return out
