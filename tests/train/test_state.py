"""save_state / load_state: a restored run continues exactly as the uninterrupted one would."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import get_cosine_schedule_with_warmup

from medmm.codes import VITAL_NAMES
from medmm.encoders.vitals import VitalsEncoderConfig
from medmm.errors import CheckpointError
from medmm.fusion.layers import FusionConfig
from medmm.lm.backbone import BackboneConfig
from medmm.model import ModelConfig, ResamplerConfig, build_model
from medmm.tasks import DEFAULT_TASK, load_task
from medmm.train.losses import diagnosis_loss
from medmm.train.recipe import TrainConfig, build_optimizer
from medmm.train.state import JsonlLogger, load_state, save_state

CONFIG = ModelConfig(
    modalities=("vitals",),
    vitals=VitalsEncoderConfig(dim=16, depth=1, heads=2),
    resampler=ResamplerConfig(num_latents=2, depth=1, heads=2),
    fusion=FusionConfig(every_n=1, heads=2),
    backbone=BackboneConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64),
    head_hidden=8,
    modality_dropout=0.5,  # every training step draws from torch's generator
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is faster, and exact step for step
    yield
    torch.set_num_threads(before)


def batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, steps, channels = 4, 6, len(VITAL_NAMES)
    return {
        "vitals": torch.randn(b, steps, channels, generator=g),
        "vitals_observed": torch.rand(b, steps, channels, generator=g) > 0.3,
        "vitals_present": torch.tensor([True, True, True, False]),
        "labels": (torch.rand(b, 5, generator=g) > 0.6).float(),
        "labels_known": torch.tensor([True, True, False, True]),
    }


def setup(seed: int, config: ModelConfig = CONFIG):
    torch.manual_seed(seed)
    task = load_task(DEFAULT_TASK)
    task = dataclasses.replace(task, labels=tuple(task.label(n) for n in config.diagnoses))
    model = build_model(config, task=task)
    optimizer = build_optimizer(model, TrainConfig(lr=0.01, lr_lm=0.01))
    scheduler = get_cosine_schedule_with_warmup(optimizer, 1, 10)
    return model, optimizer, scheduler


def train_step(model, optimizer, scheduler, step: int) -> None:
    model.train()
    b = batch(step)
    ids, attn = model.prompt_ids(["Impression:"] * 4, "cpu")
    out = model(b, ids, attn, torch.full((4,), ids.shape[1] - 1))
    diagnosis_loss(out.diagnosis_logits, b["labels"], b["labels_known"]).backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def draws(rng: random.Random) -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(())), rng.random())


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_round_trip_continues_identically(tmp_path):
    model, optimizer, scheduler = setup(0)
    batcher_rng = random.Random(5)
    for step in range(3):
        train_step(model, optimizer, scheduler, step)
    random.seed(11), np.random.seed(12), batcher_rng.random()
    progress = {"epoch": 1, "step": 3, "best_auroc": 0.5, "best_epoch": 1}
    save_state(tmp_path / "last", model, optimizer, scheduler, progress, {"batcher": batcher_rng})
    for step in range(3, 6):  # the uninterrupted run goes on
        train_step(model, optimizer, scheduler, step)
    expected_params, expected_draws = trainable(model), draws(batcher_rng)
    expected_lr = scheduler.get_last_lr()

    # a restarted run: the same frozen base, but its own steps taken and the generators moved on
    other, other_opt, other_sched = setup(0)
    for step in (7, 8):
        train_step(other, other_opt, other_sched, step)
    other_rng = random.Random(99)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    assert load_state(tmp_path / "last", other, other_opt, other_sched, {"batcher": other_rng}) == progress
    assert other_sched.last_epoch == 3
    for step in range(3, 6):
        train_step(other, other_opt, other_sched, step)
    got = trainable(other)
    assert got.keys() == expected_params.keys()
    assert all(torch.equal(got[n], expected_params[n]) for n in got)
    assert other_sched.get_last_lr() == expected_lr
    assert draws(other_rng) == expected_draws


def test_state_files_are_safetensors_and_json_only(tmp_path):
    model, optimizer, scheduler = setup(0)
    train_step(model, optimizer, scheduler, 0)
    save_state(tmp_path / "last", model, optimizer, scheduler, {"epoch": 1, "step": 1})
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    ]
    assert not (tmp_path / "last.tmp").exists()
    meta = json.loads((tmp_path / "last" / "state.json").read_text())
    assert meta["progress"] == {"epoch": 1, "step": 1}
    names = load_file(str(tmp_path / "last" / "model.safetensors")).keys()
    assert names == {n for n, p in model.named_parameters() if p.requires_grad} | {
        n for n in model.state_dict() if "running_" in n
    }
    assert not any(n.startswith("lm.") for n in names)  # the frozen base LM is rebuilt, not stored


def test_state_of_another_model_is_refused(tmp_path):
    model, optimizer, scheduler = setup(0)
    save_state(tmp_path / "last", model, optimizer, scheduler, {"epoch": 0, "step": 0})
    wider = setup(0, dataclasses.replace(CONFIG, head_hidden=12))  # same names, other shapes
    with pytest.raises(CheckpointError) as err:
        load_state(tmp_path / "last", *wider)
    assert "head." in str(err.value) and err.value.path.endswith("model.safetensors")
    fewer_outputs = setup(0, dataclasses.replace(CONFIG, diagnoses=CONFIG.diagnoses[:3]))
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "last", *fewer_outputs)
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "absent", model, optimizer, scheduler)


def test_logger_keeps_rows_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = JsonlLogger(path)
    for step in (5, 10, 15):
        logger.log(step, loss=torch.tensor(1.0 / step), epoch=step // 5)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"step": 5, "loss": pytest.approx(0.2), "epoch": 1.0}
    JsonlLogger(path, start_step=10).log(15, loss=0.5)  # resumed at step 10: the old row 15 goes
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10, 15]
    assert json.loads(path.read_text().splitlines()[-1])["loss"] == 0.5
    JsonlLogger(path)  # a fresh run in the same folder starts a fresh log
    assert path.read_text() == ""
