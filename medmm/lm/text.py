"""How prompts and targets become token ids for any backbone: plain text, or the tokenizer's chat template.

A tokenizer without a chat template (the embedded one) gets BOS (when it has one) + the prompt,
and a target is " " + the target text + EOS. An instruction-tuned LM (a tokenizer with a chat
template, e.g. SmolLM2's from its GGUF file) gets each prompt as the user's turn of a chat, after
a system message that says what medmm is, with the assistant's turn opened; its target is the
assistant's reply ended by EOS (the template's end of turn). Training rows (`lm_inputs`)
and generation (MedMM.prompt_ids) both go through `prompt_token_ids`, so the model writes in the
frame it learnt in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jinja2 import TemplateError
from torch import Tensor

from medmm.errors import ConfigError
from medmm.lm.prompts import IMPRESSION_PROMPT

# short: every training row and every prompt carries it
CHAT_SYSTEM = "You are medmm, a research tool (not a medical device), reading one patient's data."
_SLOT = "<<medmm-user-turn>>"


def chat_frame(tokenizer) -> tuple[str, str] | None:
    """(head, tail): the text before and after the user's message in the tokenizer's chat template
    (CHAT_SYSTEM as the system message where the template takes one, the assistant's turn opened
    after); None when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    user = {"role": "user", "content": _SLOT}
    for messages in ([{"role": "system", "content": CHAT_SYSTEM}, user], [user]):
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError:  # e.g. a template that refuses a system role
            continue
        if isinstance(text, str) and text.count(_SLOT) == 1:
            head, tail = text.split(_SLOT)
            return head, tail
    raise ConfigError("the tokenizer's chat template does not render one user message", where="chat template")


def split_prompt(prompt: str) -> tuple[str, str]:
    """(user turn, start of the reply) of a prompt in a chat: an impression prompt with a guide
    ("Impression: [suspected: ...]") asks "Impression:" and the guide opens the reply, so that the
    diagnosis head reads the same position (the end of the framed "Impression:") with and without a
    guide; any other prompt is all user turn."""
    if prompt.startswith(IMPRESSION_PROMPT) and prompt != IMPRESSION_PROMPT:
        return IMPRESSION_PROMPT, prompt[len(IMPRESSION_PROMPT) :].lstrip()
    return prompt, ""


def prompt_token_ids(tokenizer, prompt: str, frame: tuple[str, str] | None) -> list[int]:
    """Token ids the LM reads `prompt` as; `frame` from chat_frame(tokenizer) (None: plain, BOS first)."""
    if frame is None:
        bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
        return bos + tokenizer.encode(prompt, add_special_tokens=False)
    head, tail = frame
    user, reply = split_prompt(prompt)
    return tokenizer.encode(head + user + tail + reply, add_special_tokens=False)


def target_token_ids(tokenizer, target: str, frame: tuple[str, str] | None, prompt: str = "") -> list[int]:
    """Token ids of a target after `prompt`: " " + target + EOS; in a chat the reply (continuing the
    reply's start the prompt opens, if any) + EOS, the template's end of turn."""
    starts_reply = frame is None or bool(split_prompt(prompt)[1])
    text = " " + target if starts_reply else target
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


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
    (medmm.lm.text).
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
