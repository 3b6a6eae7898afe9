"""Evaluation from arrays: discrimination metrics, calibration, conformal sets and the fairness audit.

Every function takes numpy arrays (labels y_true (N, K) in {0, 1}, probabilities y_prob
(N, K), optional patient ids and subgroup attributes) and returns frozen dataclass results
with a JSON-able `to_dict()`. Confidence intervals resample patients, not rows. Figures live
in medmm.evaluate.plots (imported on demand, since it loads matplotlib).
"""

from medmm.evaluate.arrays import EvaluationError
from medmm.evaluate.calibration import (
    CalibrationReport,
    CalibrationSummary,
    ReliabilityBins,
    apply_temperature,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    probs_to_logits,
    reliability_bins,
    summarise_calibration,
)
from medmm.evaluate.conformal import ConformalCalibrator, ConformalReport, conformal_threshold, nonconformity_scores
from medmm.evaluate.fairness import AuditResult, Flag, GroupMetric, GroupResult, audit_subgroups
from medmm.evaluate.metrics import (
    DiagnosisMetrics,
    Estimate,
    MetricsReport,
    OperatingPoints,
    choose_operating_points,
    evaluate_diagnoses,
)

__all__ = [
    "AuditResult",
    "CalibrationReport",
    "CalibrationSummary",
    "ConformalCalibrator",
    "ConformalReport",
    "DiagnosisMetrics",
    "Estimate",
    "EvaluationError",
    "Flag",
    "GroupMetric",
    "GroupResult",
    "MetricsReport",
    "OperatingPoints",
    "ReliabilityBins",
    "apply_temperature",
    "audit_subgroups",
    "brier_score",
    "calibration_report",
    "choose_operating_points",
    "conformal_threshold",
    "evaluate_diagnoses",
    "expected_calibration_error",
    "fit_temperature",
    "nonconformity_scores",
    "probs_to_logits",
    "reliability_bins",
    "summarise_calibration",
]
