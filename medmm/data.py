"""Batching: preprocessed studies -> one batch dict, and prompt + target text -> LM inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from medmm.errors import ConfigError
from medmm.lm_text import chat_frame, prompt_token_ids, target_token_ids


def collate(items: Sequence[dict]) -> dict:
    """Stack the tensors of preprocessed items; gather their "meta" dicts in a list.

    Every item must have the same keys and tensor shapes (one preprocessing setting per batch);
    a mismatch is a ConfigError naming the key and the item, never a silent drop.
    """
    if not items:
        raise ConfigError("cannot collate an empty list of items", where="batch")
    keys = set(items[0])
    batch: dict = {}
    for index, item in enumerate(items[1:], start=1):
        if set(item) != keys:
            differ = sorted(keys.symmetric_difference(item))
            raise ConfigError(f"item {index} has keys that differ from item 0: {differ}", where="batch")
    for key in items[0]:
        if key == "meta":
            batch["meta"] = [item.get("meta", {}) for item in items]
            continue
        first = items[0][key]
        if not isinstance(first, Tensor):
            raise ConfigError(f"expected a tensor, got {type(first).__name__}", where=f"batch key {key!r}")
        for index, item in enumerate(items):
            value = item[key]
            if not isinstance(value, Tensor) or value.shape != first.shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ConfigError(
                    f"item {index} has {got}, item 0 has {tuple(first.shape)}", where=f"batch key {key!r}"
                )
        batch[key] = torch.stack([item[key] for item in items])  # (B, ...)
    return batch


def to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with every tensor moved to `device` (other values unchanged)."""
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


@dataclass
class LMInputs:
    input_ids: Tensor  # (B, T) right-padded: BOS, prompt, target, EOS
    attention_mask: Tensor  # (B, T)
    pool_index: Tensor  # (B,) position of each row's last prompt (or pool prefix) token
    labels: Tensor  # (B, T) target token ids, -100 on BOS, prompt and padding


def lm_inputs(
    tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str | None],
    max_length: int = 128,
    pool_prefixes: Sequence[str] | None = None,
) -> LMInputs:
    """Token ids for prompt + target rows; a None target gives a prompt-only row (no LM loss).

    Rows are BOS (when the tokenizer has one), the prompt, then " " + target and EOS, cut to
    `max_length`; the diagnosis head reads the last prompt token, which the cut never removes
    unless the prompt alone is longer than `max_length`. With `pool_prefixes`, the head reads
    the last token of row i's prefix instead (its tokens must begin the prompt's), so text after
    it in the prompt (a guide) is read by the LM but not by the head; it is never a target. A
    tokenizer with a chat template frames each prompt as a user turn and each target as the reply
    (medmm.lm_text).
    """
    if len(prompts) != len(targets) or not prompts:
        raise ConfigError(
            f"expected as many targets as prompts (>0), got {len(targets)} and {len(prompts)}", where="lm inputs"
        )
    if pool_prefixes is not None and len(pool_prefixes) != len(prompts):
        raise ConfigError(
            f"expected as many pool prefixes as prompts, got {len(pool_prefixes)} and {len(prompts)}", where="lm inputs"
        )
    if max_length < 1:
        raise ConfigError(f"max_length must be positive, got {max_length}", where="lm inputs")
    frame = chat_frame(tokenizer)
    rows, pools, label_rows = [], [], []
    for index, (prompt, target) in enumerate(zip(prompts, targets)):
        p = prompt_token_ids(tokenizer, prompt, frame)
        if not p:
            raise ConfigError("prompt gives no tokens and the tokenizer has no BOS", where=f"lm inputs row {index}")
        pooled = len(p)
        if pool_prefixes is not None:
            prefix = prompt_token_ids(tokenizer, pool_prefixes[index], frame)
            if not prefix or p[: len(prefix)] != prefix:
                raise ConfigError(
                    f"pool prefix {pool_prefixes[index]!r} does not begin the prompt {prompt!r}",
                    where=f"lm inputs row {index}",
                )
            pooled = len(prefix)
        t = [] if target is None else target_token_ids(tokenizer, target, frame, prompt)
        ids = (p + t)[:max_length]
        rows.append(ids)
        pools.append(min(pooled, max_length) - 1)
        label_rows.append(([-100] * len(p) + t)[:max_length])
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
    attn = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # (B, T)
    for i, (r, lab) in enumerate(zip(rows, label_rows)):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return LMInputs(ids, attn, torch.tensor(pools), labels)
