"""Label words in tasks: how text speaks of a label comes from the task, and no module outside the task
files and the synthetic generator names a diagnosis."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from medmm.checkpoint import with_shipped_words
from medmm.errors import ConfigError
from medmm.evaluate.verifier import PredictionView, verify_impression
from medmm.grounding.findings import IMAGE, finding_for
from medmm.grounding.questions import LIKELIHOOD, recognise
from medmm.lm.prompts import evidence_table, impression_text, qa_pairs
from medmm.tasks import LabelWords, default_vocabulary, load_task, task_from_dict, task_to_dict
from tests.evaluate.test_verifier import with_image
from tests.grounding.helpers import study

CXR_NAMES = ("pneumonia", "heart_failure", "pleural_effusion", "pneumothorax", "sepsis")


def lung_task():
    data = task_to_dict(load_task("acute-respiratory-infection"))
    data["name"] = "lung"
    data["labels"] = [
        {
            "name": "lung_infection",
            "display": "Lung infection",
            "snomed": ["233604007"],
            "words": {
                "synonyms": ["chest infection"],
                "evidence": {"image": "air space shadowing", "vitals": "fever", "notes": "crackles"},
                "image_findings": ["air space shadowing"],
                "image_terms": ["shadowing"],
            },
        },
        {"name": "asthma", "display": "Asthma", "snomed": ["195967001"]},
    ]
    return task_from_dict(data, "test")


def test_the_default_tasks_words_are_the_synthetic_cohorts():
    v = default_vocabulary()
    assert tuple(v) == CXR_NAMES
    assert v.evidence["pneumonia"] == {
        "image": "focal consolidation",
        "vitals": "fever and tachypnoea",
        "notes": "productive cough and crackles",
    }
    assert (
        "image" not in v.evidence["sepsis"] and v.evidence["sepsis"]["vitals"] == "fever, tachycardia and hypotension"
    )
    assert v.question_words["heart_failure"] == ("heart failure", "cardiac failure", "chf", "congestive", "hf")
    assert v.image_words["blunted costophrenic angle"] == "pleural_effusion"
    assert dict(v.image_terms) == {
        "consolidation": "pneumonia",
        "cardiomegaly": "heart_failure",
        "costophrenic": "pleural_effusion",
        "pleural line": "pneumothorax",
    }


def test_words_round_trip_and_bad_words_are_refused(tmp_path):
    task = lung_task()
    assert task_from_dict(task_to_dict(task), "test") == task
    assert task.labels[1].words == LabelWords()
    for change, where in (
        (lambda d: d["labels"][0]["words"].update(colour="red"), "labels[0].words"),
        (lambda d: d["labels"][0]["words"]["evidence"].update(audio="wheeze"), "labels[0].words.evidence"),
        (lambda d: d["labels"][0]["words"].update(synonyms="chest infection"), "labels[0].words.synonyms"),
    ):
        data = task_to_dict(task)
        change(data)
        with pytest.raises(ConfigError) as err:
            task_from_dict(data, "bad.yaml")
        assert where in str(err.value)


def test_text_takes_a_tasks_own_words():
    task = lung_task()
    v = task.displays
    assert evidence_table(v) == {
        "lung_infection": {"image": "air space shadowing", "vitals": "fever", "notes": "crackles"}
    }
    text = impression_text(["lung_infection"], {"lung_infection": ("vitals", "notes")}, displays=v)
    assert text == "lung infection (fever; crackles)."
    pairs = {p.question: p.answer for p in qa_pairs(["lung_infection"], {"lung_infection": ("notes",)}, displays=v)}
    assert pairs["What supports lung infection?"] == "Crackles in the notes."
    assert pairs["Is there asthma?"] == "No, asthma is unlikely."
    q = recognise("Could this be a chest infection?", v)
    assert (q.kind, q.diagnosis) == (LIKELIHOOD, "lung_infection")
    assert recognise("Could this be a chest infection?").diagnosis == "pneumonia"  # the default task's synonym
    assert recognise("Is there pneumonia?", v).diagnosis is None  # not a label of this task
    assert finding_for("air space shadowing", v.image_words) == finding_for("Air space shadowing.", v.image_words)
    assert finding_for("air space shadowing", v.image_words).kind == IMAGE
    assert finding_for("air space shadowing", v.image_words).diagnosis == "lung_infection"
    assert finding_for("focal consolidation", v.image_words) is None


def test_the_verifier_reads_radiograph_claims_by_the_tasks_terms():
    task = lung_task()
    p, cut = {"lung_infection": 0.9, "asthma": 0.1}, {"lung_infection": 0.5, "asthma": 0.5}
    view = PredictionView(p, cut, (), task.displays.lower, task.displays.image_terms)
    truth = {"evidence": {"lung_infection": {"modalities": ["image"]}}}
    found = {
        v.text: v.verdict
        for v in verify_impression("lung infection (air space shadowing).", with_image(study()), view, truth)
    }
    assert found == {"lung infection": "supported", "shadowing": "supported"}
    default = PredictionView(p, cut, (), task.displays.lower)  # the default task's terms know no shadowing
    assert {
        v.text for v in verify_impression("lung infection (air space shadowing).", with_image(study()), default, truth)
    } == {"lung infection"}


def test_a_task_stored_without_words_gets_the_shipped_ones_only_when_it_is_the_shipped_task():
    shipped = load_task("synthetic-cxr")
    data = task_to_dict(shipped)
    for label in data["labels"]:
        label.pop("words")
    bare = task_from_dict(data, "old checkpoint")
    assert bare.labels[0].words == LabelWords()
    assert with_shipped_words(bare).labels == shipped.labels
    data["labels"][0]["snomed"] = ["1234567"]  # not the shipped value sets: left as stored
    changed = task_from_dict(data, "old checkpoint")
    assert with_shipped_words(changed) == changed


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.add(id(first.value))
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_no_module_outside_the_tasks_and_the_synthetic_generator_names_a_diagnosis():
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("medmm", "ui", "training"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(("medmm/tasks/", "medmm/synth/")):
                continue
            for line, text in _literals(path):
                if any(name in text.lower() or name.replace("_", " ") in text.lower() for name in CXR_NAMES):
                    offenders.append(f"{rel}:{line}: {text[:60]!r}")
    assert offenders == []
    words = yaml.safe_load((root / "medmm" / "tasks" / "synthetic-cxr.yaml").read_text())
    assert [label["name"] for label in words["labels"]] == list(CXR_NAMES)
