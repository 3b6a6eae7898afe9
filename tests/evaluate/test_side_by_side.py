"""Models side by side: figures read back from each evaluation.json, and other test splits refused."""

from __future__ import annotations

import copy
import json

import pytest

from medmm.errors import EvaluationError
from medmm.evaluate.side_by_side import compare_evaluations
from medmm.report.html import write_side_by_side

COHORT = {
    "name": "cohort",
    "patients": 10,
    "splits": {"test": 4, "train": 6},
    "synthetic": {"seed": 0},
    "test": {"cases": 4, "positives": {"pneumonia": 2}},
}


def evaluation(auroc: float, source: str | None, quotes: float, seconds: float) -> dict:
    return {
        "cohort": COHORT,
        "model": {"id": f"id-{source}", "parameters": 1000, "backbone": {"source": source}},
        "summary": {},
        "splits": {"test": {"split": "test", "cases": 4, "positives": {"pneumonia": 2}}},
        "metrics": {"macro": {"auroc": {"value": auroc, "low": auroc - 0.05, "high": auroc + 0.02}}, "diagnoses": []},
        "ablation": {
            "rows": [{"inputs": "image", "macro_auroc": auroc - 0.1}, {"inputs": "all", "macro_auroc": auroc}]
        },
        "impression": {
            "cases": 4,
            "positives": 2,
            "names_true_top": 0.9,
            "names_all_true": 0.8,
            "contradicts_none": 0.95,
            "raw": {"names_true_top": 0.85},
        },
        "grounding": {
            "impressions": {"raw": {"with_contradicted_claim": 0.3}, "grounded": {"with_contradicted_claim": 0.0}},
            "questions": {
                "values": {
                    "questions": 12,
                    "with_reading": 10,
                    "quotes_value": quotes,
                    "wrong_number": 0.1,
                    "declines": 1.0,
                },
                "free_text": {"lm": {"with_contradicted_claim": 0.4}},
            },
        },
        "latency": {"median_seconds": seconds, "device": "cpu", "threads": 2},
    }


def write(folder, doc):
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(doc))
    return folder


def test_each_model_is_a_column_of_its_own_figures(tmp_path):
    a = write(tmp_path / "embedded" / "evaluation", evaluation(0.97, None, 0.2, 0.5))
    b = write(tmp_path / "smollm2", evaluation(0.95, "smollm2-135m", 0.9, 2.5))
    doc = compare_evaluations([a, b])
    assert [m["name"] for m in doc["models"]] == ["embedded", "smollm2"]  # an evaluation folder is named by its parent
    first, second = doc["models"]
    assert (first["backbone"], second["backbone"]) == ("embedded", "smollm2-135m")
    assert (first["macro_auroc"], first["macro_auroc_low"], second["subsets"]["image"]) == (
        0.97,
        0.97 - 0.05,
        0.95 - 0.1,
    )
    assert (first["quotes_value"], second["quotes_value"], second["latency_median_seconds"]) == (0.2, 0.9, 2.5)
    assert doc["subsets"] == ["image", "all"]
    page = write_side_by_side(tmp_path / "out", doc)
    html = page.read_text()
    assert "smollm2-135m" in html and "90.0%" in html and "data:image/png;base64," in html
    assert json.loads((tmp_path / "out" / "side_by_side.json").read_text())["models"][1]["quotes_value"] == 0.9


def test_another_test_split_or_a_missing_evaluation_is_refused(tmp_path):
    a = write(tmp_path / "a", evaluation(0.97, None, 0.2, 0.5))
    other = evaluation(0.95, "smollm2-135m", 0.9, 2.5)
    other["cohort"] = copy.deepcopy(COHORT)
    other["cohort"]["test"]["positives"] = {"pneumonia": 3}
    b = write(tmp_path / "b", other)
    with pytest.raises(EvaluationError, match="positives differ"):
        compare_evaluations([a, b])
    with pytest.raises(EvaluationError, match="no evaluation.json"):
        compare_evaluations([a, tmp_path / "missing"])
    with pytest.raises(EvaluationError, match="at least two"):
        compare_evaluations([a])
    with pytest.raises(EvaluationError, match="1 name"):
        compare_evaluations([a, a], ["only"])


def test_the_compare_command_writes_the_page_and_refuses_other_splits(tmp_path, capsys):
    from medmm.cli import main

    a = write(tmp_path / "a", evaluation(0.97, None, 0.2, 0.5))
    b = write(tmp_path / "b", evaluation(0.95, "smollm2-135m", 0.9, 2.5))
    main(
        ["compare", str(a), str(b), "--name", "embedded", "--name", "smollm2", "--out", str(tmp_path / "out"), "--json"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["models"]] == ["embedded", "smollm2"] and (
        tmp_path / "out" / "side_by_side.html"
    ).is_file()
    other = evaluation(0.9, None, 0.1, 0.1)
    other["cohort"] = {**COHORT, "name": "another"}
    c = write(tmp_path / "c", other)
    with pytest.raises(SystemExit) as refused:
        main(["compare", str(a), str(c), "--out", str(tmp_path / "out2")])
    assert refused.value.code != 0 and "name differ" in capsys.readouterr().err
