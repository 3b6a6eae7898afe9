"""Batching: preprocessed studies -> one batch dict, and prompt + target text -> LM inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


def collate(items: Sequence[dict]) -> dict:
    """Stack the tensors of preprocessed items; gather their "meta" dicts in a list."""
    batch: dict = {}
    for key in items[0]:
        if key == "meta":
            batch["meta"] = [item.get("meta", {}) for item in items]
        elif isinstance(items[0][key], Tensor):
            batch[key] = torch.stack([item[key] for item in items])
    return batch


def to_device(batch: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


@dataclass
class LMInputs:
    input_ids: Tensor  # (B, T) right-padded: BOS, prompt, target, EOS
    attention_mask: Tensor  # (B, T)
    pool_index: Tensor  # (B,) position of each row's last prompt token
    labels: Tensor  # (B, T) target token ids, -100 on BOS, prompt and padding


def lm_inputs(tokenizer, prompts: Sequence[str], targets: Sequence[str | None], max_length: int = 128) -> LMInputs:
    """Token ids for prompt + target rows; a None target gives a prompt-only row (no LM loss)."""
    rows, pools, label_rows = [], [], []
    for prompt, target in zip(prompts, targets):
        p = [tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)
        t = [] if target is None else tokenizer.encode(" " + target, add_special_tokens=False) + [tokenizer.eos_token_id]
        ids = (p + t)[:max_length]
        rows.append(ids)
        pools.append(min(len(p), max_length) - 1)
        label_rows.append(([-100] * len(p) + t)[:max_length])
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, label_rows)):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return LMInputs(ids, attn, torch.tensor(pools), labels)
