"""Governance documents generated from a run (the report tests' run folder: evaluation + audit with a flagged group)."""

from __future__ import annotations

import json
import re

import pytest

from medmm.errors import EvaluationError
from medmm.governance import intended_use, load_run, model_card, risk_register, write_governance
from medmm.report.html import num, pct
from tests.report.run_folder import report_folder

pytestmark = pytest.mark.slow  # shares the report run folder (plots take a while to draw)
MITCHELL = (
    "Model details",
    "Intended use",
    "Factors",
    "Metrics",
    "Evaluation data",
    "Training data",
    "Quantitative analyses",
    "Ethical considerations",
    "Caveats and recommendations",
)
CONFIG = {
    "format": "medmm-checkpoint/1",
    "medmm_version": "0.1.0",
    "model_type": "llama",
    "labels": [],
    "config": {},
    "val_macro_auroc": 0.81,
    "epoch": 3,
}


@pytest.fixture(scope="module")
def report_run():
    return report_folder()


def test_model_card_has_every_section_filled_from_the_run(report_run):
    e, audit = report_run.evaluation, report_run.audit
    card = model_card(e, audit, CONFIG)
    headings = [line[3:] for line in card.splitlines() if line.startswith("## ")]
    assert headings == list(MITCHELL)
    assert "Research use only; not a medical device." in card
    assert "`0123456789abcdef`" in card and "12,345,678 parameters" in card
    macro = e["metrics"]["macro"]["auroc"]
    assert f"| Macro | {num(macro['value'])} ({num(macro['low'])}–{num(macro['high'])}) |" in card
    assert f"Conformal coverage {pct(e['summary']['coverage'])}" in card
    assert "val_macro_auroc = 0.810" in card and "epoch = 3" in card
    flag = next(f for f in audit["flags"] if f["attribute"] == "race")
    assert f"| race | Black or African American (2054-5) | {flag['metric']} | {num(flag['value'])}" in card
    assert "| all | 0.900 | 350 |" in card  # the ablation table
    assert "train split of the same cohort (300 patients)" in card
    assert (
        "- Input scope. Images: CR/DX projection radiographs, body part CHEST, view PA/AP" in card
    )  # the default scope
    row = {
        "inputs": "all",
        "model": 0.97,
        "baseline": 0.95,
        "baseline_variant": "early",
        "difference": {"difference": 0.02, "low": -0.004, "high": 0.041},
    }
    with_baselines = model_card({**e, "baselines": {"rows": [row]}}, audit, CONFIG)
    assert "| all | 0.970 | 0.950 (early) | 0.020 | -0.004 to 0.041 |" in with_baselines
    narrow = {**CONFIG, "config": {**CONFIG.get("config", {}), "scope": {"image": {"views": ["PA"]}}}}
    assert "view PA, greyscale" in model_card(e, audit, narrow)  # the checkpoint's own scope
    for table in card.split(
        "\n\n"
    ):  # every row of every table has as many cells as its header ('|' in text is escaped)
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert len({len(re.split(r"(?<!\\)\|", row)) for row in rows}) <= 1, table


def test_intended_use_and_risk_register(report_run):
    e, audit = report_run.evaluation, report_run.audit
    use = intended_use(e)
    assert "Research use only; not a medical device." in use and "no regulatory clearance" in use
    assert "Pneumonia (SNOMED CT 233604007; ICD-10-CM J18)" in use and "## Not intended for" in use
    register = risk_register(e, audit)
    rows = [line for line in register.splitlines() if line.startswith("| R") or line.startswith("| F")]
    found = [r for r in rows if r.startswith("| F")]
    assert len([r for r in rows if r.startswith("| R")]) == 10
    assert len(found) == len(audit["flags"])  # one risk per audit flag, coverage and calibration fine here
    assert any("Black or African American (2054-5)" in r for r in found)
    bad = dict(e, summary=dict(e["summary"], coverage=0.8, coverage_target=0.9, ece_after=0.2))
    extra = [line for line in risk_register(bad, None).splitlines() if line.startswith("| F")]
    assert [r.split(" | ")[1] for r in extra] == ["Conformal under-coverage", "Poor calibration"]


def test_write_governance_and_load_run(report_run, tmp_path):
    evaluation, audit = load_run(report_run.out)
    assert evaluation["summary"] == report_run.evaluation["summary"] and audit.to_json() == report_run.audit
    paths = write_governance(tmp_path / "gov", evaluation, audit, CONFIG)
    assert [p.name for p in paths] == ["model_card.md", "intended_use.md", "risk_register.md"]
    assert paths[0].read_text() == model_card(evaluation, audit, CONFIG)
    (tmp_path / "run").mkdir()
    with pytest.raises(EvaluationError, match="evaluation.json"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "evaluation.json").write_text(json.dumps(evaluation))
    assert load_run(tmp_path / "run")[1] is None


@pytest.mark.slow
def test_the_documented_regeneration_command_writes_every_document(tmp_path, capsys):
    """`python -m medmm.governance` on an untrained tiny checkpoint (wiring only; see tests/evaluate/tiny_run.py)."""
    from medmm.governance import main
    from tests.evaluate.tiny_run import tiny_run

    model_dir, cohort_dir = tiny_run()
    audit_dir, gov = tmp_path / "audit", tmp_path / "gov"
    main(
        [
            "--model",
            str(model_dir),
            "--cohort",
            str(cohort_dir),
            "--audit-dir",
            str(audit_dir),
            "--out",
            str(gov),
            "--n-boot",
            "20",
        ]
    )
    expected = [audit_dir / "report.html"] + [gov / n for n in ("model_card.md", "intended_use.md", "risk_register.md")]
    assert capsys.readouterr().out.split() == [str(p) for p in expected] and all(p.is_file() for p in expected)
    evaluation, audit = load_run(tmp_path / "audit")
    assert audit is not None and audit.groups_scored == 0  # 24 test cases: every group below 30 patients
    card = (tmp_path / "gov" / "model_card.md").read_text()
    assert f"`{evaluation['model']['id']}`" in card and "0 groups scored" in card
    assert (
        json.loads((model_dir / "calibration.json").read_text())["temperature"]
        == evaluation["calibration"]["temperature"]
    )


def test_from_run_keeps_the_json_and_renders_the_pages_again(report_run, tmp_path):
    """The HTML is not kept in git: `--from-run` copies the JSON and plots and renders report.html and audit.html from them."""
    from medmm.governance import from_run

    target, gov = tmp_path / "audits" / "default", tmp_path / "gov"
    paths = from_run(report_run.out, tmp_path / "no-model", target, gov)
    assert [p.name for p in paths] == [
        "evaluation.json",
        "audit.json",
        "report.html",
        "audit.html",
        "model_card.md",
        "intended_use.md",
        "risk_register.md",
    ]
    assert json.loads((target / "evaluation.json").read_text()) == report_run.evaluation
    report = (target / "report.html").read_text()
    assert "data:image/png;base64," in report  # the plots, copied beside the JSON, are embedded again
    assert report_run.evaluation["model"]["id"] in report and "Fairness audit" in (target / "audit.html").read_text()
    again = from_run(target, tmp_path / "no-model", target, gov)  # the kept JSON alone renders the pages
    assert [p.name for p in again][:2] == ["report.html", "audit.html"]
