import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from sklearn.metrics import roc_curve

from medmm.evaluate.arrays import EvaluationError
from medmm.evaluate.calibration import calibration_report
from medmm.evaluate.fairness import audit_subgroups
from medmm.evaluate.plots import (
    COLOURS,
    DISCLAIMER,
    pr_curves,
    pr_figure,
    reliability_diagram,
    reliability_figure,
    roc_curves,
    roc_figure,
    subgroup_figure,
    subgroup_metric_bars,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(0)
    z = rng.normal(-0.5, 2.0, size=(400, 2))
    y = (rng.random((400, 2)) < 1 / (1 + np.exp(-z))).astype(int)
    return y, 1 / (1 + np.exp(-z)), z


def decoded(png: bytes) -> np.ndarray:
    assert png.startswith(PNG)
    return mpimg.imread(io.BytesIO(png), format="png")


def texts(fig):
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def test_roc_curves_draw_sklearn_curves(cases):
    y, p, _ = cases
    fig = roc_figure(y, p, names=["pneumonia", "sepsis"])
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if line.get_label().startswith("pneumonia")]
    fpr, tpr, _ = roc_curve(y[:, 0], p[:, 0])
    assert np.allclose(curves[0].get_xdata(), fpr) and np.allclose(curves[0].get_ydata(), tpr)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("sepsis (AUROC 0.") for t in legend) and "chance" in legend
    assert ax.get_xlabel().startswith("False positive rate") and ax.get_title()
    assert DISCLAIMER in texts(fig)
    image = decoded(roc_curves(y, p))
    assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.01


def test_one_class_diagnosis_is_listed_not_drawn(cases):
    y, p, _ = cases
    y = y.copy()
    y[:, 1] = 0
    legend = [t.get_text() for t in roc_figure(y, p, ["a", "b"]).axes[0].get_legend().get_texts()]
    assert "b (one class only; not drawn)" in legend
    legend = [t.get_text() for t in pr_figure(y, p, ["a", "b"]).axes[0].get_legend().get_texts()]
    assert "b (no positives; not drawn)" in legend


def test_pr_curves_png(cases):
    y, p, _ = cases
    ax = pr_figure(y, p, ["a", "b"]).axes[0]
    assert ax.get_xlabel().startswith("Recall") and ax.get_ylabel().startswith("Precision")
    decoded(pr_curves(y, p))


def test_reliability_diagram_before_and_after(cases):
    y, _, z = cases
    report = calibration_report(y, 3 * z, y, 3 * z)
    fig = reliability_figure(report.before.bins_pooled, report.after.bins_pooled, report.temperature)
    top = fig.axes[0]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert f"before scaling (ECE {report.before.ece_pooled:.3f})" in legend
    assert any(t.startswith(f"after temperature scaling, T = {report.temperature:.2f}") for t in legend)
    before_line = next(line for line in top.get_lines() if line.get_label().startswith("before"))
    full = np.asarray(report.before.bins_pooled.counts) > 0
    assert np.allclose(before_line.get_ydata(), np.asarray(report.before.bins_pooled.observed_rate)[full])
    decoded(reliability_diagram(report.before.bins_pooled))


def test_subgroup_bars_highlight_flagged_and_reference():
    rng = np.random.default_rng(1)
    n = 900
    race = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    race[:8] = "D"
    p = rng.random((n, 2))
    y = (rng.random((n, 2)) < p).astype(int)
    rows = np.flatnonzero(race == "C")
    p[rows] = p[rng.permutation(rows)]
    audit = audit_subgroups(y, p, 0.5, pd.DataFrame({"race": race}), n_boot=60, seed=0)
    assert {(f.group, f.metric) for f in audit.flags} >= {("C", "auroc")}
    fig = subgroup_figure(audit, "auroc", "race")
    ax = fig.axes[0]
    bars = {patch.get_gid(): patch for patch in ax.patches if patch.get_gid()}
    assert set(bars) == {"bar:A:reference", "bar:B:scored", "bar:C:flagged"}
    assert np.allclose(bars["bar:C:flagged"].get_facecolor()[:3], to_rgb(COLOURS["flagged"]))
    assert bars["bar:C:flagged"].get_height() == pytest.approx(audit.group("race", "C").metric("auroc").value)
    assert "too small\nnot scored" in texts(fig)
    assert [t.get_text() for t in ax.get_xticklabels()][3].startswith("D\n(n=8)")
    decoded(subgroup_metric_bars(audit, "auroc", "race"))
    with pytest.raises(EvaluationError):
        subgroup_figure(audit, "accuracy", "race")
    with pytest.raises(EvaluationError):
        subgroup_figure(audit, "auroc", "sex")
