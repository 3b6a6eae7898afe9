"""evaluation.json read as a typed record: every field equals the raw JSON, and a missing section is named."""

from __future__ import annotations

import json
import math

import pytest

from medmm.errors import EvaluationError
from medmm.evaluate.document import Estimate, load_evaluation

DOC = {
    "model": {"id": "abc", "diagnoses": ["pneumonia", "sepsis"]},
    "cohort": {"name": "cohort"},
    "summary": {"macro_auroc": 0.9},
    "splits": {
        "test": {"split": "test", "cases": 10, "patients": 9, "unreadable": 1, "unlabelled": 0,
                 "positives": {"pneumonia": 3, "sepsis": 2}, "no_diagnosis": 5, "groups": {"sex": {"female": 6, "male": 4}}},
        "val": {"split": "val", "cases": 4, "positives": {"pneumonia": 1, "sepsis": 1}},
    },
    "metrics": {
        "macro": {"name": "macro", "auroc": {"value": 0.9, "low": 0.8, "high": 0.95}, "threshold": None},
        "diagnoses": [{"name": "pneumonia", "auroc": {"value": 0.91, "low": None, "high": 0.99}},
                      {"name": "sepsis", "auroc": {"value": 0.89, "low": 0.7, "high": 0.97}}],
    },
    "ablation": {"rows": [{"inputs": "image", "macro_auroc": None, "auroc": {"pneumonia": 0.7}}, {"inputs": "all", "macro_auroc": 0.9}]},
    "impression": {"cases": 10, "positives": 5, "names_true_top": 0.8, "names_all_true": 0.6, "contradicts_none": 0.9},
}  # fmt: skip


def test_the_record_equals_the_raw_json(tmp_path):
    (tmp_path / "evaluation.json").write_text(json.dumps(DOC))
    e = load_evaluation(tmp_path)
    assert e.document == DOC and e.model["id"] == "abc" and e.label_names == ["pneumonia", "sepsis"]
    assert (e.test.cases, e.test.patients, e.test.unreadable, e.test.positives, e.test.no_diagnosis) == (
        10,
        9,
        1,
        {"pneumonia": 3, "sepsis": 2},
        5,
    )
    assert e.test.groups == {"sex": {"female": 6, "male": 4}} and e.val.cases == 4 and e.val.patients == 4
    assert e.macro_auroc == Estimate(0.9, 0.8, 0.95) and set(e.macro) == {"auroc"}
    assert math.isnan(e.diagnoses["pneumonia"]["auroc"].low) and e.diagnoses["sepsis"]["auroc"].value == 0.89
    assert (
        math.isnan(e.subset_auroc["image"])
        and e.subset_auroc["all"] == 0.9
        and e.ablation[0].auroc == {"pneumonia": 0.7}
    )
    assert (e.impression.names_true_top, e.impression.contradicts_none) == (0.8, 0.9)
    assert e.grounding is None and e.baselines is None and e.latency is None
    assert load_evaluation(tmp_path / "evaluation.json").document == DOC  # the file itself


def test_a_missing_or_malformed_section_is_named(tmp_path):
    for broken, where in [
        ({k: v for k, v in DOC.items() if k != "summary"}, "summary"),
        ({**DOC, "splits": {"val": DOC["splits"]["val"]}}, "splits.test"),
        ({**DOC, "metrics": {"macro": DOC["metrics"]["macro"], "diagnoses": {}}}, "metrics.diagnoses"),
    ]:
        (tmp_path / "evaluation.json").write_text(json.dumps(broken))
        with pytest.raises(EvaluationError) as err:
            load_evaluation(tmp_path)
        assert err.value.where == where and err.value.path == str(tmp_path / "evaluation.json")
    with pytest.raises(EvaluationError, match="no evaluation.json"):
        load_evaluation(tmp_path / "nowhere")
    (tmp_path / "evaluation.json").write_text("[1, 2]")
    with pytest.raises(EvaluationError, match="not a JSON object"):
        load_evaluation(tmp_path)
