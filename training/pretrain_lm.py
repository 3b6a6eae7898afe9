"""Stage 0, for the embedded default backbone only: train the small Llama LM as a plain language
model on the cohort's target texts (impressions and question-answer pairs of the training split),
so that stage 1 aligns the modalities to an LM that already writes the house style.

Run:  medmm train --config training/configs/demo_pretrain_lm.yaml [key=value ...]

Writes <out>/lm: a Hugging Face folder (config.json, model.safetensors, tokenizer files) that
`lm_dir` of the later stages points at.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from medmm.io.cohort import Cohort
from medmm.lm.backbone import load_backbone
from medmm.lm.prompts import IMPRESSION_PROMPT, qa_prompt
from medmm.lm.text import lm_inputs
from medmm.tasks import Task, cohort_task
from medmm.train.recipe import RecipeConfig, recipe_main, recipe_task
from medmm.train.state import JsonlLogger
from medmm.train.targets import case_text, guided_pair, load_truth


def target_texts(
    cohort: Cohort,
    *,
    guide: bool = False,
    guide_drop: float = 0.1,
    guide_add: float = 0.05,
    seed: int = 0,
    task: Task | None = None,
) -> list[tuple[str, str]]:
    """(prompt, target) pairs of the training split, from the manifest labels and truth files.

    With `guide`, the impression's prompt is the guided one, naming the case's diagnoses with the
    training noise of TextBatcher (drawn from a `seed`ed generator) in a random order that the
    impression follows, so the LM learns the guide.
    """
    rng = random.Random(seed)
    task = task if task is not None else cohort_task(cohort.root)
    displays = task.displays
    pairs = []
    for entry, row in zip(cohort.entries, cohort.manifest.to_dict("records")):
        labels = [x for x in str(row.get("labels") or "").split(";") if x]
        present = {m for m in ("image", "notes", "vitals") if str(row.get(f"has_{m}", "1")) in ("1", "True", "true")}
        text = case_text(labels, present, load_truth(entry.folder), displays)
        pairs.append(guided_pair(text, rng, guide_drop, guide_add) if guide else (IMPRESSION_PROMPT, text.impression))
        pairs.extend((qa_prompt(q.question), q.answer) for q in text.qa)
    return pairs


def run(cfg: RecipeConfig) -> dict:
    t = cfg.train
    accelerator = Accelerator(cpu=cfg.cpu or not torch.cuda.is_available(), mixed_precision=t.mixed_precision)
    set_seed(t.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone_cfg = dataclasses.replace(
        cfg.model.backbone, finetune=dataclasses.replace(cfg.model.backbone.finetune, method="full")
    )
    backbone = load_backbone(backbone_cfg, weights_dir=cfg.lm_dir, device=accelerator.device)
    model, tokenizer = backbone.model, backbone.tokenizer
    cfg, task = recipe_task(cfg)
    pairs = target_texts(
        Cohort.open(cfg.cohort).split("train"),
        guide=cfg.model.impression_guide,
        guide_drop=t.guide_drop,
        guide_add=t.guide_add,
        seed=t.seed,
        task=task,
    )
    rng = random.Random(t.seed)
    steps_per_epoch = math.ceil(len(pairs) / t.batch_size)
    total = t.max_steps or steps_per_epoch * t.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr_lm, weight_decay=t.weight_decay)
    # Every process trains on the same batches (DDP averages equal gradients); the prepared
    # scheduler advances once per process at each optimizer step, hence the factor.
    n = accelerator.num_processes
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(t.warmup_fraction * total) * n, total * n)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    is_main = accelerator.is_main_process
    logger = JsonlLogger(out / "metrics.jsonl") if is_main else None
    model.train()
    step, bar = 0, tqdm(total=total, desc="pretrain_lm", disable=not (cfg.progress and is_main))
    while step < total:
        rng.shuffle(pairs)
        running = []
        for start in range(0, len(pairs), t.batch_size):
            chunk = pairs[start : start + t.batch_size]
            batch = lm_inputs(tokenizer, [p for p, _ in chunk], [x for _, x in chunk], t.max_length)
            # the prompt is part of the text here: every token after BOS is a target
            labels = torch.where(batch.attention_mask.bool(), batch.input_ids, torch.full_like(batch.input_ids, -100))
            labels[:, 0] = -100
            loss = model(
                input_ids=batch.input_ids.to(accelerator.device),
                attention_mask=batch.attention_mask.to(accelerator.device),
                labels=labels.to(accelerator.device),
            ).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            running.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.3f}")
            if step >= total:
                break
        if logger:
            logger.log(step, loss=sum(running) / len(running))
    bar.close()
    result = {
        "recipe": "pretrain_lm",
        "steps": step,
        "final_loss": sum(running[-20:]) / len(running[-20:]),
        "lm_dir": str(out / "lm"),
    }
    accelerator.wait_for_everyone()
    if is_main:  # one writer
        lm = accelerator.unwrap_model(model)
        lm.save_pretrained(out / "lm", safe_serialization=True)
        tokenizer.save_pretrained(out / "lm")
        (out / "result.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()
    return result


def main(argv: list[str] | None = None) -> None:
    recipe_main("pretrain_lm", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
