"""What every recipe shares: its config tree, data set-up, optimizer, and validation AUROC."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from medmm.config import apply_overrides, from_dict, load_yaml, to_dict
from medmm.errors import ConfigError
from medmm.model import ModelConfig, config_for_task
from medmm.tasks import Task, cohort_task, load_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one recipe run."""

    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (tests, smoke runs)
    batch_size: int = 16
    lr: float = 1e-3  # encoders, resamplers, fusion and head
    gate_lr: float | None = None  # lr of the tanh gates of the cross-attention (None: lr); never weight-decayed
    # lr of the modality encoders and their Perceiver resamplers (None: lr). Attention pooling over
    # hundreds of note tokens learns best at a lower rate than the head and the cross-attention.
    encoder_lr: float | None = None
    lr_lm: float = 2e-4  # LM parameters (LoRA adapters or full fine-tuning)
    loraplus_lr_ratio: float | None = None  # LoRA+: lr of lora_B = lr_lm * ratio (peft's LoRA+ helper)
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_accum: int = 1  # gradient accumulation steps
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate; fp16 needs a GPU)
    seed: int = 0
    lm_loss_weight: float = 0.5  # weight of the impression/answer LM loss beside the diagnosis loss
    unimodal_loss_weight: float = 0.0  # weight of the unimodal heads' diagnosis loss (model.unimodal_heads)
    qa_fraction: float = 0.0  # chance that a case's LM row is a question-answer pair (stage 2)
    # With model.impression_guide, the guide of a training impression names the true diagnoses,
    # each left out with chance guide_drop, plus each false one with chance guide_add, so that
    # the LM learns to read the context as well as the guide.
    guide_drop: float = 0.1
    guide_add: float = 0.05
    max_length: int = 96  # tokens per LM row
    eval_every: int = 1  # validate (macro AUROC) every n epochs; the best checkpoint is kept
    # Stage 0b: the chance that a training image with lesion masks gets some of its background
    # cells (those outside every lesion) set to the image's mean, between 1 and
    # ceil(background_mask_max * cells) of them; its targets stay as they are. The encoder learns
    # that a blanked patch without evidence is no evidence, so a diagnosis's probability moves
    # when its lesion is blanked and stays when other patches are (the premise of a deletion test).
    background_mask_rate: float = 0.0
    background_mask_max: float = 0.2


RECIPES = ("pretrain_lm", "pretrain_image", "align", "finetune")


@dataclass(frozen=True)
class RecipeConfig:
    """One run of a recipe: what data, which model, which optimisation, where to write."""

    recipe: str = "align"  # one of RECIPES
    cohort: str = ""  # cohort folder (manifest with train/val splits)
    task: str | None = None  # task YAML or shipped name; default: the cohort's task.yaml, else synthetic-cxr
    out: str = "runs/align"  # run folder: checkpoints, metrics.jsonl, config.yaml
    init_from: str | None = None  # a checkpoint folder to start from (finetune starts from align)
    lm_dir: str | None = None  # trained LM weights (Hugging Face folder) for the backbone
    image_init: str | None = None  # stage 1: start the image encoder from a pretrain_image run's best folder
    cache_dir: str | None = None  # preprocessing cache; default <cohort>/.cache
    cpu: bool = False  # force the CPU even when a GPU is present
    resume: bool = True  # continue from <out>/last when it exists
    progress: bool = True
    tensorboard: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_recipe_config(
    path: str | Path | None, overrides: Sequence[str] = (), base: RecipeConfig | None = None
) -> RecipeConfig:
    """Read a recipe YAML (safely), apply key=value overrides, check every key."""
    data = to_dict(base) if base is not None else {}
    if path is not None:
        data = _merge(data, load_yaml(path))
    data = apply_overrides(data, overrides)
    return from_dict(RecipeConfig, data, "")


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with groups: fusion parts at lr, their tanh gates at gate_lr, LM at lr_lm; LoRA+ through peft when asked.

    The gates start at 0 (the untrained model is the base LM) and Adam moves a parameter by
    about lr per step, so at lr 1e-3 a few hundred steps open a gate only to tanh(0.3); a larger
    gate_lr lets a short run use the cross-attention. Weight decay would pull gates back to 0.
    """
    lm_params = [p for p in model.lm.parameters() if p.requires_grad]
    lm_ids = {id(p) for p in lm_params}
    gates = [p for n, p in model.named_parameters() if p.requires_grad and id(p) not in lm_ids and n.endswith("_gate")]
    gate_ids = {id(p) for p in gates}
    encoder_ids = set()
    if cfg.encoder_lr is not None:
        encoder_ids = {
            id(p) for part in (model.encoders, model.resamplers) for p in part.parameters() if p.requires_grad
        }
    encoder_params = [p for p in model.parameters() if id(p) in encoder_ids]
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in lm_ids | gate_ids | encoder_ids]
    gate_group = {"params": gates, "lr": cfg.gate_lr if cfg.gate_lr is not None else cfg.lr, "weight_decay": 0.0}
    encoder_group = {"params": encoder_params, "lr": cfg.encoder_lr}
    if cfg.loraplus_lr_ratio and lm_params:
        from peft.optimizers import create_loraplus_optimizer

        # peft applies `loraplus_weight_decay` to the adapter groups (its default is none at all)
        optimizer = create_loraplus_optimizer(
            model.lm,
            torch.optim.AdamW,
            lr=cfg.lr_lm,
            loraplus_lr_ratio=cfg.loraplus_lr_ratio,
            weight_decay=cfg.weight_decay,
            loraplus_weight_decay=cfg.weight_decay,
        )
        if other:
            optimizer.add_param_group({"params": other, "lr": cfg.lr, "weight_decay": cfg.weight_decay})
        if gates:
            optimizer.add_param_group(gate_group)
        if encoder_params:
            optimizer.add_param_group(encoder_group | {"weight_decay": cfg.weight_decay})
        return optimizer
    groups = [{"params": other, "lr": cfg.lr}, gate_group, encoder_group]
    if lm_params:
        groups.append({"params": lm_params, "lr": cfg.lr_lm})
    if not other and not lm_params and not gates and not encoder_params:
        raise ConfigError("nothing to train: every parameter is frozen", where="recipe")
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


@torch.no_grad()
def validation_scores(model, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid probabilities and labels (N, K) of the known-label cases in `loader`."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        ids, attn = model.prompt_ids(["Impression:"] * batch["labels"].shape[0], device)
        pool = torch.full((ids.shape[0],), ids.shape[1] - 1, device=device)
        out = model(batch, ids, attn, pool)
        keep = batch["labels_known"].bool()
        probs.append(torch.sigmoid(out.diagnosis_logits[keep]).float().cpu())
        labels.append(batch["labels"][keep].cpu())
    model.train(was_training)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def macro_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean AUROC over diagnoses that have both classes (scikit-learn); NaN when none has."""
    from sklearn.metrics import roc_auc_score

    scores = [
        roc_auc_score(labels[:, k], probs[:, k]) for k in range(labels.shape[1]) if 0 < labels[:, k].sum() < len(labels)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def recipe_task(cfg: RecipeConfig) -> tuple[RecipeConfig, Task]:
    """The run's task (`task`, else the cohort's), and the config with the model's labels and channels set from it."""
    task = load_task(cfg.task) if cfg.task else cohort_task(cfg.cohort)
    return dataclasses.replace(cfg, model=config_for_task(cfg.model, task)), task


def resolved(cfg: RecipeConfig) -> dict:
    """The config as written next to the checkpoints."""
    return to_dict(cfg)


def replace_model(cfg: RecipeConfig, **changes) -> RecipeConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **changes))


def recipe_main(
    name: str, run: Callable[[RecipeConfig], dict], description: str, argv: list[str] | None = None
) -> None:
    """The command line of a recipe module (`python -m training.NAME --config FILE [key=value ...]`).

    Prints the result as one JSON line (`{"recipe": NAME, ...}`) from the main process only.
    """
    import argparse
    import json
    import logging

    from accelerate import PartialState

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*", help="key.path=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    result = run(load_recipe_config(args.config, args.overrides))
    if PartialState().is_main_process:
        print(json.dumps({"recipe": name, **result}))
