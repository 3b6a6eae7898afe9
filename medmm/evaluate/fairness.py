"""Subgroup fairness audit: per-group metrics with fairlearn's MetricFrame, gaps to a reference group, flags.

For every attribute column of `groups` and every pairwise intersection of them (e.g.
"sex x race", groups like "female / 2106-3"), each group gets n, AUROC, TPR, FPR, PPV and ECE
(definitions in medmm.evaluate.group_metrics). A group with fewer than `min_group_size`
patients is reported as "too small" and not scored. Every scored group is compared with the
attribute's reference group (the largest scored group, or the one named per attribute):
difference = group - reference and ratio = group / reference, each with a percentile
bootstrap CI over resamples of the audit's PATIENTS (group and reference from the same
resample).

A group is FLAGGED for a metric when
- its ratio CI lies wholly outside [0.8, 1.25] (the Aequitas four-fifths convention; applied
  to auroc, tpr, fpr and ppv, not to ece, whose ratio of two near-zero errors means little;
  not to a zero-width interval, which only a group without any event produces; and for the
  pooled rates tpr, fpr and ppv only when the group's and the reference's rate each count at
  least MIN_RATIO_EVENTS events (true positives for tpr and ppv, false positives for fpr): a
  ratio of rare counts swings widely, and a percentile bootstrap of a count of 2 or 3 (the
  false positives of an accurate model in a group of 50 patients) gives an interval far
  narrower than an exact one, so a group would be flagged for having 1 false positive against
  the reference's 2 per hundred), or
- the lower CI bound of |difference| exceeds `bound_difference`, i.e. the whole difference CI
  lies beyond +-bound. The bound is checked against the CI, not the point estimate, so that
  sampling noise in small groups does not raise flags.

ECE is biased upward in small samples and more so under resampling, so its bootstrap interval
can sit above a small point estimate; read ECE gaps through the difference rule only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from medmm.errors import ConfigError
from medmm.evaluate.arrays import (
    EvaluationError,
    check_fraction,
    diagnosis_names,
    json_safe,
    labels_and_probs,
    patient_codes,
)
from medmm.evaluate.bootstrap import bootstrap_weights, percentile_interval
from medmm.evaluate.group_metrics import AUDIT_METRICS, both_classes, metric_functions, resampled_group_metrics
from medmm.evaluate.metrics import OperatingPoints
from medmm.records import Issue

if TYPE_CHECKING:
    from medmm.evaluate.audit_document import AuditContext

RATIO_METRICS: tuple[str, ...] = ("auroc", "tpr", "fpr", "ppv")
RATIO_BAND = (0.8, 1.25)
# Events each side of a pooled rate's ratio must count for the ratio rule (the textbook n*p >= 5 for
# approximate binomial intervals); rarer rates are judged by the difference rule alone.
MIN_RATIO_EVENTS = 5
EVENT_OF = {"tpr": "true positives", "fpr": "false positives", "ppv": "true positives"}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class GroupMetric:
    """One metric of one group, with its CI and its gap to the reference group."""

    metric: str
    value: float
    ci: tuple[float, float]
    reference_value: float
    ratio: float
    ratio_ci: tuple[float, float]
    difference: float
    difference_ci: tuple[float, float]
    skipped_resamples: int  # resamples where the group or reference metric was undefined
    events: int | None = None  # the group's count behind a pooled rate (EVENT_OF); None for auroc and ece


@dataclass(frozen=True)
class GroupResult:
    """One group of one attribute (or intersection): its size, status and metrics."""

    attribute: str
    group: str
    n: int  # cases
    n_patients: int
    status: str  # "reference" | "scored" | "too small"
    metrics: tuple[GroupMetric, ...] = ()  # empty when too small

    def metric(self, name: str) -> GroupMetric:
        """The metric called `name` (one of AUDIT_METRICS) of a scored group."""
        for m in self.metrics:
            if m.metric == name:
                return m
        raise EvaluationError("metric not scored for this group", where=f"{self.attribute}={self.group} metric {name}")


@dataclass(frozen=True)
class Flag:
    """A group whose metric differs from the reference group's beyond the audit's tolerances."""

    attribute: str
    group: str
    metric: str
    value: float
    ci: tuple[float, float]  # the group's interval of the metric
    reference_group: str | None
    reference_value: float
    ratio: float
    ratio_ci: tuple[float, float]
    difference: float
    difference_ci: tuple[float, float]
    reason: str


@dataclass(frozen=True)
class AuditResult:
    """Every audited group, the flags raised and the settings that produced them.

    `to_json` gives the audit.json document and `from_json` reads one back, with the context the
    document records around the audit (medmm.evaluate.audit_document).
    """

    groups: tuple[GroupResult, ...]
    flags: tuple[Flag, ...]
    attributes: tuple[str, ...]  # audited attributes and intersections, in order
    names: tuple[str, ...]  # diagnoses
    thresholds: tuple[float, ...]
    min_group_size: int
    bound_difference: float
    ratio_band: tuple[float, float]
    n_boot: int
    seed: int
    confidence: float
    n_bins: int
    issues: tuple[Issue, ...] = ()
    intersections: bool = True  # pairwise intersections of the attributes audited too
    context: AuditContext | None = None  # what audit.json records around the audit; None for one just computed

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str | Path | None = None) -> AuditResult:
        """The audit of an audit.json document (see medmm.evaluate.audit_document); EvaluationError names the file and field."""
        from medmm.evaluate.audit_document import audit_from_json

        return audit_from_json(data, path)

    def to_json(self) -> dict[str, Any]:
        """The audit.json document of this audit (NaN as null), with its context where it has one."""
        from medmm.evaluate.audit_document import audit_to_json

        return audit_to_json(self)

    @property
    def flagged_groups(self) -> tuple[str, ...]:
        """Every flagged group as "attribute=group", sorted."""
        return tuple(sorted({f"{f.attribute}={f.group}" for f in self.flags}))

    @property
    def groups_scored(self) -> int:
        return sum(g.status != "too small" for g in self.groups)

    @property
    def groups_too_small(self) -> int:
        return sum(g.status == "too small" for g in self.groups)

    def group(self, attribute: str, group: str) -> GroupResult:
        """The result of `group` within `attribute`."""
        for g in self.groups:
            if g.attribute == attribute and g.group == group:
                return g
        raise EvaluationError("no such group in this audit", where=f"attribute {attribute}")

    def reference(self, attribute: str) -> str | None:
        """The reference group of `attribute` (None when no group was big enough)."""
        return next((g.group for g in self.groups if g.attribute == attribute and g.status == "reference"), None)

    def to_dict(self) -> dict:
        """A JSON-able copy of every field (NaN becomes None); `to_json` gives the audit.json document."""
        return json_safe(asdict(self))


def _audit_columns(groups: pd.DataFrame, n: int, intersections: bool) -> list[tuple[str, pd.Series]]:
    """(attribute name, string labels) for each column and, optionally, each pair of columns."""
    if not isinstance(groups, pd.DataFrame) or groups.shape[1] == 0:
        raise EvaluationError("expected a pandas DataFrame with at least one attribute column", where="groups")
    if len(groups) != n:
        raise EvaluationError(f"expected {n} rows (one per case), got {len(groups)}", where="groups")
    labels = {}
    for col in groups.columns:
        raw = groups[col].reset_index(drop=True)
        labels[str(col)] = raw.astype(object).where(raw.notna(), UNKNOWN).astype(str)
    out = [(name, s) for name, s in labels.items()]
    if intersections:
        for a, b in itertools.combinations(list(labels), 2):
            out.append((f"{a} x {b}", labels[a] + " / " + labels[b]))
    return out


def _choose_reference(
    attribute: str, sizes: pd.Series, scored: list[str], reference: str | Mapping[str, str]
) -> str | None:
    """The named reference group of `attribute`, else its largest scored group (ties: first label)."""
    named = reference.get(attribute) if isinstance(reference, Mapping) else None
    if named is not None:
        if str(named) not in sizes.index:
            raise ConfigError("reference group not found among the attribute's groups", where=f"reference[{attribute}]")
        if str(named) not in scored:
            raise ConfigError("reference group is smaller than min_group_size", where=f"reference[{attribute}]")
        return str(named)
    if not scored:
        return None
    return max(sorted(scored), key=lambda g: int(sizes[g]))


def _thresholds(thresholds: float | Sequence[float] | OperatingPoints, k: int) -> np.ndarray:
    """Per-diagnosis thresholds (K,) from one number, K numbers or OperatingPoints."""
    raw = thresholds.thresholds if isinstance(thresholds, OperatingPoints) else thresholds
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(k, float(values))
    if values.shape != (k,) or not np.all(np.isfinite(values)):
        raise EvaluationError(f"expected one finite threshold or {k} (one per diagnosis)", where="thresholds")
    return values


def _flag_reason(
    metric: str,
    ratio_ci: tuple[float, float],
    diff_ci: tuple[float, float],
    band: tuple[float, float],
    bound: float,
    confidence: float,
    events: tuple[int | None, int | None] = (None, None),
) -> str:
    """Why a metric is flagged ('' when it is not); `events`: the group's and the reference's counts behind a pooled rate."""
    reasons = []
    pct = f"{confidence:.0%}"
    # A zero-width ratio interval means the group's rate was 0 in every resample (no events at
    # all): the percentile bootstrap shows no uncertainty there, so only the difference rule applies.
    # So does a rate of fewer than MIN_RATIO_EVENTS events on either side.
    rare = metric in EVENT_OF and any(e is not None and e < MIN_RATIO_EVENTS for e in events)
    if metric in RATIO_METRICS and not rare and all(math.isfinite(v) for v in ratio_ci) and ratio_ci[0] < ratio_ci[1]:
        if ratio_ci[1] < band[0]:
            reasons.append(f"ratio {pct} CI [{ratio_ci[0]:.3f}, {ratio_ci[1]:.3f}] lies below {band[0]}")
        elif ratio_ci[0] > band[1]:
            reasons.append(f"ratio {pct} CI [{ratio_ci[0]:.3f}, {ratio_ci[1]:.3f}] lies above {band[1]}")
    if all(math.isfinite(v) for v in diff_ci) and (diff_ci[0] > bound or diff_ci[1] < -bound):
        reasons.append(f"|difference| exceeds {bound} across its {pct} CI [{diff_ci[0]:.3f}, {diff_ci[1]:.3f}]")
    return "; ".join(reasons)


@dataclass(frozen=True)
class _AttributeScores:
    """Point metrics of every group of one attribute (fairlearn's by_group frame) and what to score."""

    attribute: str
    by_group: pd.DataFrame  # index: group label; columns: AUDIT_METRICS, n, n_patients
    reference: str | None
    masks: Mapping[str, np.ndarray]  # rows of each scored group


def audit_subgroups(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: float | Sequence[float] | OperatingPoints,
    groups: pd.DataFrame,
    patient_ids: Sequence[object] | np.ndarray | None = None,
    *,
    names: Sequence[str] | None = None,
    intersections: bool = True,
    min_group_size: int = 30,
    reference: str | Mapping[str, str] = "largest",
    bound_difference: float = 0.1,
    ratio_band: tuple[float, float] = RATIO_BAND,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_bins: int = 10,
) -> AuditResult:
    """Audit every attribute of `groups` (one row per case) and their pairwise intersections.

    `thresholds` turn probabilities into calls (one for all diagnoses, one per diagnosis, or
    the validation OperatingPoints). `min_group_size` counts distinct patients. `reference`
    is "largest" or a mapping attribute -> reference group (others fall back to the largest).
    """
    y, p = labels_and_probs(y_true, y_prob)
    if names is None and isinstance(thresholds, OperatingPoints):
        names = thresholds.names
    labels = diagnosis_names(names, y.shape[1])
    thr = _thresholds(thresholds, y.shape[1])
    pred = p >= thr  # (N, K) calls
    codes = patient_codes(patient_ids, y.shape[0])
    confidence = check_fraction(confidence, "confidence")
    if not (isinstance(reference, Mapping) or reference == "largest"):
        raise ConfigError("expected 'largest' or a mapping attribute -> reference group", where="reference")
    if int(min_group_size) < 1 or not bound_difference > 0 or not 0 < ratio_band[0] < 1 < ratio_band[1]:
        raise ConfigError(
            "expected min_group_size >= 1, bound_difference > 0 and ratio_band (low < 1 < high)", where="audit settings"
        )
    columns = _audit_columns(groups, y.shape[0], intersections)
    if isinstance(reference, Mapping) and set(reference) - {a for a, _ in columns}:
        raise ConfigError("reference names an attribute that is not audited", where="reference")

    funcs = metric_functions(y, p, pred, n_bins)
    row_index = np.arange(y.shape[0])
    scores: list[_AttributeScores] = []
    issues: list[Issue] = []
    for attribute, series in columns:
        frame = MetricFrame(
            metrics=funcs, y_true=row_index, y_pred=row_index, sensitive_features=series.rename(attribute)
        ).by_group
        frame.index = frame.index.astype(str)
        frame["n"] = series.value_counts().reindex(frame.index)
        frame["n_patients"] = pd.Series(codes).groupby(series).nunique().reindex(frame.index)
        scored = [g for g in frame.index if frame.loc[g, "n_patients"] >= min_group_size]
        ref = _choose_reference(attribute, frame["n_patients"], scored, reference)
        if ref is None:
            issues.append(
                Issue(
                    "fairness audit",
                    f"attribute {attribute}",
                    f"no group has {min_group_size} patients; nothing scored",
                )
            )
        scores.append(_AttributeScores(attribute, frame, ref, {g: (series == g).to_numpy() for g in scored}))

    boot = _bootstrap(scores, y, p, pred, codes, int(n_boot), seed, n_bins)
    results: list[GroupResult] = []
    flags: list[Flag] = []
    for a in scores:
        frame, ref = a.by_group, a.reference
        for g in frame.index:
            n, n_pat = int(frame.loc[g, "n"]), int(frame.loc[g, "n_patients"])
            if g not in a.masks or ref is None:
                results.append(GroupResult(a.attribute, g, n, n_pat, "too small"))
                continue
            metrics = []
            counts, ref_counts = _events(y, pred, a.masks[g]), _events(y, pred, a.masks[ref])
            for m in AUDIT_METRICS:
                samples, ref_samples = boot[(a.attribute, g)][m], boot[(a.attribute, ref)][m]
                gm = _compare(
                    m, float(frame.loc[g, m]), float(frame.loc[ref, m]), samples, ref_samples, confidence, counts.get(m)
                )
                metrics.append(gm)
                reason = (
                    ""
                    if g == ref
                    else _flag_reason(
                        m,
                        gm.ratio_ci,
                        gm.difference_ci,
                        ratio_band,
                        bound_difference,
                        confidence,
                        (counts.get(m), ref_counts.get(m)),
                    )
                )
                if reason:
                    flags.append(
                        Flag(
                            a.attribute,
                            g,
                            m,
                            value=gm.value,
                            ci=gm.ci,
                            reference_group=ref,
                            reference_value=gm.reference_value,
                            ratio=gm.ratio,
                            ratio_ci=gm.ratio_ci,
                            difference=gm.difference,
                            difference_ci=gm.difference_ci,
                            reason=reason,
                        )
                    )
            results.append(GroupResult(a.attribute, g, n, n_pat, "reference" if g == ref else "scored", tuple(metrics)))
    return AuditResult(
        groups=tuple(results),
        flags=tuple(flags),
        attributes=tuple(a for a, _ in columns),
        names=labels,
        thresholds=tuple(float(t) for t in thr),
        min_group_size=int(min_group_size),
        bound_difference=float(bound_difference),
        ratio_band=(float(ratio_band[0]), float(ratio_band[1])),
        n_boot=int(n_boot),
        seed=int(seed),
        confidence=confidence,
        n_bins=int(n_bins),
        issues=tuple(issues),
        intersections=bool(intersections),
    )


def _bootstrap(
    scores: list[_AttributeScores],
    y: np.ndarray,
    p: np.ndarray,
    pred: np.ndarray,
    codes: np.ndarray,
    n_boot: int,
    seed: int,
    n_bins: int,
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(attribute, group) -> metric -> (n_boot,) values; every group sees the same patient resamples."""
    chunks: dict[tuple[str, str], dict[str, list[np.ndarray]]] = {}
    auroc_over = {(a.attribute, g): both_classes(y[mask]) for a in scores for g, mask in a.masks.items()}
    for w in bootstrap_weights(codes, n_boot, seed):  # (b, N)
        for a in scores:
            for g, mask in a.masks.items():
                values = resampled_group_metrics(
                    y[mask], p[mask], pred[mask], w[:, mask], auroc_over[(a.attribute, g)], n_bins
                )
                store = chunks.setdefault((a.attribute, g), {m: [] for m in AUDIT_METRICS})
                for m in AUDIT_METRICS:
                    store[m].append(values[m])
    return {key: {m: np.concatenate(v[m]) for m in AUDIT_METRICS} for key, v in chunks.items()}


def _events(y: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    """The counts behind a group's pooled rates (EVENT_OF): true positives (tpr, ppv) and false positives (fpr)."""
    truth, calls = y[mask].astype(bool), pred[mask].astype(bool)
    tp, fp = int((truth & calls).sum()), int((~truth & calls).sum())
    return {"tpr": tp, "fpr": fp, "ppv": tp}


def _compare(
    metric: str,
    value: float,
    ref_value: float,
    samples: np.ndarray,
    ref_samples: np.ndarray,
    confidence: float,
    events: int | None = None,
) -> GroupMetric:
    """Point and bootstrap difference/ratio of a group's metric to the reference's."""
    usable = np.isfinite(samples) & np.isfinite(ref_samples)
    diff = np.where(usable, samples - ref_samples, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(usable & (ref_samples != 0), samples / np.where(ref_samples != 0, ref_samples, 1.0), np.nan)
    point_ratio = (
        value / ref_value if math.isfinite(value) and math.isfinite(ref_value) and ref_value != 0 else math.nan
    )
    return GroupMetric(
        metric=metric,
        value=value,
        ci=percentile_interval(samples, confidence),
        reference_value=ref_value,
        ratio=point_ratio,
        ratio_ci=percentile_interval(ratio, confidence),
        difference=value - ref_value,
        difference_ci=percentile_interval(diff, confidence),
        skipped_resamples=int((~usable).sum()),
        events=events,
    )
