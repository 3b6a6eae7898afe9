"""From per-case scores to evaluation.json and audit.json: fit on the validation split, report on test.

What is fitted (temperature, operating points, conformal threshold) comes from the validation
split, in that order: the operating points and the conformal threshold are chosen on
probabilities AFTER temperature scaling, since those are what the Predictor returns. Every
reported figure comes from the test split. Without a validation split the model's saved
calibration is used instead, and the output says so.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np
from scipy.special import expit

import medmm
from medmm.evaluate.arrays import EvaluationError, check_fraction, json_safe
from medmm.evaluate.audit_document import AuditContext
from medmm.evaluate.calibration import CalibrationReport, fit_temperature, summarise_calibration
from medmm.evaluate.conformal import ConformalCalibrator
from medmm.evaluate.describe import describe_split
from medmm.evaluate.fairness import AuditResult, audit_subgroups
from medmm.evaluate.metrics import FALLBACK_THRESHOLD, OperatingPoints, choose_operating_points, evaluate_diagnoses
from medmm.evaluate.scores import SplitScores
from medmm.records import Issue

EVALUATION_FORMAT = "medmm.evaluation/1"
AUDIT_FORMAT = "medmm.audit/1"
DISCLAIMER = "Research use only; not a medical device."
N_BINS = 10
MAX_AUDIT_PLOTS = 12
FROM_VALIDATION = "validation split"
FROM_SAVED = "saved calibration"


@dataclass(frozen=True)
class Fitted:
    """What is applied to the test split: temperature, operating points and conformal calibrator, and their source."""

    source: str  # FROM_VALIDATION | FROM_SAVED
    temperature: float
    operating_points: OperatingPoints
    conformal: ConformalCalibrator | None
    n_calibration: int
    issues: tuple[Issue, ...] = ()

    def calibration_json(self, cohort_name: str) -> dict:
        """calibration.json for the checkpoint (the Predictor reads temperature and conformal_threshold)."""
        out = {
            "temperature": self.temperature,
            "operating_rule": self.operating_points.rule,
            "operating_thresholds": dict(zip(self.operating_points.names, self.operating_points.thresholds)),
            "fitted_on": self.source,
            "cohort": cohort_name,
            "n_calibration": self.n_calibration,
            "medmm_version": medmm.__version__,
            "fitted_at": _now(),
        }
        if self.conformal is not None and self.conformal.threshold is not None:
            out.update(conformal_threshold=self.conformal.threshold, coverage_target=self.conformal.target_coverage)
        return json_safe(out)  # type: ignore[return-value]


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def fit_on_validation(val: SplitScores, coverage: float) -> Fitted:
    """Temperature on val logits, then operating points and the conformal threshold on the scaled val probabilities."""
    temperature = fit_temperature(val.logits, val.labels)
    probs = val.probabilities(temperature)
    points = choose_operating_points(val.labels, probs, val.names)
    conformal = ConformalCalibrator(1.0 - coverage, val.names).fit(val.labels, probs)
    return Fitted(FROM_VALIDATION, temperature, points, conformal, val.n, points.issues)


def from_saved(calibration: Mapping[str, object] | None, names: tuple[str, ...], coverage: float) -> Fitted:
    """The model's saved calibration; what it lacks falls back to T = 1, threshold 0.5, no conformal sets (each stated)."""
    saved = dict(calibration or {})
    where = "calibration.json"
    issues = [
        Issue(
            where,
            "",
            "no validation split: temperature, operating points and conformal threshold come from the model's saved calibration",
        )
    ]
    temperature = saved.get("temperature")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        temperature = 1.0
        issues.append(Issue(where, "temperature", "none saved: probabilities are not temperature-scaled (T = 1)"))
    stored = saved.get("operating_thresholds")
    if isinstance(stored, Mapping) and all(isinstance(stored.get(n), (int, float)) for n in names):
        points = OperatingPoints(
            names, tuple(float(stored[n]) for n in names), str(saved.get("operating_rule", "saved"))
        )
    else:
        points = OperatingPoints(names, (FALLBACK_THRESHOLD,) * len(names), "fixed")
        issues.append(
            Issue(
                where,
                "operating_thresholds",
                f"none saved: every diagnosis is called at probability >= {FALLBACK_THRESHOLD}",
            )
        )
    q, target = saved.get("conformal_threshold"), saved.get("coverage_target")
    conformal = None
    if isinstance(q, (int, float)) and isinstance(target, (int, float)) and 0 < target < 1:
        conformal = ConformalCalibrator(1.0 - float(target), names)
        conformal.threshold, conformal.n_calibration = float(q), int(saved.get("n_calibration", 0) or 0)  # type: ignore[arg-type]
        if abs(float(target) - coverage) > 1e-9:
            message = (
                f"the saved conformal threshold targets {float(target):.0%} coverage, not the {coverage:.0%} asked for"
            )
            issues.append(Issue(where, "coverage_target", message))
    else:
        issues.append(Issue(where, "conformal_threshold", "none saved: no conformal prediction sets"))
    n_cal = int(saved.get("n_calibration", 0) or 0)  # type: ignore[call-overload]
    return Fitted(FROM_SAVED, float(temperature), points, conformal, n_cal, tuple(issues))


def _issue_dicts(issues) -> list[dict]:
    return [{"source": i.source, "where": i.where, "message": i.message, "kind": i.kind} for i in issues]


def write_json(path: Path, data: dict) -> Path:
    """JSON with NaN written as null (strict JSON that every reader accepts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _save_png(out_dir: Path, name: str, png: bytes) -> str:
    path = out_dir / "plots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path.relative_to(out_dir).as_posix()


def evaluate_from_scores(
    val: SplitScores | None,
    test: SplitScores,
    out_dir: str | Path,
    *,
    saved_calibration: Mapping[str, object] | None = None,
    coverage: float = 0.9,
    n_boot: int = 1000,
    seed: int = 0,
    context: Mapping[str, object] | None = None,
    plots: bool = True,
) -> tuple[dict, Fitted]:
    """Fit on `val` (or use the saved calibration), report on `test`, write plots and evaluation.json.

    `context` adds sections (model, cohort, ablation, ...) to the JSON; `plots=False` skips the
    PNG files. Returns the evaluation and what was fitted (for the checkpoint).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    coverage = check_fraction(coverage, "coverage")
    if val is not None and val.names != test.names:
        raise EvaluationError("validation and test scores name different diagnoses", where="names")
    fitted = (
        fit_on_validation(val, coverage) if val is not None else from_saved(saved_calibration, test.names, coverage)
    )
    probs = test.probabilities(fitted.temperature)  # (N, K) what the Predictor returns
    metrics = evaluate_diagnoses(
        test.labels, probs, fitted.operating_points, patient_ids=test.patient_ids, n_boot=n_boot, seed=seed
    )
    before = summarise_calibration(test.labels, expit(test.logits), test.names, N_BINS)
    after = summarise_calibration(test.labels, probs, test.names, N_BINS)
    calibration = CalibrationReport(fitted.temperature, before, after, N_BINS)
    conformal = None
    if fitted.conformal is not None:
        report = fitted.conformal.evaluate(test.labels, probs)
        conformal = {
            **report.to_dict(),
            "threshold": fitted.conformal.threshold,
            "n_calibration": fitted.conformal.n_calibration,
        }
    plot_files = _evaluation_plots(out, test, probs, calibration) if plots else {}
    evaluation = {
        "format": EVALUATION_FORMAT,
        "disclaimer": DISCLAIMER,
        "medmm_version": medmm.__version__,
        "created": _now(),
        **dict(context or {}),
        "settings": {
            "coverage": coverage,
            "n_boot": int(n_boot),
            "seed": int(seed),
            "n_bins": N_BINS,
            "operating_rule": fitted.operating_points.rule,
        },
        "fitting": {
            "source": fitted.source,
            "split": val.split if val is not None else None,
            "cases": fitted.n_calibration,
            "note": _fitting_note(fitted, val),
        },
        "splits": {"val": describe_split(val) if val is not None else None, "test": describe_split(test)},
        "operating_points": {
            "rule": fitted.operating_points.rule,
            "thresholds": dict(zip(test.names, fitted.operating_points.thresholds)),
        },
        "metrics": metrics.to_dict(),
        "calibration": calibration.to_dict(),
        "conformal": conformal,
        "plots": plot_files,
        "issues": _issue_dicts(fitted.issues),
    }
    evaluation["summary"] = _evaluation_summary(evaluation)
    evaluation["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out / "evaluation.json", evaluation)
    return json_safe(evaluation), fitted  # type: ignore[return-value]


def _evaluation_plots(
    out: Path, test: SplitScores, probs: np.ndarray, calibration: CalibrationReport
) -> dict[str, str]:
    from medmm.evaluate import plots

    before, after = calibration.before.bins_pooled, calibration.after.bins_pooled
    return {
        "roc": _save_png(out, "roc", plots.roc_curves(test.labels, probs, test.names)),
        "pr": _save_png(out, "pr", plots.pr_curves(test.labels, probs, test.names)),
        "reliability": _save_png(out, "reliability", plots.reliability_diagram(before, after, calibration.temperature)),
    }


def _fitting_note(fitted: Fitted, val: SplitScores | None) -> str:
    if val is not None:
        return (
            f"Temperature, operating points (Youden) and the conformal threshold were fitted on the {val.split} split "
            f"({val.n} cases); every reported figure comes from the test split."
        )
    return "The cohort has no validation split: the model's saved calibration was applied unchanged to the evaluated cases."


def _evaluation_summary(e: dict) -> dict:
    macro = e["metrics"]["macro"]
    conformal = e["conformal"] or {}
    return {
        "test_cases": e["metrics"]["n_cases"],
        "macro_auroc": macro["auroc"]["value"],
        "macro_auroc_ci": [macro["auroc"]["low"], macro["auroc"]["high"]],
        "macro_auprc": macro["auprc"]["value"],
        "temperature": e["calibration"]["temperature"],
        "ece_before": e["calibration"]["before"]["ece_pooled"],
        "ece_after": e["calibration"]["after"]["ece_pooled"],
        "brier_before": e["calibration"]["before"]["brier_pooled"],
        "brier_after": e["calibration"]["after"]["brier_pooled"],
        "coverage_target": conformal.get("target_coverage"),
        "coverage": conformal.get("coverage"),
        "mean_set_size": conformal.get("mean_set_size"),
        "fitted_on": e["fitting"]["source"],
    }


def audit_from_scores(
    val: SplitScores | None,
    test: SplitScores,
    out_dir: str | Path,
    *,
    saved_calibration: Mapping[str, object] | None = None,
    min_group_size: int = 30,
    bound_difference: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    context: Mapping[str, object] | None = None,
    plots: bool = True,
) -> dict:
    """Subgroup audit of the test split at validation-chosen operating points; writes plots, audit.json and audit.html.

    Probabilities use the model's saved temperature (what the Predictor returns); operating
    points are chosen on the validation split's probabilities, else taken from the saved calibration.
    `plots=False` skips the PNG files.
    """
    from medmm.report.html import write_audit_page

    start = time.perf_counter()
    out = Path(out_dir)
    if test.attributes.shape[1] == 0:
        wanted = ", ".join(test.missing_attributes) or "none asked for"
        raise EvaluationError(
            f"the manifest has none of the task's audit attributes ({wanted})", where="manifest columns"
        )
    saved = from_saved(saved_calibration, test.names, 0.9)
    issues = [i for i in saved.issues if i.where in ("temperature",)]
    if val is not None:
        points = choose_operating_points(val.labels, val.probabilities(saved.temperature), val.names)
        thresholds_from = FROM_VALIDATION
        issues += list(points.issues)
    else:
        points, thresholds_from = saved.operating_points, FROM_SAVED
        issues += [i for i in saved.issues if i.where in ("", "operating_thresholds")]
    issues += [Issue("manifest", a, "attribute not in the manifest; not audited") for a in test.missing_attributes]
    probs = test.probabilities(saved.temperature)
    result = audit_subgroups(
        test.labels,
        probs,
        points,
        test.attributes,
        test.patient_ids,
        names=test.names,
        min_group_size=min_group_size,
        bound_difference=bound_difference,
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
    )
    issues += list(result.issues)
    given = dict(context or {})
    record = dataclasses.replace(
        result,
        issues=tuple(issues),
        context=AuditContext(
            format=AUDIT_FORMAT,
            disclaimer=DISCLAIMER,
            medmm_version=medmm.__version__,
            created=_now(),
            model=given.pop("model", None),
            cohort=given.pop("cohort", None),
            split=describe_split(test),
            temperature=saved.temperature,
            calibrated=not any(i.where == "temperature" for i in saved.issues),
            thresholds_from=thresholds_from,
            plots=_audit_plots(out, result) if plots else {},
            extra=given,
        ),
    )
    audit = record.to_json()  # the one writer of the audit.json document (medmm.evaluate.audit_document)
    audit["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out / "audit.json", audit)
    write_audit_page(out, json_safe(audit))  # type: ignore[arg-type]
    return json_safe(audit)  # type: ignore[return-value]


def _audit_plots(out: Path, result: AuditResult) -> dict[str, str]:
    """AUROC and TPR bars for every single attribute, plus every flagged (attribute, metric) pair, capped."""
    from medmm.evaluate import plots

    single = [a for a in result.attributes if " x " not in a]
    wanted = [(a, m) for a in single for m in ("auroc", "tpr")]
    wanted += [(f.attribute, f.metric) for f in result.flags]
    files: dict[str, str] = {}
    for attribute, metric in dict.fromkeys(wanted):
        if len(files) >= MAX_AUDIT_PLOTS:
            break
        if not any(g.attribute == attribute and g.status != "too small" for g in result.groups):
            continue
        key = f"{metric}:{attribute}"
        name = "audit_" + "".join(c if c.isalnum() else "_" for c in f"{metric}_{attribute}")
        files[key] = _save_png(out, name, plots.subgroup_metric_bars(result, metric, attribute))
    return files
