import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from medmm.errors import ConfigError
from medmm.evaluate.fairness import AUDIT_METRICS, audit_subgroups
from medmm.evaluate.metrics import OperatingPoints
from medmm.tasks.load import DEFAULT_AGE_BANDS
from medmm.tasks.task import age_band_label

N_BOOT = 200
THRESHOLD = 0.3


def make_audit_data(seed=0, n=2000, k=3, uninformative=None, tiny=12):
    """Calibrated predictions for every group from one generator, plus a tiny race group.

    `uninformative` names a race whose scores are shuffled within the group (AUROC ~ 0.5).
    """
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    race = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    race[:tiny] = "D"
    age = rng.uniform(18, 90, n)
    z = rng.normal(-1.0, 2.0, size=(n, k))
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.random((n, k)) < p).astype(int)
    if uninformative is not None:
        rows = np.flatnonzero(race == uninformative)
        p[rows] = p[rng.permutation(rows)]
    groups = pd.DataFrame({"sex": sex, "race": race, "age_band": [age_band_label(a, DEFAULT_AGE_BANDS) for a in age]})
    ids = [f"pt{i}" for i in range(n)]
    return y, p, groups, ids


@pytest.fixture(scope="module")
def unbiased():
    y, p, groups, ids = make_audit_data(seed=0)
    return y, p, groups, audit_subgroups(y, p, THRESHOLD, groups, ids, n_boot=N_BOOT, seed=1)


@pytest.fixture(scope="module")
def biased():
    y, p, groups, ids = make_audit_data(seed=0, uninformative="C")
    return audit_subgroups(y, p, THRESHOLD, groups, ids, n_boot=N_BOOT, seed=1)


def test_unbiased_predictions_flag_no_group(unbiased):
    *_, audit = unbiased
    assert audit.flags == ()
    assert audit.attributes == ("sex", "race", "age_band", "sex x race", "sex x age_band", "race x age_band")


def test_group_metrics_equal_independent_computation(unbiased):
    y, p, groups, audit = unbiased
    rows = (groups["race"] == "B").to_numpy()
    yb, pb = y[rows], p[rows]
    g = audit.group("race", "B")
    assert g.status == "scored" and g.n == rows.sum() and g.n_patients == rows.sum()
    auroc = np.mean([roc_auc_score(yb[:, k], pb[:, k]) for k in range(3)])
    tn, fp, fn, tp = confusion_matrix(yb.ravel(), (pb >= THRESHOLD).ravel().astype(int)).ravel()
    # ECE by hand: 10 equal-width bins, upper edges closed
    flat_y, flat_p = yb.ravel(), pb.ravel()
    b = np.clip(np.ceil(flat_p * 10).astype(int) - 1, 0, 9)
    ece = (
        sum(abs(flat_y[b == i].mean() - flat_p[b == i].mean()) * (b == i).sum() for i in range(10) if (b == i).any())
        / flat_y.size
    )
    expected = {"auroc": auroc, "tpr": tp / (tp + fn), "fpr": fp / (fp + tn), "ppv": tp / (tp + fp), "ece": ece}
    ref = audit.group("race", "A")
    assert ref.status == "reference" and audit.reference("race") == "A"  # A is the largest race group
    for name, value in expected.items():
        m = g.metric(name)
        assert m.value == pytest.approx(value)
        assert m.reference_value == pytest.approx(ref.metric(name).value)
        assert m.difference == pytest.approx(value - m.reference_value)
        assert m.ratio == pytest.approx(value / m.reference_value)
        if name != "ece":  # ECE is biased upward under resampling: its interval may sit above a small value
            assert m.ci[0] <= m.value <= m.ci[1]
            assert m.difference_ci[0] <= m.difference <= m.difference_ci[1]


def test_too_small_group_is_reported_not_scored(unbiased):
    *_, audit = unbiased
    tiny = audit.group("race", "D")
    assert tiny.status == "too small" and tiny.metrics == () and tiny.n == 12
    assert all(f.group != "D" for f in audit.flags)
    assert audit.group("sex x race", "female / D").status == "too small"


def test_uninformative_group_is_flagged(biased):
    flagged = {(f.attribute, f.group, f.metric) for f in biased.flags}
    assert ("race", "C", "auroc") in flagged
    assert {g for a, g, _ in flagged if a == "race"} == {"C"}
    assert not any(a in ("sex", "age_band", "sex x age_band") for a, _, _ in flagged)
    flag = next(f for f in biased.flags if (f.attribute, f.group, f.metric) == ("race", "C", "auroc"))
    assert flag.value == pytest.approx(0.5, abs=0.06) and flag.ratio_ci[1] < 0.8
    assert "ratio" in flag.reason and flag.difference_ci[1] < -0.1
    # intersections containing C carry the same problem
    assert ("sex x race", "female / C", "auroc") in flagged


def test_audit_result_is_json_able(biased):
    data = json.loads(json.dumps(biased.to_dict(), allow_nan=False))
    assert data["flags"] and data["min_group_size"] == 30 and data["ratio_band"] == [0.8, 1.25]
    assert {m["metric"] for m in data["groups"][0]["metrics"]} == set(AUDIT_METRICS)


def test_named_reference_patients_and_operating_points():
    y, p, groups, ids = make_audit_data(seed=3, n=600, tiny=0)
    ids = [f"pt{i // 2}" for i in range(600)]  # two studies per patient
    points = OperatingPoints(("a", "b", "c"), (0.2, 0.3, 0.4), "given")
    audit = audit_subgroups(
        y, p, points, groups[["race"]], ids, reference={"race": "B"}, n_boot=30, seed=0, min_group_size=40
    )
    assert audit.reference("race") == "B" and audit.thresholds == (0.2, 0.3, 0.4) and audit.names == ("a", "b", "c")
    g = audit.group("race", "A")
    assert g.n_patients == len({ids[i] for i in np.flatnonzero(groups["race"] == "A")})
    assert audit.attributes == ("race",)


def test_bad_settings_are_config_errors():
    y, p, groups, ids = make_audit_data(seed=4, n=200, tiny=5)
    with pytest.raises(ConfigError):
        audit_subgroups(y, p, 0.5, groups, ids, reference={"race": "Z"}, n_boot=5)
    with pytest.raises(ConfigError):
        audit_subgroups(y, p, 0.5, groups, ids, reference={"race": "D"}, n_boot=5)  # below min size
    with pytest.raises(ConfigError):
        audit_subgroups(y, p, 0.5, groups, ids, reference={"height": "A"}, n_boot=5)
    with pytest.raises(ConfigError):
        audit_subgroups(y, p, 0.5, groups, ids, reference="smallest", n_boot=5)


def test_attribute_without_big_enough_group_is_an_issue():
    y, p, groups, ids = make_audit_data(seed=5, n=100, tiny=0)
    audit = audit_subgroups(y, p, 0.5, groups[["sex"]], ids, min_group_size=80, n_boot=5)
    assert all(g.status == "too small" for g in audit.groups) and audit.reference("sex") is None
    assert len(audit.issues) == 1 and "sex" in audit.issues[0].where


def test_missing_attribute_values_form_an_unknown_group():
    y, p, groups, ids = make_audit_data(seed=6, n=200, tiny=0)
    sex = groups["sex"].astype(object)
    sex[:50] = None
    audit = audit_subgroups(y, p, 0.5, pd.DataFrame({"sex": sex}), ids, intersections=False, n_boot=5)
    unknown = audit.group("sex", "unknown")
    assert unknown.n == 50 and unknown.status == "scored"
    assert sum(g.n for g in audit.groups) == 200


def rare_false_positives(group_fp: int, n: int = 60) -> tuple:
    """One diagnosis, a reference group A (200 patients) and a group B (n); every positive is found. A has 12
    false positives among 150 negatives (8%), B `group_fp` among its n negatives; B has 40 positives too."""
    y = np.r_[np.ones(50), np.zeros(150), np.ones(40), np.zeros(n)].astype(int)[:, None]
    pred = np.r_[np.ones(50), np.ones(12), np.zeros(138), np.ones(40), np.ones(group_fp), np.zeros(n - group_fp)]
    p = np.where(pred == 1, 0.9, 0.1)[:, None]
    groups = pd.DataFrame({"race": ["A"] * 200 + ["B"] * (40 + n)})
    return y, p, groups, [f"pt{i}" for i in range(len(y))]


def test_a_ratio_of_rare_events_is_judged_by_the_difference_rule_alone():
    # B: 2 false positives in 300 negatives (0.7%) against A's 8%. The ratio is far below 0.8, but it rests on 2 events.
    y, p, groups, ids = rare_false_positives(2, n=300)
    audit = audit_subgroups(y, p, 0.5, groups, ids, intersections=False, reference={"race": "A"}, n_boot=N_BOOT, seed=0)
    metrics = {m.metric: m for m in audit.group("race", "B").metrics}
    fpr = metrics["fpr"]
    rows = (groups["race"] == "B").to_numpy()
    tn, fp, fn, tp = confusion_matrix(y[rows, 0], p[rows, 0] >= 0.5).ravel()  # a single-label task's rates
    assert (fpr.events, fpr.value, metrics["tpr"].value, metrics["ppv"].value) == (
        fp,
        fp / (fp + tn),
        tp / (tp + fn),
        tp / (tp + fp),
    )
    assert (fp, fpr.value) == (2, 2 / 300)
    assert fpr.ratio_ci[1] < 0.8  # the bootstrap interval alone would flag it
    assert audit.flags == ()
    # with 8 false positives in 1,200 negatives (the same 0.7%), the ratio rule applies and flags it
    y, p, groups, ids = rare_false_positives(8, n=1200)
    audit = audit_subgroups(y, p, 0.5, groups, ids, intersections=False, reference={"race": "A"}, n_boot=N_BOOT, seed=0)
    assert [(f.group, f.metric) for f in audit.flags] == [("B", "fpr")] and "ratio" in audit.flags[0].reason
    assert {m.metric: m.events for m in audit.group("race", "B").metrics} == {
        "auroc": None,
        "tpr": 40,
        "fpr": 8,
        "ppv": 40,
        "ece": None,
    }
