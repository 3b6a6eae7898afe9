"""Stage 2, fine-tuning: QLoRA (or LoRA, or full) on the LM together with the fusion parts, on the
diagnosis and impression objectives plus instruction tuning (question-answer pairs from each
case's ground truth), starting from the stage-1 checkpoint.

Run:  medmm train --config training/configs/demo_finetune.yaml [key=value ...]

On CUDA the base is 4-bit NF4 with double quantization; on the CPU bitsandbytes' CPU backend
does the same, and where 4-bit is unavailable the backbone falls back to LoRA with a warning.
LoRA+ is `train.loraplus_lr_ratio`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from safetensors.torch import load_file

from medmm.checkpoint import stored_task, verify
from medmm.config import from_dict
from medmm.errors import CheckpointError
from medmm.model import ModelConfig, build_model
from medmm.train.recipe import RecipeConfig, recipe_main
from training.align import fit, setup

log = logging.getLogger("medmm.train")


def load_stage1(model, checkpoint: Path) -> None:
    """Copy the stage-1 weights (encoders, resamplers, fusion, head) into the stage-2 model."""
    verify(checkpoint)
    tensors = load_file(str(checkpoint / "model.safetensors"))
    state = model.state_dict()
    missing = [name for name in tensors if name not in state]
    if missing:
        raise CheckpointError(
            f"{len(missing)} stage-1 weight(s) have no place in this model (e.g. {missing[0]})", path=checkpoint
        )
    model.load_state_dict(tensors, strict=False)


def with_stage1_model(cfg: RecipeConfig, init: Path) -> RecipeConfig:
    """The stage-1 model config, with this recipe's fine-tuning settings (method, adapters, 4-bit base) and dropout."""
    stage1 = from_dict(ModelConfig, verify(init)["config"], "config")
    mine = cfg.model.backbone
    backbone = dataclasses.replace(
        stage1.backbone,
        finetune=mine.finetune,
        compute_dtype=mine.compute_dtype,
    )
    model = dataclasses.replace(stage1, backbone=backbone, modality_dropout=cfg.model.modality_dropout)
    return dataclasses.replace(cfg, model=model)


def run(cfg: RecipeConfig) -> dict:
    if not cfg.init_from:
        raise SystemExit("finetune needs init_from: the stage-1 (align) checkpoint folder")
    init = Path(cfg.init_from)
    lm_dir = cfg.lm_dir or (str(init / "lm") if (init / "lm").is_dir() else None)
    cfg = with_stage1_model(cfg, init)
    accelerator, device = setup(cfg)
    model = build_model(cfg.model, lm_dir=lm_dir, device=device, task=stored_task(verify(init), init / "config.json"))
    load_stage1(model, init)
    progress = fit(cfg, model, accelerator, lm_source=lm_dir if cfg.model.backbone.finetune.method != "full" else None)
    if accelerator.is_main_process:  # stdout is left to the caller (`medmm train` prints the result)
        log.info("finetune finished (4-bit base: %s): %s", model.backbone_info.quantized, json.dumps(progress))
    return progress


def main(argv: list[str] | None = None) -> None:
    recipe_main("finetune", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
