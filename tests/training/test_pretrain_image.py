"""Image pretraining recipe: its loss falls, it keeps the best encoder by validation, a resumed run
ends where an uninterrupted one does, and stage 1 starts from (and keeps, when frozen) its encoder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medmm.encoders.image import ImageEncoder
from medmm.errors import CheckpointError
from training import align, pretrain_image


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, recipe_config, one_thread) -> Path:
    out = tmp_path_factory.mktemp("pretrain-image") / "run"
    with one_thread():
        pretrain_image.run(
            recipe_config(out, "recipe=pretrain_image", "train.epochs=4", "train.max_steps=null", "train.lr=0.01")
        )
    return out


def test_loss_falls_and_the_best_epoch_is_kept(image_run, recipe_config):
    log = rows(image_run)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    per_epoch = log[0]["step"]
    assert per_epoch >= 2 and [r["step"] for r in log] == [per_epoch * e for e in (1, 2, 3, 4)]
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[-1]["lr"] == 0.0
    meta = json.loads((image_run / "best" / "image_encoder.json").read_text())
    best = max(log, key=lambda r: r["val_finding_auroc"])
    assert meta["epoch"] == best["epoch"]  # the first epoch of the best score
    assert meta["val_finding_auroc"] == best["val_finding_auroc"]
    cfg = recipe_config(image_run)
    assert meta["config"] == json.loads(json.dumps(dataclasses.asdict(cfg.model.image)))


def test_resume_is_exact_for_the_same_schedule(tmp_path, recipe_config, image_run):
    out = tmp_path / "run"
    common = ("recipe=pretrain_image", "train.lr=0.01")
    total = rows(image_run)[-1]["step"]  # the uninterrupted run's schedule length
    pretrain_image.run(recipe_config(out, *common, f"train.max_steps={total}", "train.epochs=2"))  # stops after epoch 2
    assert len(rows(out)) == 2
    pretrain_image.run(recipe_config(out, *common, f"train.max_steps={total}", "train.epochs=4"))
    a, b = load_file(str(image_run / "last" / "model.safetensors")), load_file(str(out / "last" / "model.safetensors"))
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, unequal[:3]
    assert rows(out) == rows(image_run)


def test_stage_one_starts_from_the_encoder_and_keeps_it_frozen(tmp_path, recipe_config, image_run):
    out = tmp_path / "align"
    align.run(
        recipe_config(
            out, f"image_init={image_run / 'best'}", "model.image.frozen=true", "train.max_steps=3", "train.epochs=1"
        )
    )
    pretrained = load_file(str(image_run / "best" / "image_encoder.safetensors"))
    aligned = load_file(str(out / "best" / "model.safetensors"))
    for name, value in pretrained.items():
        assert torch.equal(aligned[f"encoders.image.{name}"], value), name  # weights and batch-norm statistics


def test_stage_one_refuses_an_encoder_of_another_shape(tmp_path, recipe_config, image_run):
    with pytest.raises(CheckpointError, match="dim differ"):
        align.run(
            recipe_config(
                tmp_path / "align", f"image_init={image_run / 'best'}", "model.image.dim=24", "train.max_steps=1"
            )
        )


def test_the_pretrained_encoder_loads_on_its_own(image_run, recipe_config):
    from medmm.train.image_pretrain import load_image_encoder

    encoder = ImageEncoder(recipe_config(image_run).model.image)
    assert load_image_encoder(encoder, image_run / "best")["epoch"] >= 1
