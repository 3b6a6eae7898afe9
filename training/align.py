"""Stage 1, alignment: the LM stays frozen; encoders, resamplers, gated cross-attention and the
diagnosis head learn the diagnosis loss plus the impression LM loss.

Run:  medmm train --config training/configs/demo_align.yaml [key=value ...]
  or, as two processes (DDP; gloo on CPUs, NCCL on GPUs):
      accelerate launch --multi_gpu --num_processes 2 -m training.align --config training/configs/demo_align.yaml [cpu=true]
  (`accelerate launch --cpu --num_processes 2` starts a single process unless mpirun is set up.)

`fit` below is the loop itself, written out; stage 2 (training/finetune.py) runs the same loop on
a model set up for QLoRA.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from medmm.cases import CaseSet
from medmm.checkpoint import save_checkpoint
from medmm.encoders.text import load_note_tokenizer
from medmm.errors import ConfigError
from medmm.io.cohort import Cohort
from medmm.model import build_model
from medmm.train.data import TextBatcher, with_text_targets
from medmm.train.image_pretrain import load_image_encoder
from medmm.train.losses import diagnosis_loss, unimodal_loss
from medmm.train.recipe import (
    RecipeConfig,
    build_optimizer,
    macro_auroc,
    recipe_main,
    recipe_task,
    resolved,
    validation_scores,
)
from medmm.train.state import JsonlLogger, load_state, save_state
from medmm.transforms.study import StudyPreprocessor

log = logging.getLogger("medmm.train")


def prepare_data(cfg: RecipeConfig, model, accelerator: Accelerator) -> tuple[CaseSet, CaseSet]:
    """Train and validation cases (every sample of a built cohort), preprocessed once (cached on disk), with note
    embeddings and their text targets."""
    cohort = Cohort.open(cfg.cohort)
    preprocessor = StudyPreprocessor(cfg.model.preprocess, load_note_tokenizer(cfg.model.notes), task=model.task)
    cache = cfg.cache_dir or str(Path(cfg.cohort) / ".cache")
    show = cfg.progress and accelerator.is_local_main_process
    notes = model.encoders["notes"] if "notes" in model.encoders else None
    with accelerator.main_process_first():  # one process fills the disk cache, the others read it
        train = CaseSet(
            cohort.split("train"), preprocessor, cache_dir=cache, note_encoder=notes, progress=show, desc="train"
        )
        val = CaseSet(cohort.split("val"), preprocessor, cache_dir=cache, note_encoder=notes, progress=show, desc="val")
    with_text_targets(train, model.task)
    with_text_targets(val, model.task)
    if len(train) == 0:
        raise SystemExit(f"no readable training cases in {cfg.cohort}")
    return train, val


def fit(cfg: RecipeConfig, model, accelerator: Accelerator, lm_source: str | None) -> dict:
    """The training loop: epochs of diagnosis + LM loss, validation, best and last checkpoints."""
    t = cfg.train
    out = Path(cfg.out)
    train_set, val_set = prepare_data(cfg, model, accelerator)
    batcher = TextBatcher(
        model.tokenizer,
        qa_fraction=t.qa_fraction,
        seed=t.seed,
        max_length=t.max_length,
        guide=model.config.impression_guide,
        guide_drop=t.guide_drop,
        guide_add=t.guide_add,
    )
    sampler_gen = torch.Generator().manual_seed(t.seed)
    train_loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=t.batch_size,
        shuffle=True,
        generator=sampler_gen,
        collate_fn=batcher,
        drop_last=len(train_set) > t.batch_size,
    )
    val_loader = torch.utils.data.DataLoader(
        val_set, batch_size=32, collate_fn=TextBatcher(model.tokenizer, max_length=t.max_length)
    )
    optimizer = build_optimizer(model, t)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / t.grad_accum)  # this process's share of the batches
    total = t.max_steps or steps_per_epoch * t.epochs
    # The prepared scheduler advances once per process at every optimizer step (accelerate, batches not split).
    n = accelerator.num_processes
    scheduler = get_cosine_schedule_with_warmup(optimizer.optimizer, int(t.warmup_fraction * total) * n, total * n)
    scheduler = accelerator.prepare(scheduler)
    core = accelerator.unwrap_model(model)

    progress = {"epoch": 0, "step": 0, "best_auroc": -1.0, "best_epoch": None}
    if cfg.resume and (out / "last" / "state.json").is_file():
        progress = load_state(out / "last", core, optimizer, scheduler, {"batcher": batcher.rng})
        if accelerator.is_main_process:
            log.info("resumed from %s at epoch %d, step %d", out / "last", progress["epoch"], progress["step"])
    logger = None
    if accelerator.is_main_process:  # rows past the resumed step (or all, on a fresh start) are dropped
        logger = JsonlLogger(
            out / "metrics.jsonl", out / "tensorboard" if cfg.tensorboard else None, start_step=progress["step"]
        )

    model.train()
    bar = tqdm(
        total=total,
        initial=progress["step"],
        desc=cfg.recipe,
        disable=not (cfg.progress and accelerator.is_local_main_process),
    )
    while progress["epoch"] < t.epochs and progress["step"] < total:
        epoch = progress["epoch"]
        sampler_gen.manual_seed(t.seed + epoch)  # the same order after a resume
        batcher.rng.seed(t.seed + epoch)
        sums = {"loss": 0.0, "diagnosis": 0.0, "lm": 0.0, "unimodal": 0.0, "n": 0}
        for batch in train_loader:
            with accelerator.accumulate(model):
                result = model(
                    batch, batch["input_ids"], batch["attention_mask"], batch["pool_index"], batch["lm_labels"]
                )
                diag = diagnosis_loss(
                    result.diagnosis_logits, batch["labels"], batch["labels_known"], batch["diagnosis_rows"]
                )
                lm = result.lm_loss if result.lm_loss is not None else diag * 0.0
                uni = unimodal_loss(result.modality_logits, batch["labels"], batch["labels_known"])
                uni = uni if uni is not None else diag * 0.0
                loss = diag + t.lm_loss_weight * lm + t.unimodal_loss_weight * uni
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            sums["loss"] += loss.item()
            sums["diagnosis"] += diag.item()
            sums["lm"] += lm.item()
            sums["unimodal"] += uni.item()
            sums["n"] += 1
            if accelerator.sync_gradients:
                progress["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}")
                if progress["step"] >= total:
                    break
        progress["epoch"] = epoch + 1
        record = {k: sums[k] / max(sums["n"], 1) for k in ("loss", "diagnosis", "lm", "unimodal")}
        record["lr"] = scheduler.get_last_lr()[0]
        if len(val_set) and (
            progress["epoch"] % t.eval_every == 0 or progress["epoch"] >= t.epochs or progress["step"] >= total
        ):
            probs, labels = validation_scores(core, val_loader, accelerator.device)
            record["val_macro_auroc"] = macro_auroc(labels, probs)
            if accelerator.is_main_process and (
                record["val_macro_auroc"] > progress["best_auroc"] or progress["best_epoch"] is None
            ):
                progress["best_auroc"], progress["best_epoch"] = record["val_macro_auroc"], progress["epoch"]
                save_checkpoint(
                    core,
                    out / "best",
                    lm_source=lm_source,
                    extra={"val_macro_auroc": record["val_macro_auroc"], "epoch": progress["epoch"]},
                )
                log.info(
                    "best checkpoint saved: epoch %d, val macro AUROC %.4f",
                    progress["epoch"],
                    record["val_macro_auroc"],
                )
        if logger:
            logger.log(progress["step"], epoch=progress["epoch"], **record)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_state(out / "last", core, optimizer, scheduler, progress, {"batcher": batcher.rng})
        accelerator.wait_for_everyone()
    bar.close()
    if accelerator.is_main_process and not (out / "best").exists():  # no validation split
        save_checkpoint(core, out / "best", lm_source=lm_source)
    if logger:
        logger.close()
    return progress


def setup(cfg: RecipeConfig) -> tuple[Accelerator, str]:
    """Accelerator, seed, run folder with the resolved config."""
    t = cfg.train
    accelerator = Accelerator(
        cpu=cfg.cpu or not torch.cuda.is_available(),
        mixed_precision=t.mixed_precision,
        gradient_accumulation_steps=t.grad_accum,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(t.seed)
    out = Path(cfg.out)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved(cfg), sort_keys=False))
    return accelerator, str(accelerator.device)


def run(cfg: RecipeConfig) -> dict:
    """Stage 1: build the model with a frozen LM and align the multimodal parts to it."""
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(
            cfg.model,
            backbone=dataclasses.replace(
                cfg.model.backbone, finetune=dataclasses.replace(cfg.model.backbone.finetune, method="frozen")
            ),
        ),
    )
    cfg, task = recipe_task(cfg)
    accelerator, device = setup(cfg)
    model = build_model(cfg.model, lm_dir=cfg.lm_dir, device=device, task=task)
    if cfg.image_init:
        if "image" not in model.encoders:
            raise ConfigError("image_init is set but the model has no image encoder", where="image_init")
        meta = load_image_encoder(model.encoders["image"], cfg.image_init)
        log.info(
            "image encoder from %s (epoch %s, frozen: %s)", cfg.image_init, meta.get("epoch"), cfg.model.image.frozen
        )
    progress = fit(cfg, model, accelerator, lm_source=cfg.lm_dir)
    if accelerator.is_main_process:  # stdout is left to the caller (`medmm train` prints the result)
        log.info("align finished: %s", json.dumps(progress))
    return progress


def main(argv: list[str] | None = None) -> None:
    recipe_main("align", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
