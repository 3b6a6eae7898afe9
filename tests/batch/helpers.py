"""A tiny checkpoint and small cohorts for the batch and audit tests (built from configs, nothing downloaded)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from medmm.checkpoint import save_checkpoint
from medmm.encoders.image import ImageEncoderConfig
from medmm.encoders.text import TextEncoderConfig
from medmm.encoders.vitals import VitalsEncoderConfig
from medmm.fusion.layers import FusionConfig
from medmm.lm.backbone import BackboneConfig
from medmm.model import ModelConfig, ResamplerConfig, build_model, config_for_task
from medmm.transforms.study import PreprocessConfig

NOTE_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] patient reports cough fever chest pain no acute distress crackles right left "
    "lower lobe dyspnoea oedema ankle sudden rigors confusion stable well and with of . , on the at rest"
).split()


def save_tiny_bert(folder: Path) -> Path:
    """A one-layer BERT and its word-level tokenizer saved as a Hugging Face folder (the notes encoder)."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(NOTE_WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    BertModel(config).eval().save_pretrained(folder)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(NOTE_WORDS)}, do_lower_case=True).save_pretrained(folder)
    return folder


def save_tiny_checkpoint(folder: Path, *, seed: int = 0, task=None) -> Path:
    """A MedMM with every modality, small enough to load and run in well under a second per batch
    (for `task`, a medmm.tasks.Task, with that task's labels and channels; default: the default task)."""
    bert = save_tiny_bert(folder.parent / f"{folder.name}-notes-encoder")
    config = ModelConfig(
        image=ImageEncoderConfig(
            dim=16, init_features=8, growth_rate=4, block_config=(1, 1), bn_size=2, norm="instance"
        ),
        notes=TextEncoderConfig(model_path=str(bert), frozen=True),
        vitals=VitalsEncoderConfig(dim=16, depth=1, heads=2, max_steps=8),
        resampler=ResamplerConfig(num_latents=4, depth=1, heads=2),
        fusion=FusionConfig(every_n=1, heads=2, ff_mult=2),
        backbone=BackboneConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64),
        preprocess=PreprocessConfig(image_size=32, max_notes=2, max_note_tokens=8, window_hours=4.0, step_minutes=60.0),
        head_hidden=16,
        max_new_tokens=6,
    )
    if task is not None:
        if task.vitals.per_encounter:  # the tiny vitals encoder covers 8 steps: the latest 4 encounters
            config = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, encounter_steps=4))
        config = config_for_task(config, task)
    torch.manual_seed(seed)
    model = build_model(config, task=task)
    with torch.no_grad():  # open the fusion gates so that every modality moves the outputs
        for i, block in enumerate(model.fusion.blocks):
            block.attn_gate.fill_(0.2 * (1 + i))
            block.ff_gate.fill_(-0.2 * (1 + i))
    return save_checkpoint(model, folder)


def sub_cohort(source: Path, target: Path, patient_ids: Sequence[str]) -> Path:
    """A copy of some patients of a cohort, with their manifest rows (in the source's order)."""
    manifest = pd.read_csv(source / "manifest.csv", dtype=str, keep_default_na=False)
    rows = manifest[manifest["patient_id"].isin(set(patient_ids))]
    target.mkdir(parents=True)
    for folder in rows["folder"]:
        shutil.copytree(source / folder, target / folder)
    rows.to_csv(target / "manifest.csv", index=False)
    return target
