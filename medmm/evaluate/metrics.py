"""Per-diagnosis discrimination metrics at a validation-chosen operating point, with patient bootstrap CIs.

Point estimates come from scikit-learn (roc_auc_score, average_precision_score,
confusion_matrix). Confidence intervals are percentile intervals over `n_boot` resamples of
PATIENTS (all rows of a drawn patient are taken; see medmm.evaluate.bootstrap). A resample in
which a diagnosis has only one class is skipped for that diagnosis and counted; PPV/NPV
resamples with nothing called positive/negative are undefined and left out of the interval.

Operating point rules (chosen on the validation split, then applied unchanged to test):
- "youden": the threshold maximising Youden's J = sensitivity + specificity - 1 (ties go to
  the higher threshold);
- "sensitivity": the highest threshold whose sensitivity reaches `target_sensitivity`
  (so the most specific point that meets the target).
A case is called positive when its probability is >= the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from medmm.evaluate.arrays import (
    EvaluationError,
    check_fraction,
    diagnosis_names,
    json_safe,
    labels_and_probs,
    patient_codes,
)
from medmm.evaluate.bootstrap import (
    bootstrap_weights,
    percentile_interval,
    safe_ratio,
    weighted_auroc,
    weighted_average_precision,
    weighted_class_totals,
    weighted_confusion,
)
from medmm.records import Issue

METRICS: tuple[str, ...] = ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv")
RULES: tuple[str, ...] = ("youden", "sensitivity")
FALLBACK_THRESHOLD = 0.5


@dataclass(frozen=True)
class OperatingPoints:
    """Per-diagnosis decision thresholds and the rule that chose them on the validation split."""

    names: tuple[str, ...]
    thresholds: tuple[float, ...]
    rule: str
    target_sensitivity: float | None = None
    issues: tuple[Issue, ...] = ()


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval (NaN when undefined)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class DiagnosisMetrics:
    """Every metric of one diagnosis (or the macro average, name "macro")."""

    name: str
    threshold: float
    n_positive: int
    n_negative: int
    auroc: Estimate
    auprc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    skipped_resamples: int  # resamples left out because a class was absent

    def estimate(self, metric: str) -> Estimate:
        """The estimate named `metric` (one of METRICS)."""
        if metric not in METRICS:
            raise EvaluationError(f"unknown metric; expected one of {', '.join(METRICS)}", where="metric")
        return getattr(self, metric)


@dataclass(frozen=True)
class MetricsReport:
    """Per-diagnosis metrics, their macro average and how the intervals were made."""

    diagnoses: tuple[DiagnosisMetrics, ...]
    macro: DiagnosisMetrics
    operating_points: OperatingPoints
    n_cases: int
    n_patients: int
    n_boot: int
    seed: int
    confidence: float
    macro_over: tuple[str, ...]  # diagnoses with both classes present, averaged in `macro`

    def diagnosis(self, name: str) -> DiagnosisMetrics:
        """The metrics of diagnosis `name`."""
        for d in self.diagnoses:
            if d.name == name:
                return d
        raise EvaluationError("no such diagnosis in this report", where=f"diagnosis {name}")

    def to_dict(self) -> dict:
        """A JSON-able copy (NaN becomes None)."""
        return json_safe(asdict(self))


def choose_operating_points(
    y_true_val: np.ndarray,
    y_prob_val: np.ndarray,
    names: Sequence[str] | None = None,
    rule: str = "youden",
    target_sensitivity: float = 0.9,
) -> OperatingPoints:
    """Thresholds per diagnosis chosen on the validation split by `rule` (see module doc).

    A diagnosis with one class only on validation gets threshold 0.5 and an Issue.
    """
    y, p = labels_and_probs(y_true_val, y_prob_val)
    labels = diagnosis_names(names, y.shape[1])
    if rule not in RULES:
        raise EvaluationError(f"unknown operating-point rule; expected one of {', '.join(RULES)}", where="rule")
    target = (
        check_fraction(target_sensitivity, "target_sensitivity", 0.0, 1.0 + 1e-12) if rule == "sensitivity" else None
    )
    thresholds: list[float] = []
    issues: list[Issue] = []
    for k, name in enumerate(labels):
        if y[:, k].min() == y[:, k].max():
            thresholds.append(FALLBACK_THRESHOLD)
            issues.append(
                Issue(
                    "validation split",
                    f"diagnosis {name}",
                    f"only one class present; threshold set to {FALLBACK_THRESHOLD}",
                )
            )
            continue
        fpr, tpr, thr = roc_curve(y[:, k], p[:, k], drop_intermediate=False)
        # thr[0] is +inf (nothing called positive); it is never a usable operating point.
        if rule == "youden":
            best = 1 + int(np.argmax(tpr[1:] - fpr[1:]))
        else:
            best = 1 + int(np.argmax(tpr[1:] >= target - 1e-12))
        thresholds.append(float(thr[best]))
    return OperatingPoints(labels, tuple(thresholds), rule, target, tuple(issues))


def _point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """scikit-learn point estimates for one diagnosis (AUROC/AUPRC NaN with one class)."""
    both = y.min() != y.max()
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(np.int8), labels=[0, 1]).ravel()
    return {
        "auroc": float(roc_auc_score(y, p)) if both else math.nan,
        "auprc": float(average_precision_score(y, p)) if y.any() else math.nan,
        "sensitivity": float(safe_ratio(tp, tp + fn)),
        "specificity": float(safe_ratio(tn, tn + fp)),
        "ppv": float(safe_ratio(tp, tp + fp)),
        "npv": float(safe_ratio(tn, tn + fn)),
    }


def _boot_metrics(y: np.ndarray, p: np.ndarray, threshold: float, w: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for a block of resamples (B,), NaN where the resample lacks a class."""
    pos, neg = weighted_class_totals(y, w)
    valid = (pos > 0) & (neg > 0)
    tp, fp, fn, tn = weighted_confusion(y, p >= threshold, w)
    out = {
        "auroc": weighted_auroc(y, p, w),
        "auprc": weighted_average_precision(y, p, w),
        "sensitivity": safe_ratio(tp, tp + fn),
        "specificity": safe_ratio(tn, tn + fp),
        "ppv": safe_ratio(tp, tp + fp),
        "npv": safe_ratio(tn, tn + fn),
    }
    return {m: np.where(valid, v, np.nan) for m, v in out.items()}


def evaluate_diagnoses(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    operating_points: OperatingPoints | Sequence[float],
    names: Sequence[str] | None = None,
    patient_ids: Sequence[object] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MetricsReport:
    """AUROC, AUPRC, sensitivity, specificity, PPV, NPV per diagnosis and macro, with patient bootstrap CIs.

    `operating_points` comes from choose_operating_points on the validation split (or is a
    threshold per diagnosis). The macro average is the unweighted mean over the diagnoses
    with both classes present; a resample is skipped for it when any of them lacks a class.
    """
    y, p = labels_and_probs(y_true, y_prob)
    k_count = y.shape[1]
    if isinstance(operating_points, OperatingPoints):
        points = operating_points
        labels = diagnosis_names(points.names, k_count)
        if names is not None and tuple(names) != labels:
            raise EvaluationError("names differ from the operating points' diagnosis names", where="names")
    else:
        labels = diagnosis_names(names, k_count)
        points = OperatingPoints(labels, tuple(float(t) for t in operating_points), "given")
    if len(points.thresholds) != k_count or not all(math.isfinite(t) for t in points.thresholds):
        raise EvaluationError(f"expected {k_count} finite thresholds (one per diagnosis)", where="operating_points")
    confidence = check_fraction(confidence, "confidence")
    codes = patient_codes(patient_ids, y.shape[0])

    point = [_point_metrics(y[:, k], p[:, k], points.thresholds[k]) for k in range(k_count)]
    samples: list[dict[str, list[np.ndarray]]] = [{m: [] for m in METRICS} for _ in range(k_count)]
    for w in bootstrap_weights(codes, n_boot, seed):  # (b, N) per block
        for k in range(k_count):
            for m, v in _boot_metrics(y[:, k], p[:, k], points.thresholds[k], w).items():
                samples[k][m].append(v)
    boot = [{m: np.concatenate(s[m]) for m in METRICS} for s in samples]  # per diagnosis: (n_boot,)

    macro_over = tuple(k for k in range(k_count) if y[:, k].min() != y[:, k].max())
    results = []
    for k, name in enumerate(labels):
        skipped = int(np.isnan(boot[k]["auroc"]).sum())  # AUROC is NaN exactly when a class is absent
        estimates = {m: Estimate(point[k][m], *percentile_interval(boot[k][m], confidence)) for m in METRICS}
        n_pos = int(y[:, k].sum())
        results.append(
            DiagnosisMetrics(
                name, points.thresholds[k], n_pos, int(y.shape[0]) - n_pos, skipped_resamples=skipped, **estimates
            )
        )
    macro = _macro(results, boot, point, macro_over, n_boot, confidence, y)
    return MetricsReport(
        diagnoses=tuple(results),
        macro=macro,
        operating_points=points,
        n_cases=int(y.shape[0]),
        n_patients=int(codes.max()) + 1,
        n_boot=int(n_boot),
        seed=int(seed),
        confidence=confidence,
        macro_over=tuple(labels[k] for k in macro_over),
    )


def _macro(
    results: list[DiagnosisMetrics],
    boot: list[dict[str, np.ndarray]],
    point: list[dict[str, float]],
    macro_over: tuple[int, ...],
    n_boot: int,
    confidence: float,
    y: np.ndarray,
) -> DiagnosisMetrics:
    """Unweighted mean over `macro_over`, per resample and for the point estimate."""
    nan = Estimate(math.nan, math.nan, math.nan)
    if not macro_over:
        return DiagnosisMetrics(
            "macro", math.nan, int(y.sum()), int((1 - y).sum()), *([nan] * len(METRICS)), skipped_resamples=n_boot
        )
    # a resample counts for the macro only when every averaged diagnosis has both classes in it
    usable = np.all([np.isfinite(boot[k]["auroc"]) for k in macro_over], axis=0)  # (n_boot,)
    estimates = {}
    for m in METRICS:
        stacked = np.stack([boot[k][m] for k in macro_over])  # (len(macro_over), n_boot)
        per_resample = np.where(usable, stacked.mean(axis=0), np.nan)
        value = float(np.mean([point[k][m] for k in macro_over]))
        estimates[m] = Estimate(value, *percentile_interval(per_resample, confidence))
    return DiagnosisMetrics(
        "macro", math.nan, int(y.sum()), int((1 - y).sum()), skipped_resamples=int((~usable).sum()), **estimates
    )
