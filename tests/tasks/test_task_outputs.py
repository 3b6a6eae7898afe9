"""A checkpoint of a task other than the default: its own label names, displays and codes, and its
own vital-sign channels in its own order, through the preprocessor, `predict --json`, the
RiskAssessment NDJSON of a batch study, the evaluation report and model card, and the interface.

Expected labels are computed here from the raw record JSON, not through medmm's readers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medmm.tasks import load_task, task_from_dict, task_to_dict

TASK_YAML = """
name: chest-two
description: Two chest labels and three vital-sign channels over the synthetic cohort.
index: {kind: manifest_column, column: study_time}
notes: {days: 365}
vitals: {hours: 4, step_minutes: 60}
images: {days: 0}
labels:
  - {name: lung_infection, display: Lung infection, snomed: ["233604007"], icd10: [J18]}
  - {name: cardiac_failure, display: Cardiac failure, icd10: [I50]}
channels:
  - {name: spo2, display: Oxygen saturation, loinc: ["59408-5", "2708-6"], unit: "%", low: 50, high: 100}
  - {name: heart_rate, display: Heart rate, loinc: ["8867-4"], unit: /min, low: 20, high: 300}
  - {name: resp_rate, display: Respiratory rate, loinc: ["9279-1"], unit: /min, low: 4, high: 80}
"""
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
MEDMM = [sys.executable, "-m", "medmm.cli"]


@pytest.fixture(scope="module")
def task():
    return task_from_dict(yaml.safe_load(TASK_YAML), source="chest-two.yaml")


@pytest.fixture(scope="module")
def checkpoint(task, tmp_path_factory) -> Path:
    from tests.batch.helpers import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("task-model") / "model", task=task)


def expected_labels(folder: Path) -> set[str]:
    """From record.json alone: lung_infection for SNOMED 233604007 or an ICD-10 code in J18;
    cardiac_failure for an ICD-10 code in I50; refuted and entered-in-error Conditions never count."""
    bundle = json.loads((folder / "record.json").read_text())
    found = set()
    for entry in bundle.get("entry", []):
        res = entry.get("resource", {})
        if res.get("resourceType") != "Condition":
            continue
        verification = [c.get("code") for c in (res.get("verificationStatus") or {}).get("coding", [])]
        if {"refuted", "entered-in-error"} & set(verification):
            continue
        for coding in (res.get("code") or {}).get("coding", []):
            code = str(coding.get("code", "")).upper().replace(".", "")
            if (
                coding.get("system") == SNOMED
                and code == "233604007"
                or coding.get("system") == ICD10
                and code.startswith("J18")
            ):
                found.add("lung_infection")
            if coding.get("system") == ICD10 and code.startswith("I50"):
                found.add("cardiac_failure")
    return found


def test_the_checkpoint_stores_the_task_and_the_model_follows_it(checkpoint, task):
    from medmm.predict import Predictor

    meta = json.loads((checkpoint / "config.json").read_text())
    assert meta["labels"] == ["lung_infection", "cardiac_failure"]
    assert task_from_dict(meta["task"], source="x") == task_from_dict(task_to_dict(task), source="x")
    predictor = Predictor.from_checkpoint(checkpoint)
    assert predictor.task.label_names == ("lung_infection", "cardiac_failure")
    assert predictor.task.channel_names == ("spo2", "heart_rate", "resp_rate")
    assert predictor.model.head[-1].out_features == 2 and predictor.model.encoders["vitals"].config.num_channels == 3


def test_labels_and_channels_follow_the_task(checkpoint, small_cohort):
    from medmm.io import load_study
    from medmm.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint)
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str, keep_default_na=False)
    positives = {"lung_infection": 0, "cardiac_failure": 0}
    for folder in manifest["folder"]:
        study = load_study(small_cohort / folder, window_hours=4.0, step_minutes=60.0)
        item = predictor.preprocessor(study)
        want = expected_labels(small_cohort / folder)
        got = {n for n, v in zip(predictor.task.label_names, item["labels"].tolist()) if v}
        assert got == want, folder
        for name in got:
            positives[name] += 1
        if study.vitals is not None and study.vitals.mask.any():
            for c, name in enumerate(("spo2", "heart_rate", "resp_rate")):
                src = study.vitals.channels.index(name)
                np.testing.assert_array_equal(item["vitals_observed"][:, c].numpy(), study.vitals.mask[:, src])
    assert all(n > 0 for n in positives.values()), positives  # both labels occur, so the comparison has teeth


def test_predict_json_names_the_tasks_labels(checkpoint, small_cohort):
    patient = sorted(p for p in small_cohort.iterdir() if p.is_dir())[0]
    proc = subprocess.run(
        MEDMM + ["predict", "--model", str(checkpoint), "--json", "--no-impression", str(patient)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.splitlines()[0])
    assert {(s["name"], s["display"]) for s in line["scores"]} == {
        ("lung_infection", "Lung infection"),
        ("cardiac_failure", "Cardiac failure"),
    }


def test_risk_assessments_carry_the_tasks_codes(checkpoint, small_cohort, tmp_path):
    from medmm.batch.plan import Outputs, RunOptions, StudyProtocol
    from medmm.batch.run import run_batch

    protocol = StudyProtocol(name="task", outputs=Outputs(max_new_tokens=3), run=RunOptions(batch_size=4, part_size=8))
    summary = run_batch(checkpoint, small_cohort, tmp_path / "out", protocol=protocol, progress=False, user="operator")
    lines = (tmp_path / "out" / "fhir" / "RiskAssessment.ndjson").read_text().splitlines()
    assert len(lines) == summary.done > 0
    for line in lines:
        outcomes = {p["outcome"]["text"]: p["outcome"]["coding"] for p in json.loads(line)["prediction"]}
        assert outcomes == {
            "Lung infection": [
                {"system": SNOMED, "code": "233604007", "display": "Lung infection"},
                {"system": ICD10, "code": "J18", "display": "Lung infection"},
            ],
            "Cardiac failure": [{"system": ICD10, "code": "I50", "display": "Cardiac failure"}],
        }


@pytest.mark.slow
def test_evaluation_report_and_card_use_the_tasks_names(checkpoint, tmp_path):
    import shutil

    from medmm.evaluate.run import run_evaluation
    from medmm.governance import intended_use, model_card
    from medmm.report.html import write_report
    from medmm.synth import SynthConfig, synthesize

    cohort = tmp_path / "cohort"
    synthesize(
        cohort,
        SynthConfig(
            patients=40, seed=5, image_size=32, workers=1, train_fraction=0.2, val_fraction=0.4, test_fraction=0.4
        ),
        progress=False,
    )
    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)  # evaluation writes the calibration into the checkpoint
    evaluation = run_evaluation(model, cohort, tmp_path / "eval", n_boot=50, progress=False, baselines=False)
    assert evaluation["model"]["task"] == "chest-two" and evaluation["model"]["channels"] == [
        "spo2",
        "heart_rate",
        "resp_rate",
    ]
    assert [d["name"] for d in evaluation["metrics"]["diagnoses"]] == ["lung_infection", "cardiac_failure"]
    html = write_report(tmp_path / "eval", evaluation, None, None).read_text()
    assert "Lung infection" in html and "Cardiac failure" in html
    assert "Pneumothorax" not in html and "Sepsis" not in html
    card = model_card(evaluation, None)
    assert "| Lung infection |" in card and "| Cardiac failure |" in card
    assert "Cardiac failure (ICD-10-CM I50)" in intended_use(evaluation)
    assert "Lung infection (SNOMED CT 233604007; ICD-10-CM J18)" in intended_use(evaluation)


def test_the_interface_offers_and_accepts_the_tasks_labels(checkpoint, small_cohort, tmp_path):
    from medmm.errors import ConfigError
    from tests.ui.conftest import full_patient, make_service, patient_files
    from ui.app import build_app

    service = make_service(checkpoint, tmp_path / "work")
    app = build_app(service)
    groups = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "medmm-named"]
    assert [tuple(c) for c in groups[0].choices] == [
        ("Lung infection", "lung_infection"),
        ("Cardiac failure", "cardiac_failure"),
    ]
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    final = list(service.analyse(case))[-1]
    assert {s.display for s in final.prediction.scores} == {"Lung infection", "Cardiac failure"}
    service.feedback(case.token, "disagree", ["cardiac_failure"])
    with pytest.raises(ConfigError, match="lung_infection, cardiac_failure"):
        service.feedback(case.token, "disagree", ["heart_failure"])


def test_default_task_checkpoints_without_a_stored_task_still_load(tmp_path):
    """A checkpoint written before tasks were stored (no "task" in config.json) holds the default task."""
    from medmm.checkpoint import _write_checksums
    from medmm.predict import Predictor
    from tests.batch.helpers import save_tiny_checkpoint

    folder = save_tiny_checkpoint(tmp_path / "model")
    meta = json.loads((folder / "config.json").read_text())
    del meta["task"]
    (folder / "config.json").write_text(json.dumps(meta))
    _write_checksums(folder)
    assert Predictor.from_checkpoint(folder).task == load_task("synthetic-cxr")
