"""Shared set-up of the recipe tests: a tiny synthetic cohort, a tiny notes encoder, a tiny model
config written as YAML, and one two-epoch align run that several tests read."""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
import yaml

from medmm.synth import SynthConfig, synthesize
from medmm.train.recipe import RecipeConfig, load_recipe_config

SEED = 0
TRAIN_STEPS = 10  # 20 training cases, batches of 4 (the last partial one dropped): 5 steps per epoch, 2 epochs

NOTE_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the a and of with no not is was in on to for patient reports denies "
    "cough fever chills rigors pain chest breath shortness crackles dullness oedema ankle orthopnoea "
    "effusion pleural pneumonia sepsis heart failure pneumothorax confusion percussion productive "
    "sudden plan planned diagnostic , . : ;"
).split()


def tiny_model_section(notes_dir: Path) -> dict:
    """The smallest model that still has every part: DenseNet, notes encoder, vitals, resamplers, fusion, Llama."""
    return {
        "notes": {"model_path": str(notes_dir)},
        "preprocess": {"image_size": 32, "max_notes": 2, "max_note_tokens": 32},
        "image": {"dim": 32, "init_features": 8, "growth_rate": 8, "block_config": [1, 1]},
        "vitals": {"dim": 32, "depth": 1, "heads": 2},
        "resampler": {"num_latents": 4, "depth": 1, "heads": 2},
        "fusion": {"every_n": 1, "heads": 2},
        "backbone": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 2, "intermediate_size": 128},
        "head_hidden": 16,
        "modality_dropout": 0.3,  # draws from torch's generator every step: resume must restore it
        "unimodal_heads": True,
    }


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def one_thread() -> Callable[[], AbstractContextManager]:
    """A context of one torch thread: tiny models run faster so, and far faster than on two busy cores."""
    return lambda: _torch_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_per_test(one_thread):
    with one_thread():
        yield


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """28 synthetic patients at 64 px: 20 train, 4 val, 4 test (seed 3)."""
    root = tmp_path_factory.mktemp("recipes") / "cohort"
    synthesize(root, SynthConfig(patients=28, seed=3, image_size=64, workers=1), progress=False)
    return root


@pytest.fixture(scope="session")
def notes_dir(tmp_path_factory) -> Path:
    """A one-layer BERT (hidden 32) with a word-level tokenizer, saved as a local folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("notes-encoder")
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(NOTE_WORDS)})
    tokenizer.save_pretrained(folder)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=len(NOTE_WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory, cohort, notes_dir) -> Path:
    """The align recipe on the tiny cohort and model, as a YAML file (the command line's input)."""
    data = {
        "recipe": "align",
        "cohort": str(cohort),
        "out": str(tmp_path_factory.mktemp("unused-out")),
        "cpu": True,
        "progress": False,
        "tensorboard": False,
        "model": tiny_model_section(notes_dir),
        "train": {
            "epochs": 2,
            "max_steps": TRAIN_STEPS,
            "batch_size": 4,
            "lr": 0.005,
            "lr_lm": 0.005,
            "encoder_lr": 0.003,
            "unimodal_loss_weight": 0.3,
            "warmup_fraction": 0.1,
            "max_length": 48,
            "seed": SEED,
        },
    }
    path = tmp_path_factory.mktemp("configs") / "tiny_align.yaml"
    path.write_text("# medmm train --config tiny_align.yaml out=DIR\n" + yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def recipe_config(tiny_yaml) -> Callable[..., RecipeConfig]:
    """recipe_config(out, "key=value", ...): the tiny config with overrides, writing to `out`."""

    def make(out: Path, *overrides: str) -> RecipeConfig:
        return load_recipe_config(tiny_yaml, [f"out={out}", *overrides])

    return make


@pytest.fixture(scope="session")
def align_run(tmp_path_factory, recipe_config, one_thread) -> Path:
    """One uninterrupted align run of two epochs (10 steps); its run folder."""
    from training import align

    out = tmp_path_factory.mktemp("align") / "run"
    with one_thread():
        align.run(recipe_config(out, "train.epochs=2"))
    return out
