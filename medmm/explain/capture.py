"""Attention capture through forward hooks, and the forward pass that scores one explanation target.

Every ``attn_probs`` module (an ``nn.Identity`` in each Perceiver resampler layer and in each
gated cross-attention block) gets a forward hook that keeps the probabilities passing through
it. Nothing in the model changes: a hook hands back the tensor it was given, or, when nothing
upstream of it needs a gradient, the same values as a fresh leaf that does (so that a
gradient with respect to the probabilities exists). The hooks are removed on leaving the
``with`` block, so the model is exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from medmm.errors import ConfigError
from medmm.lm.prompts import IMPRESSION_PROMPT

IMPRESSION = "impression"


@dataclass(frozen=True)
class AttentionSite:
    """One place where attention probabilities are read.

    kind "resampler": latents of `modality` attend to [tokens; latents] in resampler layer `layer`,
    probabilities (B, H, K, N + K). kind "cross": the LM's tokens attend to every context latent in
    fusion block `layer`, probabilities (B, H, T, K_total).
    """

    kind: str  # "resampler" | "cross"
    layer: int
    modality: str | None = None


class Clause(NamedTuple):
    """One generation of an impression: the prompt it was written after and the tokens written (through EOS)."""

    prompt: str
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """What one explanation explains: a diagnosis logit, or the log-likelihood of the generated impression.

    An impression written clause by clause (MedMM.clause_prompts) scores the sum of its clauses'
    log-likelihoods, each given its own prompt.
    """

    name: str  # a diagnosis name of the model, or "impression"
    index: int | None = None  # column of the diagnosis head; None for the impression
    clauses: tuple[Clause, ...] = ()  # the impression's generations, in order

    @property
    def prompt(self) -> str:
        """The prompt of the first clause (the plain prompt for a diagnosis, whose head pools it)."""
        return self.clauses[0].prompt if self.clauses else IMPRESSION_PROMPT

    @property
    def impression_ids(self) -> tuple[int, ...]:
        """Every generated token of the impression, clause after clause."""
        return tuple(t for c in self.clauses for t in c.ids)


def attention_sites(model) -> dict[AttentionSite, nn.Module]:
    """The ``attn_probs`` modules of `model`, keyed by where they sit."""
    sites: dict[AttentionSite, nn.Module] = {}
    for modality, resampler in model.resamplers.items():
        for layer, (attn, _) in enumerate(resampler.layers):
            sites[AttentionSite("resampler", layer, modality)] = attn.attn_probs
    for layer, block in enumerate(model.fusion.blocks):
        sites[AttentionSite("cross", layer)] = block.attn.attn_probs
    return sites


class AttentionCapture:
    """``with AttentionCapture(model) as cap:`` records every attention probability tensor of the passes inside."""

    def __init__(self, model):
        self.model = model
        self.sites = attention_sites(model)
        self.records: dict[AttentionSite, list[Tensor]] = {site: [] for site in self.sites}
        self._handles: list = []

    def __enter__(self) -> AttentionCapture:
        for site, module in self.sites.items():
            self._handles.append(module.register_forward_hook(self._hook(site)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, site: AttentionSite):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            replaced = torch.is_grad_enabled() and not output.requires_grad
            if replaced:
                output = output.detach().requires_grad_(True)  # same storage, same values
            self.records[site].append(output)
            return output if replaced else None

        return hook

    def probs(self, site: AttentionSite) -> Tensor:
        """The probabilities recorded at `site` in the (single) pass inside the block."""
        recorded = self.records[site]
        if len(recorded) != 1:
            raise ConfigError(f"expected one recorded pass at {site}, got {len(recorded)}", where="attention capture")
        return recorded[0]

    def resampler_layers(self, modality: str) -> list[AttentionSite]:
        return sorted(
            (s for s in self.sites if s.kind == "resampler" and s.modality == modality), key=lambda s: s.layer
        )

    def cross_layers(self) -> list[AttentionSite]:
        return sorted((s for s in self.sites if s.kind == "cross"), key=lambda s: s.layer)

    def gradients(self, score: Tensor, *, retain_graph: bool = False) -> dict[AttentionSite, Tensor]:
        """d score / d probabilities at every site (zeros where the score does not depend on them).

        Uses ``torch.autograd.grad``, so no parameter's ``.grad`` is touched.
        """
        sites = list(self.sites)
        tensors = [self.probs(s) for s in sites]
        grads = torch.autograd.grad(score.sum(), tensors, retain_graph=retain_graph, allow_unused=True)
        return {s: torch.zeros_like(t) if g is None else g for s, t, g in zip(sites, tensors, grads)}


# -- targets and their scores ------------------------------------------------------------------


def diagnosis_target(model, name: str) -> Target:
    """The target for diagnosis `name` (one of the model's diagnoses)."""
    names = tuple(model.config.diagnoses)
    if name not in names:
        raise ConfigError(f"unknown diagnosis; the model has {', '.join(names)}", where="explain target")
    return Target(name, names.index(name))


def impression_target(
    model, batch: dict, *, max_new_tokens: int | None = None, prompt: str | Sequence[str] = IMPRESSION_PROMPT
) -> Target:
    """The target for the impression the model writes for this one-case batch (greedy, as Predictor does).

    `prompt` is the prompt, or the prompts of the clauses, the impression is written after. Pass
    the prompts Predictor uses (`Predictor.impression_prompts` of the calibrated probabilities)
    to explain the impression it serves.
    """
    check_single(batch)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ConfigError("an impression needs at least one prompt", where="explain target")
    eos = model.tokenizer.eos_token_id
    clauses = []
    for text, new in zip(
        prompts, model.generate_ids(expand(batch, len(prompts)), prompts, max_new_tokens=max_new_tokens).tolist()
    ):
        if eos in new:
            new = new[: new.index(eos) + 1]
        clauses.append(Clause(text, tuple(int(t) for t in new)))
    return Target(IMPRESSION, None, tuple(clauses))


def check_single(batch: dict) -> None:
    """Explanations are per case: refuse a batch of more than one row."""
    rows = int(batch["image_present"].shape[0])
    if rows != 1:
        raise ConfigError(f"explanations take a batch of one case, got {rows}", where="explain batch")


def expand(batch: dict, rows: int) -> dict:
    """A one-case batch repeated to `rows` rows (tensors only; other entries kept)."""
    return {k: v.expand(rows, *v.shape[1:]).contiguous() if isinstance(v, Tensor) else v for k, v in batch.items()}


def diagnosis_logits(model, batch: dict) -> Tensor:
    """Diagnosis logits (B, K) computed exactly as Predictor.logits does (prompt "Impression:", last token pooled)."""
    device = model.head[0].weight.device
    rows = int(batch["image_present"].shape[0])
    ids, attn = model.prompt_ids([IMPRESSION_PROMPT] * rows, device)  # (B, P)
    pool = torch.full((rows,), ids.shape[1] - 1, device=device)  # (B,)
    return model(batch, ids, attn, pool).diagnosis_logits  # (B, K)


def impression_log_likelihood(
    model, batch: dict, new_ids: Sequence[int], prompt_text: str = IMPRESSION_PROMPT
) -> Tensor:
    """Sum over the generated tokens of log p(token | prompt, earlier tokens, context), per row (B,)."""
    if not new_ids:
        raise ConfigError("the impression target has no generated tokens", where="explain target")
    device = model.head[0].weight.device
    rows = int(batch["image_present"].shape[0])
    prompt, prompt_attn = model.prompt_ids([prompt_text] * rows, device)  # (B, P)
    new = torch.tensor(list(new_ids), dtype=torch.long, device=device)[None].expand(rows, -1)  # (B, G)
    ids = torch.cat([prompt, new], dim=1)  # (B, P + G)
    attn = torch.cat([prompt_attn, torch.ones_like(new)], dim=1)  # (B, P + G)
    pool = torch.full((rows,), prompt.shape[1] - 1, device=device)  # (B,)
    logits = model(batch, ids, attn, pool).lm_logits  # (B, P + G, V)
    start = prompt.shape[1] - 1
    logp = logits[:, start : start + new.shape[1]].float().log_softmax(dim=-1)  # (B, G, V)
    return logp.gather(-1, new[..., None]).squeeze(-1).sum(dim=-1)  # (B,)


def target_score(model, batch: dict, target: Target) -> Tensor:
    """The scalar per row (B,) that `target` explains: a diagnosis logit or the impression log-likelihood."""
    if target.index is not None:
        return diagnosis_logits(model, batch)[:, target.index]
    return torch.stack([impression_log_likelihood(model, batch, c.ids, c.prompt) for c in target.clauses]).sum(dim=0)


def query_rows(model, target: Target, clause: int = 0) -> tuple[int, ...]:
    """LM positions whose cross-attention rows plain rollout reads for `target`.

    A diagnosis reads the last prompt token (where the head pools); the impression reads, in the
    pass of its clause `clause`, the positions that predict each generated token.
    """
    if target.index is not None:
        return (len(model.prompt_ids([IMPRESSION_PROMPT], "cpu")[0][0]) - 1,)
    prompt, ids = target.clauses[clause]
    start = len(model.prompt_ids([prompt], "cpu")[0][0]) - 1
    return tuple(range(start, start + len(ids)))
