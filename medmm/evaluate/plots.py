"""Evaluation figures as PNG bytes: ROC and PR curves, reliability diagrams, subgroup metric bars.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot state, no
display needed). Each `*_figure` function returns the Figure (inspectable in tests) and the
matching function without the suffix returns its PNG bytes.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from medmm.evaluate.arrays import EvaluationError, diagnosis_names, labels_and_probs
from medmm.evaluate.calibration import ReliabilityBins
from medmm.evaluate.fairness import AuditResult
from medmm.evaluate.group_metrics import AUDIT_METRICS

DISCLAIMER = "medmm - research use only, not a medical device"
METRIC_LABELS = {
    "auroc": "AUROC (macro over diagnoses)",
    "tpr": "True positive rate (pooled)",
    "fpr": "False positive rate (pooled)",
    "ppv": "Positive predictive value (pooled)",
    "ece": "Expected calibration error (pooled)",
}
COLOURS = {"reference": "#4c72b0", "scored": "#8fb3d9", "flagged": "#c44e52"}


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """Render `fig` to PNG bytes with the Agg canvas."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _new_figure(size: tuple[float, float] = (6.4, 5.2)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    fig.supxlabel(DISCLAIMER, x=0.99, ha="right", fontsize=7, color="grey")  # laid out below the axes
    return fig


def roc_figure(y_true: np.ndarray, y_prob: np.ndarray, names: Sequence[str] | None = None) -> Figure:
    """One ROC curve per diagnosis, AUROC in the legend; a diagnosis with one class is listed, not drawn."""
    y, p = labels_and_probs(y_true, y_prob)
    labels = diagnosis_names(names, y.shape[1])
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for k, name in enumerate(labels):
        if y[:, k].min() == y[:, k].max():
            ax.plot([], [], " ", label=f"{name} (one class only; not drawn)")
            continue
        fpr, tpr, _ = roc_curve(y[:, k], p[:, k])
        ax.plot(fpr, tpr, linewidth=1.6, label=f"{name} (AUROC {roc_auc_score(y[:, k], p[:, k]):.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title="ROC curves by diagnosis")
    ax.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def roc_curves(y_true: np.ndarray, y_prob: np.ndarray, names: Sequence[str] | None = None) -> bytes:
    """PNG of roc_figure."""
    return png_bytes(roc_figure(y_true, y_prob, names))


def pr_figure(y_true: np.ndarray, y_prob: np.ndarray, names: Sequence[str] | None = None) -> Figure:
    """One precision-recall curve per diagnosis, AUPRC and prevalence in the legend."""
    y, p = labels_and_probs(y_true, y_prob)
    labels = diagnosis_names(names, y.shape[1])
    fig = _new_figure()
    ax = fig.add_subplot()
    for k, name in enumerate(labels):
        if not y[:, k].any():
            ax.plot([], [], " ", label=f"{name} (no positives; not drawn)")
            continue
        precision, recall, _ = precision_recall_curve(y[:, k], p[:, k])
        label = f"{name} (AUPRC {average_precision_score(y[:, k], p[:, k]):.3f}, prevalence {y[:, k].mean():.2f})"
        line = ax.step(recall, precision, where="post", linewidth=1.6, label=label)[0]
        ax.axhline(y[:, k].mean(), color=line.get_color(), linestyle=":", linewidth=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
    ax.set_title("Precision-recall curves by diagnosis (dotted: prevalence)")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def pr_curves(y_true: np.ndarray, y_prob: np.ndarray, names: Sequence[str] | None = None) -> bytes:
    """PNG of pr_figure."""
    return png_bytes(pr_figure(y_true, y_prob, names))


def reliability_figure(
    before: ReliabilityBins, after: ReliabilityBins | None = None, temperature: float | None = None
) -> Figure:
    """Observed rate against mean probability per bin, before (and after) temperature scaling, with bin counts below."""
    fig = _new_figure((6.4, 6.4))
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    edges = np.asarray(before.edges)
    width = float(np.diff(edges).min())
    series = [("before scaling", before, "#c44e52")]
    if after is not None:
        t = "" if temperature is None else f", T = {temperature:.2f}"
        series.append((f"after temperature scaling{t}", after, "#4c72b0"))
    for i, (label, bins, colour) in enumerate(series):
        counts = np.asarray(bins.counts)
        full = counts > 0
        mean_p, rate = np.asarray(bins.mean_predicted)[full], np.asarray(bins.observed_rate)[full]
        top.plot(mean_p, rate, marker="o", color=colour, linewidth=1.6, label=f"{label} (ECE {bins.ece:.3f})")
        offset = (i - (len(series) - 1) / 2) * width / len(series)
        bottom.bar(
            edges[:-1] + width / 2 + offset, counts, width=width / len(series), color=colour, alpha=0.8, label=label
        )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="Observed frequency", title="Reliability diagram (pooled over diagnoses)")
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel="Mean predicted probability", ylabel="Predictions per bin")
    return fig


def reliability_diagram(
    before: ReliabilityBins, after: ReliabilityBins | None = None, temperature: float | None = None
) -> bytes:
    """PNG of reliability_figure."""
    return png_bytes(reliability_figure(before, after, temperature))


def subgroup_figure(audit: AuditResult, metric: str, attribute: str) -> Figure:
    """Bars of `metric` per group of `attribute` with CI error bars; reference and flagged groups highlighted."""
    if metric not in AUDIT_METRICS:
        raise EvaluationError(f"unknown metric; expected one of {', '.join(AUDIT_METRICS)}", where="metric")
    if attribute not in audit.attributes:
        raise EvaluationError("attribute was not audited", where="attribute")
    groups = [g for g in audit.groups if g.attribute == attribute]
    flagged = {f.group for f in audit.flags if f.attribute == attribute and f.metric == metric}
    fig = _new_figure((max(6.4, 1.0 + 0.9 * len(groups)), 5.2))
    ax = fig.add_subplot()
    labels, small = [], []
    for x, g in enumerate(groups):
        labels.append(f"{g.group}\n(n={g.n_patients})")
        if g.status == "too small":
            small.append(x)
            ax.text(x, 0.0, "too small\nnot scored", ha="center", va="bottom", fontsize=7, color="grey")
            continue
        m = g.metric(metric)
        kind = "flagged" if g.group in flagged else g.status
        low, high = m.ci
        err = (
            None if math.isnan(low) or math.isnan(m.value) else [[max(m.value - low, 0.0)], [max(high - m.value, 0.0)]]
        )
        is_flagged = kind == "flagged"
        edge = "black" if is_flagged else COLOURS[kind]
        ax.bar(
            x,
            m.value,
            color=COLOURS[kind],
            edgecolor=edge,
            hatch="//" if is_flagged else None,
            gid=f"bar:{g.group}:{kind}",
        )
        if err is not None:
            ax.errorbar(x, m.value, yerr=err, color="black", capsize=4, linewidth=1)
        if g.status == "reference":
            ax.axhline(m.value, color=COLOURS["reference"], linestyle="--", linewidth=1)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    crowded = len(groups) > 4
    ax.set_xticks(
        range(len(groups)), labels, rotation=30 if crowded else 0, ha="right" if crowded else "center", fontsize=8
    )
    ax.set(
        ylabel=METRIC_LABELS[metric],
        title=f"{METRIC_LABELS[metric]} by {attribute} ({audit.confidence:.0%} bootstrap CI)",
    )
    handles = [
        Patch(color=COLOURS["reference"], label="reference group"),
        Patch(color=COLOURS["scored"], label="within tolerance"),
        Patch(facecolor=COLOURS["flagged"], edgecolor="black", hatch="//", label="flagged"),
    ]
    ax.legend(handles=handles, loc="best", fontsize=8)
    return fig


def subgroup_metric_bars(audit: AuditResult, metric: str, attribute: str) -> bytes:
    """PNG of subgroup_figure."""
    return png_bytes(subgroup_figure(audit, metric, attribute))


def difference_figure(rows: Sequence[dict]) -> Figure:
    """Model minus baseline macro AUROC per modality subset, with the paired intervals (a forest plot)."""
    fig = _new_figure((6.4, 0.5 * len(rows) + 1.4))
    ax = fig.subplots()
    ys = np.arange(len(rows))[::-1]
    for y, r in zip(ys, rows):
        d = r["difference"]
        ax.errorbar(
            d["difference"],
            y,
            xerr=[[d["difference"] - d["low"]], [d["high"] - d["difference"]]],
            fmt="o",
            color="black",
            capsize=3,
        )
    ax.axvline(0.0, color="grey", linewidth=1)
    ax.set_yticks(ys, [f"{r['inputs']} (model {r['model']:.3f}, baseline {r['baseline']:.3f})" for r in rows])
    ax.set_xlabel("macro AUROC: model - best classical baseline (paired 95% interval)")
    fig.tight_layout()
    return fig


def difference_plot(rows: Sequence[dict]) -> bytes:
    return png_bytes(difference_figure(rows))
