"""audit.json read as a typed record: it round-trips, every field equals the raw JSON, and a malformed field is named."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

from medmm.errors import EvaluationError
from medmm.evaluate.audit_document import load_audit
from medmm.evaluate.fairness import AuditResult, audit_subgroups
from medmm.evaluate.pipeline import audit_from_scores
from medmm.evaluate.scores import SplitScores
from medmm.synth.diagnoses import DIAGNOSIS_NAMES

CONTEXT = {
    "model": {"id": "0123456789abcdef", "strata": {"attributes": ["sex", "race"], "age_bands": [18, 65]}},
    "cohort": {"name": "toy", "patients": 400},
}


def toy_scores(split: str, n: int, seed: int) -> SplitScores:
    """Scores with signal for everyone but race B, whose positives look like negatives (so the audit flags it)."""
    rng = np.random.default_rng(seed)
    attributes = pd.DataFrame(
        {"sex": rng.choice(["female", "male"], n), "race": rng.choice(["A", "B"], n, p=[0.6, 0.4])}
    )
    labels = (rng.random((n, len(DIAGNOSIS_NAMES))) < 0.3).astype(int)
    signal = np.where((attributes["race"] == "B").to_numpy()[:, None], 0.0, 2.0)
    logits = signal * (2 * labels - 1) - 1.0 + rng.normal(0, 1.5, labels.shape)  # false positives in every group
    return SplitScores(split, DIAGNOSIS_NAMES, tuple(f"{split}{i}" for i in range(n)), labels, logits, attributes)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(folder, raw audit.json) of an audit written by the evaluation pipeline."""
    out = tmp_path_factory.mktemp("audit")
    audit_from_scores(
        toy_scores("val", 200, 1),
        toy_scores("test", 240, 2),
        out,
        n_boot=40,
        min_group_size=20,
        plots=False,
        context=CONTEXT,
    )
    return out, json.loads((out / "audit.json").read_text())


def test_a_computed_audit_round_trips_through_its_json():
    s = toy_scores("test", 240, 3)
    result = audit_subgroups(
        s.labels, s.probabilities(1.0), 0.4, s.attributes, s.patient_ids, min_group_size=20, n_boot=30
    )
    assert result.flags and result.context is None
    # NaN never equals itself: this toy has no undefined figure, so the records can be compared whole
    assert not any(math.isnan(v) for g in result.groups for m in g.metrics for v in (m.value, m.ratio, *m.ratio_ci))
    document = json.loads(json.dumps(result.to_json(), allow_nan=False))  # strict JSON
    back = AuditResult.from_json(document)
    assert back == result and back.to_json() == document


def test_the_record_equals_the_raw_json(written):
    folder, raw = written
    audit = load_audit(folder)
    assert audit.to_json() == raw and AuditResult.from_json(raw, path=folder / "audit.json") == audit
    assert load_audit(folder / "audit.json") == audit  # the file itself
    assert list(audit.attributes) == raw["attributes"] and dict(zip(audit.names, audit.thresholds)) == raw["thresholds"]
    settings = raw["settings"]
    assert (audit.min_group_size, audit.n_boot, audit.seed, audit.n_bins) == (
        settings["min_group_size"], settings["n_boot"], settings["seed"], settings["n_bins"],
    )  # fmt: skip
    assert (list(audit.ratio_band), audit.bound_difference, audit.confidence, audit.intersections) == (
        settings["ratio_band"], settings["bound_difference"], settings["confidence"], settings["intersections"],
    )  # fmt: skip
    assert len(audit.groups) == len(raw["groups"])
    for g, r in zip(audit.groups, raw["groups"]):
        assert (g.attribute, g.group, g.n, g.n_patients, g.status) == (
            r["attribute"], r["group"], r["n"], r["n_patients"], r["status"],
        )  # fmt: skip
        for m, rm in zip(g.metrics, r["metrics"], strict=True):
            assert (m.metric, m.skipped_resamples, m.events) == (rm["metric"], rm["skipped_resamples"], rm["events"])
            for got, want in [(m.value, rm["value"]), (m.ratio, rm["ratio"]), (m.difference, rm["difference"])]:
                assert got == want or (math.isnan(got) and want is None)
            assert [None if math.isnan(v) else v for v in m.ci] == rm["ci"]
    assert raw["flags"] and len(audit.flags) == len(raw["flags"])
    for f, rf in zip(audit.flags, raw["flags"]):
        assert (f.attribute, f.group, f.metric, f.value, f.reference_group, f.reason) == (
            rf["attribute"], rf["group"], rf["metric"], rf["value"], rf["reference_group"], rf["reason"],
        )  # fmt: skip
        assert (list(f.ci), list(f.ratio_ci), list(f.difference_ci)) == (
            rf["interval"], rf["ratio_interval"], rf["difference_interval"],
        )  # fmt: skip
    assert {a: audit.reference(a) for a in audit.attributes} == raw["references"]
    assert list(audit.flagged_groups) == raw["summary"]["flagged_groups"] and "race=B" in audit.flagged_groups
    assert (audit.groups_scored, audit.groups_too_small) == (
        raw["summary"]["groups_scored"], raw["summary"]["groups_too_small"],
    )  # fmt: skip
    assert [(i.source, i.where, i.message, i.kind) for i in audit.issues] == [
        (i["source"], i["where"], i["message"], i["kind"]) for i in raw["issues"]
    ]
    c = audit.context
    assert c.model_id == raw["model"]["id"] and c.strata_attributes == tuple(raw["model"]["strata"]["attributes"])
    assert c.age_bands == tuple(raw["model"]["strata"]["age_bands"]) and c.cohort_name == raw["cohort"]["name"]
    assert c.split_name == raw["split"]["split"] == "test" and c.split == raw["split"]
    assert (c.temperature, c.calibrated, c.thresholds_from, c.plots) == (
        raw["temperature"], raw["calibrated"], raw["thresholds_from"], raw["plots"],
    )  # fmt: skip
    assert (c.format, c.created, c.medmm_version, c.seconds) == (
        raw["format"], raw["created"], raw["medmm_version"], raw["seconds"],
    )  # fmt: skip


def test_undefined_figures_and_unrecorded_fields(written):
    _, raw = written
    doc = copy.deepcopy(raw)
    doc["groups"][0]["metrics"][0].update(value=None, ci=[None, 0.5])
    audit = AuditResult.from_json(doc)
    m = audit.groups[0].metrics[0]
    assert math.isnan(m.value) and math.isnan(m.ci[0]) and m.ci[1] == 0.5
    assert audit.to_json() == doc  # NaN is written as null again
    # a hand-written audit with the fields the readers need, and nothing else
    minimal = {
        "attributes": ["sex"],
        "settings": {"min_group_size": 30},
        "groups": [
            {"attribute": "sex", "group": "male", "n": 40, "status": "scored", "metrics": [{"metric": "auroc"}]}
        ],
        "flags": [{"attribute": "sex", "group": "male", "metric": "auroc", "reason": "why"}],
    }
    audit = AuditResult.from_json(minimal)
    assert audit.context is None and audit.groups[0].n_patients == 40 and audit.names == () and audit.issues == ()
    assert math.isnan(audit.groups[0].metrics[0].value) and audit.flags[0].reference_group is None
    assert not audit.intersections and math.isnan(audit.bound_difference)


@pytest.mark.parametrize(
    "break_it, where",
    [
        (lambda d: d.pop("groups"), "groups"),
        (lambda d: d.update(groups={"sex": []}), "groups"),
        (lambda d: d["groups"][2].update(n="40"), "groups[2].n"),
        (lambda d: d["groups"][1].pop("attribute"), "groups[1].attribute"),
        (lambda d: d["groups"][0].update(status="big"), "groups[0].status"),
        (lambda d: d["groups"][0]["metrics"][3].update(ci=[0.1]), "groups[0].metrics[3].ci"),
        (lambda d: d["groups"][0]["metrics"][1].update(value="high"), "groups[0].metrics[1].value"),
        (lambda d: d["flags"][0].pop("reason"), "flags[0].reason"),
        (lambda d: d["flags"].insert(0, "race=B"), "flags[0]"),
        (lambda d: d["settings"].pop("min_group_size"), "settings.min_group_size"),
        (lambda d: d["settings"].update(n_boot=True), "settings.n_boot"),
        (lambda d: d.update(attributes="sex"), "attributes"),
        (lambda d: d["thresholds"].update(sepsis="0.5"), "thresholds.sepsis"),
        (lambda d: d["model"]["strata"].update(attributes=[1]), "model.strata.attributes[0]"),
        (lambda d: d.update(cohort=["toy"]), "cohort"),
        (lambda d: d.update(calibrated="yes"), "calibrated"),
    ],
)
def test_a_malformed_field_is_named_with_the_file(written, tmp_path, break_it, where):
    _, raw = written
    doc = copy.deepcopy(raw)
    break_it(doc)
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(EvaluationError) as caught:
        load_audit(tmp_path)
    assert caught.value.path == str(path) and caught.value.where == where
    assert str(caught.value).startswith(f"{path}: {where}: ")
    with pytest.raises(EvaluationError) as caught:
        AuditResult.from_json(doc)  # no file given: audit.json is named
    assert caught.value.path == "audit.json" and caught.value.where == where


def test_a_file_that_is_not_an_audit_is_named(tmp_path):
    path = tmp_path / "audit.json"
    with pytest.raises(EvaluationError, match="no audit.json"):
        load_audit(tmp_path)
    for text, message in [("{not json", "audit file is not JSON"), ("[1, 2]", "expected a JSON object")]:
        path.write_text(text)
        with pytest.raises(EvaluationError, match=message) as caught:
            load_audit(tmp_path)
        assert caught.value.path == str(path)
