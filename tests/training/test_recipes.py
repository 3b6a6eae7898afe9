"""The recipes train: losses fall on a fixed batch, the best checkpoint is the model that scored
best, and stage 2 (QLoRA over a 4-bit base, LoRA+) starts from the stage-1 checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from medmm.cases import CaseSet
from medmm.checkpoint import load_checkpoint
from medmm.encoders.text import load_note_tokenizer
from medmm.io.cohort import Cohort
from medmm.lm.backbone import load_backbone
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt
from medmm.lm.text import lm_inputs
from medmm.model import build_model
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.train.data import TextBatcher, with_text_targets
from medmm.train.recipe import TrainConfig, build_optimizer
from medmm.transforms.study import StudyPreprocessor
from training import finetune, pretrain_lm


def metrics_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def case_set(cfg, model, split: str) -> CaseSet:
    preprocessor = StudyPreprocessor(cfg.model.preprocess, load_note_tokenizer(cfg.model.notes))
    cohort = Cohort.open(cfg.cohort).split(split)
    cases = CaseSet(
        cohort,
        preprocessor,
        cache_dir=Path(cfg.cohort) / ".cache",
        note_encoder=model.encoders["notes"],
        progress=False,
    )
    return with_text_targets(cases, preprocessor.task)


@torch.no_grad()
def fixed_batch_losses(model, batch) -> tuple[float, float]:
    """(diagnosis BCE over known-label rows, impression LM loss), written out here with torch.nn.functional."""
    model.eval()
    out = model(batch, batch["input_ids"], batch["attention_mask"], batch["pool_index"], batch["lm_labels"])
    known = batch["labels_known"].bool()
    diagnosis = F.binary_cross_entropy_with_logits(out.diagnosis_logits[known], batch["labels"][known].float())
    logits, targets = out.lm_logits[:, :-1], batch["lm_labels"][:, 1:]  # next-token prediction
    lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    return float(diagnosis), float(lm)


def test_align_loss_falls_on_a_fixed_batch(align_run, recipe_config):
    cfg = recipe_config(align_run)
    set_seed(cfg.train.seed)  # what the recipe does before building: the same initial model
    model = build_model(cfg.model)
    trained_lm = load_file(str(align_run / "best" / "lm" / "model.safetensors"))
    lm_state = model.lm.state_dict()
    assert trained_lm and all(
        torch.equal(value, lm_state[name]) for name, value in trained_lm.items()
    )  # frozen, same start

    train = case_set(cfg, model, "train")
    assert len(train) == 20 and not train.failed
    batch = TextBatcher(model.tokenizer, max_length=cfg.train.max_length)(train.items[:8])
    diag_before, lm_before = fixed_batch_losses(model, batch)
    model.load_state_dict(load_file(str(align_run / "last" / "model.safetensors")), strict=False)
    diag_after, lm_after = fixed_batch_losses(model, batch)
    assert diag_after < 0.85 * diag_before, (diag_before, diag_after)
    assert lm_after < lm_before, (lm_before, lm_after)


def test_align_logs_each_epoch_and_ends_the_schedule(align_run):
    rows = metrics_rows(align_run)
    assert [r["step"] for r in rows] == [5, 10]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["lr"] == 0.0  # the cosine schedule ends exactly at the last step
    for r in rows:  # lm_loss_weight 0.5, unimodal_loss_weight 0.3
        assert r["unimodal"] > 0 and r["loss"] == pytest.approx(
            r["diagnosis"] + 0.5 * r["lm"] + 0.3 * r["unimodal"], rel=1e-6
        )
    assert rows[1]["loss"] < rows[0]["loss"]


def test_best_checkpoint_loads_and_is_the_model_that_scored_best(align_run, recipe_config):
    meta = json.loads((align_run / "best" / "config.json").read_text())
    rows = metrics_rows(align_run)
    scores = [r["val_macro_auroc"] for r in rows]
    first_best = int(np.argmax(scores))  # ties keep the earlier epoch
    assert meta["epoch"] == rows[first_best]["epoch"]
    assert meta["val_macro_auroc"] == scores[first_best]

    model = load_checkpoint(align_run / "best")
    cfg = recipe_config(align_run)
    assert dataclasses.asdict(model.config) == dataclasses.asdict(cfg.model)
    val = case_set(cfg, model, "val")
    batch = TextBatcher(model.tokenizer)(val.items)
    with torch.no_grad():
        ids, attn = model.prompt_ids([IMPRESSION_PROMPT] * len(val), "cpu")
        logits = model(batch, ids, attn, torch.full((len(val),), ids.shape[1] - 1)).diagnosis_logits
    known = batch["labels_known"].bool()
    labels, probs = batch["labels"][known].numpy(), torch.sigmoid(logits[known]).numpy()
    per_label = [
        roc_auc_score(labels[:, k], probs[:, k]) for k in range(labels.shape[1]) if 0 < labels[:, k].sum() < len(labels)
    ]
    assert per_label and float(np.mean(per_label)) == pytest.approx(meta["val_macro_auroc"], abs=1e-9)


def lm_loss(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """Mean next-token cross-entropy over every token after BOS (what pretrain_lm optimises)."""
    batch = lm_inputs(tokenizer, [p for p, _ in pairs], [t for _, t in pairs], 64)
    labels = torch.where(batch.attention_mask.bool(), batch.input_ids, torch.full_like(batch.input_ids, -100))
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return float(
        F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    )


def test_pretrain_lm_loss_falls(tmp_path, recipe_config, cohort):
    cfg = recipe_config(tmp_path / "lm", "recipe=pretrain_lm", "train.max_steps=12", "train.batch_size=8")
    result = pretrain_lm.run(cfg)
    assert result["steps"] == 12 and Path(result["lm_dir"]) == tmp_path / "lm" / "lm"
    assert [r["step"] for r in metrics_rows(tmp_path / "lm")] == [12]

    pairs = pretrain_lm.target_texts(Cohort.open(cohort).split("train"))[:16]
    full = dataclasses.replace(
        cfg.model.backbone, finetune=dataclasses.replace(cfg.model.backbone.finetune, method="full")
    )
    set_seed(cfg.train.seed)
    before = load_backbone(full)
    after = load_backbone(full, weights_dir=result["lm_dir"])
    loss_before, loss_after = (
        lm_loss(before.model, before.tokenizer, pairs),
        lm_loss(after.model, after.tokenizer, pairs),
    )
    assert loss_before == pytest.approx(math.log(before.model.config.vocab_size), rel=0.05)  # untrained: near uniform
    assert loss_after < loss_before - 1.5, (loss_before, loss_after)


def test_pretrain_lm_guided_impression_pairs(cohort):
    """With the guide, each impression's prompt names the case's manifest labels (noise off), and nothing else changes."""
    split = Cohort.open(cohort).split("train")
    plain = pretrain_lm.target_texts(split)
    exact = pretrain_lm.target_texts(split, guide=True, guide_drop=0.0, guide_add=0.0)
    labels = [[x for x in str(row["labels"] or "").split(";") if x] for row in split.manifest.to_dict("records")]
    impressions = [i for i, (prompt, _) in enumerate(plain) if prompt == IMPRESSION_PROMPT]
    assert len(impressions) == len(labels) and any(labels) and not all(labels)
    display = {n.replace("_", " "): n for n in DIAGNOSIS_NAMES}
    for i, ls in zip(impressions, labels):
        prompt, target = exact[i]
        named = prompt.split("[suspected: ", 1)[1].rstrip("]")
        order = [] if named == "none" else [display[x] for x in named.split("; ")]
        assert sorted(order) == sorted(ls) and prompt == guided_prompt(order)
        said = [n for n in order if n.replace("_", " ") in target]
        assert said[::-1] == sorted(
            said, key=lambda n: target.index(n.replace("_", " "))
        )  # the impression reads the guide backwards
        if len(ls) <= 1:
            assert target == plain[i][1]
    assert [exact[i] for i in range(len(plain)) if i not in impressions] == [
        plain[i] for i in range(len(plain)) if i not in impressions
    ]
    noisy = pretrain_lm.target_texts(split, guide=True, guide_drop=0.5, guide_add=0.5, seed=1)
    assert noisy == pretrain_lm.target_texts(split, guide=True, guide_drop=0.5, guide_add=0.5, seed=1)
    assert [noisy[i][0] for i in impressions] != [exact[i][0] for i in impressions]


def test_align_with_the_guide_trains_on_guided_impressions(tmp_path, recipe_config, monkeypatch):
    """The training batcher guides impressions with the recipe's noise; validation stays plain."""
    from training import align

    made: list[TextBatcher] = []

    def recording(*args, **kwargs) -> TextBatcher:
        made.append(TextBatcher(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(align, "TextBatcher", recording)
    out = tmp_path / "guided"
    cfg = recipe_config(
        out,
        "model.impression_guide=true",
        "train.guide_drop=0.0",
        "train.guide_add=0.0",
        "train.max_steps=1",
        "train.epochs=1",
    )
    align.run(cfg)
    train, val = made
    assert (train.guide, train.guide_drop, train.guide_add) == (True, 0.0, 0.0) and not val.guide
    model = load_checkpoint(out / "best")
    assert model.config.impression_guide
    cases = case_set(cfg, model, "train")
    batch = train(cases.items[:4])
    tok = model.tokenizer
    for row, it in enumerate(cases.items[:4]):
        names = {n for n, v in zip(model.config.diagnoses, it["labels"].tolist()) if v}
        text = tok.decode(batch["input_ids"][row].tolist(), skip_special_tokens=True)
        named = text.split("[suspected: ", 1)[1].split("]", 1)[0]
        order = [] if named == "none" else [n for x in named.split("; ") for n in names if n.replace("_", " ") == x]
        assert set(order) == names and len(order) == len(names)
        prompt = [tok.bos_token_id] + tok.encode(guided_prompt(order), add_special_tokens=False)
        assert batch["input_ids"][row, : len(prompt)].tolist() == prompt
        assert int(batch["pool_index"][row]) == len(
            tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)
        )  # after BOS


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory, recipe_config, align_run, one_thread) -> Path:
    """Stage 2 from the align checkpoint: QLoRA (rank 4) with LoRA+ ratio 4, three steps."""
    out = tmp_path_factory.mktemp("finetune") / "run"
    cfg = recipe_config(
        out,
        "recipe=finetune",
        f"init_from={align_run / 'best'}",
        "model.backbone.finetune.method=qlora",
        "model.backbone.finetune.lora_r=4",
        "model.backbone.finetune.lora_alpha=8",
        "train.epochs=1",
        "train.max_steps=3",
        "train.lr_lm=0.001",
        "train.loraplus_lr_ratio=4",
        "train.qa_fraction=0.5",
    )
    with one_thread():
        progress = finetune.run(cfg)
    assert progress["step"] == 3
    return out


def test_finetune_qlora_checkpoint_reloads_with_a_4bit_base(finetune_run, align_run):
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    model = load_checkpoint(finetune_run / "best")
    assert model.backbone_info.quantized and model.config.backbone.finetune.method == "qlora"
    four_bit = {n: m for n, m in model.lm.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(four_bit) == 2 * 7  # every attention and MLP projection of both layers
    stage1_lm = load_file(str(align_run / "best" / "lm" / "model.safetensors"))
    for name, layer in four_bit.items():
        assert isinstance(layer.weight, bnb.nn.Params4bit) and layer.weight.dtype == torch.uint8
        assert layer.weight.quant_state.quant_type == "nf4"
        source = name.split("base_model.model.", 1)[1].removesuffix(".base_layer") + ".weight"
        restored = dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()  # (out, in)
        original = stage1_lm[source]
        assert restored.shape == original.shape and not torch.equal(restored, original)
        # NF4 keeps each weight near the original: errors are a small fraction of the weights' size
        error = (restored - original).abs()
        assert float(error.max()) <= 0.2 * float(original.abs().max())
        assert float(error.mean()) <= 0.15 * float(original.abs().mean())

    saved = load_file(str(finetune_run / "best" / "model.safetensors"))
    lora_b = [n for n in saved if "lora_B" in n]
    assert lora_b and all(float(saved[n].abs().sum()) > 0 for n in lora_b)  # zero at start, trained since
    state = model.state_dict()
    assert all(torch.equal(saved[n], state[n]) for n in saved)


def test_loraplus_puts_lora_B_at_ratio_times_lm_lr(finetune_run):
    state = json.loads((finetune_run / "last" / "state.json").read_text())
    saved = load_file(str(finetune_run / "last" / "model.safetensors"))
    n_lora_b = sum("lora_B" in n for n in saved)
    at_4x = sum(len(g["params"]) for g in state["optimizer_groups"] if g["initial_lr"] == pytest.approx(0.004))
    assert n_lora_b == 2 * 7 and at_4x == n_lora_b

    model = load_checkpoint(finetune_run / "best")
    t = TrainConfig(lr=0.003, lr_lm=0.001, gate_lr=0.02, loraplus_lr_ratio=4, weight_decay=0.01)
    optimizer = build_optimizer(model, t)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(group_of) == sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)
    for name, p in trainable:
        group = group_of[id(p)]
        gate = name.endswith(("attn_gate", "ff_gate"))
        expected = 0.004 if "lora_B" in name else 0.001 if "lora_A" in name else 0.02 if gate else 0.003
        assert group["lr"] == pytest.approx(expected), name
        assert group["weight_decay"] == pytest.approx(0.0 if gate else 0.01), name  # decay would close the gates

    # encoder_lr: the encoders and resamplers get their own rate, with and without LoRA+
    encoder_ids = {id(p) for part in (model.encoders, model.resamplers) for p in part.parameters() if p.requires_grad}
    assert encoder_ids
    for ratio in (4, None):
        t = TrainConfig(lr=0.003, lr_lm=0.001, gate_lr=0.02, encoder_lr=0.0005, loraplus_lr_ratio=ratio)
        group_of = {id(p): g for g in build_optimizer(model, t).param_groups for p in g["params"]}
        assert len(group_of) == len(trainable)
        for name, p in trainable:
            if id(p) in encoder_ids:
                assert group_of[id(p)]["lr"] == pytest.approx(0.0005), name
            elif not name.endswith(("attn_gate", "ff_gate")) and "lora_" not in name:
                assert group_of[id(p)]["lr"] == pytest.approx(0.003), name


def test_note_embeddings_are_kept_on_disk_and_reused_by_the_next_stage(align_run, recipe_config):
    """The align run stored the frozen encoder's note embeddings; a later CaseSet reads them and encodes nothing."""
    model = load_checkpoint(align_run / "best")
    cfg = recipe_config(align_run)
    stores = sorted((Path(cfg.cohort) / ".cache").glob("notes-*.safetensors"))
    assert len(stores) == 1
    calls = []
    encoder = model.encoders["notes"]
    original = encoder.embed_notes
    encoder.embed_notes = lambda *a, **k: calls.append(1) or original(*a, **k)
    cached = case_set(cfg, model, "val")
    assert calls == []  # everything came from the store
    preprocessor = StudyPreprocessor(cfg.model.preprocess, load_note_tokenizer(cfg.model.notes))
    fresh = CaseSet(
        Cohort.open(cfg.cohort).split("val"), preprocessor, note_encoder=encoder, progress=False
    )  # no cache folder
    assert calls and len(fresh.items) == len(cached.items)
    for a, b in zip(cached.items, fresh.items):
        assert (
            a["notes_embeddings"].shape == b["notes_embeddings"].shape and a["notes_embeddings"].dtype == torch.float16
        )
        torch.testing.assert_close(a["notes_embeddings"].float(), b["notes_embeddings"].float(), atol=2e-3, rtol=2e-3)
    encoder.embed_notes = original
