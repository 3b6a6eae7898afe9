"""Stage 0b, image pretraining: the image encoder learns alone where each diagnosis shows in the
radiograph (image findings, and lesion cover per token where the cohort has masks), so that the
fused stages can start from an encoder that already sees (see medmm/train/image_pretrain.py).

Run:  medmm train --config training/configs/demo_pretrain_image.yaml cohort=DIR out=DIR
Then: stage 1 with image_init=OUT/best (and model.image.frozen=true to keep it as it is).

The model settings (image encoder, preprocessing) must be those of the stage that loads it;
stage 1 checks. The best epoch by validation macro AUROC of the image findings is kept.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from medmm.cases import CaseSet, collate
from medmm.encoders.text import load_note_tokenizer
from medmm.io.cohort import Cohort
from medmm.tasks import Task
from medmm.train.image_pretrain import (
    ImagePretrainer,
    finding_logits,
    image_targets,
    mask_background,
    pointing_rate,
    pretrain_loss,
    save_image_encoder,
)
from medmm.train.recipe import RecipeConfig, macro_auroc, recipe_main, recipe_task
from medmm.train.state import JsonlLogger, load_state, save_state
from medmm.transforms.study import StudyPreprocessor
from training.align import setup

log = logging.getLogger("medmm.train")


class ImageCases(torch.utils.data.Dataset):
    """The cases of one split that have an image: pixels with their finding and cover targets."""

    def __init__(
        self, cohort: Cohort, cfg: RecipeConfig, grid: tuple[int, ...], show: bool, desc: str, task: Task | None = None
    ):
        preprocessor = StudyPreprocessor(cfg.model.preprocess, load_note_tokenizer(cfg.model.notes), task=task)
        cases = CaseSet(
            cohort, preprocessor, cache_dir=cfg.cache_dir or str(Path(cfg.cohort) / ".cache"), progress=show, desc=desc
        )
        folders = {e.patient_id: e.folder for e in cohort.entries}
        names = cfg.model.diagnoses
        self.items = []
        for item in cases.items:
            if not bool(item["image_present"]) or not bool(item["labels_known"]):
                continue
            t = image_targets(folders[item["meta"]["patient_id"]], item["labels"], names, grid)
            self.items.append(
                {
                    "image": item["image"],
                    "finding": t.finding,
                    "cover": t.cover,
                    "cover_known": torch.tensor(t.cover_known),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


@torch.no_grad()
def evaluate(model: ImagePretrainer, loader, device) -> dict:
    """Validation: macro AUROC of the image findings, and the token pointing rate on lesions."""
    was = model.training
    model.eval()
    probs, truth, hits, trials = [], [], 0, 0
    for batch in loader:
        logits = model(batch["image"].to(device))  # (B, N, K)
        probs.append(torch.sigmoid(finding_logits(logits)).cpu())
        truth.append(batch["finding"])
        known = batch["cover_known"].bool()
        h, n = pointing_rate(logits[known].cpu(), batch["cover"][known], batch["finding"][known])
        hits, trials = hits + h, trials + n
    model.train(was)
    if not probs:
        return {"val_finding_auroc": float("nan"), "val_pointing": float("nan")}
    return {
        "val_finding_auroc": macro_auroc(torch.cat(truth).numpy(), torch.cat(probs).numpy()),
        "val_pointing": hits / trials if trials else float("nan"),
    }


def run(cfg: RecipeConfig) -> dict:
    cfg, task = recipe_task(cfg)
    t = cfg.train
    accelerator, device = setup(cfg)
    out = Path(cfg.out)
    model = ImagePretrainer(cfg.model.image, len(cfg.model.diagnoses)).to(device)
    grid = model.encoder.grid((cfg.model.preprocess.image_size,) * 2)
    cohort = Cohort.open(cfg.cohort)
    show = cfg.progress and accelerator.is_local_main_process
    with accelerator.main_process_first():
        train_set = ImageCases(cohort.split("train"), cfg, grid, show, "train", task)
        val_set = ImageCases(cohort.split("val"), cfg, grid, show, "val", task)
    if len(train_set) == 0:
        raise SystemExit(f"no training cases with an image in {cfg.cohort}")
    sampler_gen = torch.Generator().manual_seed(t.seed)
    train_loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=t.batch_size,
        shuffle=True,
        generator=sampler_gen,
        collate_fn=collate,
        drop_last=len(train_set) > t.batch_size,
    )
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=64, collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    total = t.max_steps or math.ceil(len(train_loader) / t.grad_accum) * t.epochs
    n = accelerator.num_processes
    scheduler = accelerator.prepare(
        get_cosine_schedule_with_warmup(optimizer.optimizer, int(t.warmup_fraction * total) * n, total * n)
    )
    core = accelerator.unwrap_model(model)

    progress = {"epoch": 0, "step": 0, "best_auroc": -1.0, "best_epoch": None}
    if cfg.resume and (out / "last" / "state.json").is_file():
        progress = load_state(out / "last", core, optimizer, scheduler)
        log.info("resumed from %s at epoch %d, step %d", out / "last", progress["epoch"], progress["step"])
    logger = (
        JsonlLogger(
            out / "metrics.jsonl", out / "tensorboard" if cfg.tensorboard else None, start_step=progress["step"]
        )
        if accelerator.is_main_process
        else None
    )
    mask_gen = torch.Generator()
    model.train()
    bar = tqdm(total=total, initial=progress["step"], desc="pretrain_image", disable=not show)
    while progress["epoch"] < t.epochs and progress["step"] < total:
        epoch = progress["epoch"]
        sampler_gen.manual_seed(t.seed + epoch)  # the same order after a resume
        mask_gen.manual_seed(t.seed + 1000 + epoch)  # the same blanked cells after a resume
        losses = []
        for batch in train_loader:
            with accelerator.accumulate(model):
                known = batch["cover_known"].bool()
                pixels, _ = mask_background(
                    batch["image"], batch["cover"], known, t.background_mask_rate, t.background_mask_max, mask_gen
                )
                logits = model(pixels)  # (B, N, K)
                loss = pretrain_loss(logits, batch["finding"], batch["cover"], known)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            if accelerator.sync_gradients:
                progress["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses):.3f}")
                if progress["step"] >= total:
                    break
        progress["epoch"] = epoch + 1
        record = {"loss": float(np.mean(losses)) if losses else float("nan"), "lr": scheduler.get_last_lr()[0]}
        last = progress["epoch"] >= t.epochs or progress["step"] >= total
        if len(val_set) and (progress["epoch"] % t.eval_every == 0 or last):
            record.update(evaluate(core, val_loader, accelerator.device))
            better = record["val_finding_auroc"] > progress["best_auroc"] or progress["best_epoch"] is None
            if accelerator.is_main_process and better:
                progress["best_auroc"], progress["best_epoch"] = record["val_finding_auroc"], progress["epoch"]
                save_image_encoder(core.encoder, out / "best", {"epoch": progress["epoch"], **record})
        if logger:
            logger.log(progress["step"], epoch=progress["epoch"], **record)
        if accelerator.is_main_process:
            save_state(out / "last", core, optimizer, scheduler, progress)
        accelerator.wait_for_everyone()
    bar.close()
    if accelerator.is_main_process and not (out / "best").exists():  # no validation split
        save_image_encoder(core.encoder, out / "best", {"epoch": progress["epoch"]})
    if logger:
        logger.close()
    return {**progress, "image_init": str(out / "best")}


def main(argv: list[str] | None = None) -> None:
    recipe_main("pretrain_image", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
