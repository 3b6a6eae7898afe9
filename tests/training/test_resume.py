"""Resume: one epoch, stop, then a second invocation that resumes from <out>/last ends exactly where
an uninterrupted two-epoch run ends: same tensors, optimizer state, schedule, RNGs and metrics."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from medmm.checkpoint import verify
from training import align


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_tensors(a: Path, b: Path) -> int:
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    unequal = [k for k in left if left[k].dtype != right[k].dtype or not torch.equal(left[k], right[k])]
    assert not unequal, f"{len(unequal)} tensor(s) differ in {a.name}, e.g. {unequal[:3]}"
    return len(left)


def test_resume_continues_from_the_saved_step_with_identical_state(tmp_path, recipe_config, align_run, caplog):
    out = tmp_path / "run"
    first = align.run(recipe_config(out, "train.epochs=1"))  # same max_steps, so the same schedule
    assert (first["epoch"], first["step"]) == (1, 5)
    assert [r["step"] for r in rows(out)] == [5]
    caplog.set_level(logging.INFO, logger="medmm.train")

    second = align.run(recipe_config(out, "train.epochs=2"))
    assert "resumed from" in caplog.text
    assert (second["epoch"], second["step"]) == (2, 10)
    assert second == json.loads((align_run / "last" / "state.json").read_text())["progress"]

    # the resumed run's log continues the first one's and matches the uninterrupted run row for row
    assert [(r["step"], r["epoch"]) for r in rows(out)] == [(5, 1), (10, 2)]
    assert rows(out) == rows(align_run)

    n_model = assert_same_tensors(align_run / "last" / "model.safetensors", out / "last" / "model.safetensors")
    n_opt = assert_same_tensors(align_run / "last" / "optimizer.safetensors", out / "last" / "optimizer.safetensors")
    assert n_model > 0 and n_opt > 0
    assert_same_tensors(align_run / "last" / "rng.safetensors", out / "last" / "rng.safetensors")
    state_a = json.loads((align_run / "last" / "state.json").read_text())
    state_b = json.loads((out / "last" / "state.json").read_text())
    for key in (
        "progress",
        "optimizer_groups",
        "optimizer_scalars",
        "scheduler",
        "python_random",
        "numpy_random",
        "rngs",
    ):
        assert state_a[key] == state_b[key], key

    # the best checkpoint is the same one, complete and loadable
    meta_a, meta_b = verify(align_run / "best"), verify(out / "best")
    assert (meta_a["epoch"], meta_a["val_macro_auroc"]) == (meta_b["epoch"], meta_b["val_macro_auroc"])
    assert_same_tensors(align_run / "best" / "model.safetensors", out / "best" / "model.safetensors")


def test_a_finished_run_resumed_again_does_nothing_more(tmp_path, recipe_config, align_run):
    out = tmp_path / "copy"
    shutil.copytree(align_run, out)
    before = (out / "last" / "model.safetensors").read_bytes()
    progress = align.run(recipe_config(out, "train.epochs=2"))
    assert (progress["epoch"], progress["step"]) == (2, 10)
    assert (out / "last" / "model.safetensors").read_bytes() == before
    assert rows(out) == rows(align_run)
