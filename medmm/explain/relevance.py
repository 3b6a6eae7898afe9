"""Attention relevance: captured attention composed into relevance over each modality's encoder tokens.

Two compositions of the same captured probabilities:

- "attention" (the default view): gradient-weighted attention in the manner of Chefer et al.
  (ICCV 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
  Encoder-Decoder Transformers"): each attention map A becomes  Ā = mean_heads((dS/dA ⊙ A)^+),
  S the explained score, so a head counts by how much its attention raised S.
- "rollout": plain attention rollout (Abnar & Zuidema, 2020): Ā = mean_heads(A). It is the same
  for every diagnosis (class-agnostic) and is shown for comparison.

Composition. The LM's cross-attention gives relevance over the context latents,
    r_lat = sum over fusion blocks and query rows of Ā_block[row, :]
(every row for "attention", whose gradient already carries the LM's own self-attention; for
"rollout" the rows of `capture.query_rows`). In each modality's resampler, latents start with no
input relevance, R_0 = 0 (K, N); layer l (residual update lat += attn([tokens; lat])) gives
    R_l = R_{l-1} + Ā_l[:, :N] + Ā_l[:, N:] @ R_{l-1},
and the token relevance is r_tok = r_lat[modality's latents] @ R_L. Every token map is clipped at
0, kept to the tokens the model read, and scaled to sum to 1; `share` records how the latent
relevance split between the modalities. In the "attention" view, a modality whose latents also
receive a path without attention (vitals window statistics, the notes bag of words) has that
path credited by gradient x input, in proportion to its first-order contribution (bypass.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from medmm.errors import ConfigError
from medmm.explain.bypass import PathCapture, PathRelevance, mix, spread
from medmm.explain.capture import (
    AttentionCapture,
    AttentionSite,
    Target,
    check_single,
    diagnosis_logits,
    impression_log_likelihood,
    query_rows,
)

ATTENTION_METHODS = ("attention", "rollout")
DEFAULT_METHOD = "attention"  # the map the UI and reports show first


@dataclass(frozen=True)
class TokenRelevance:
    """Relevance of one target over the encoder tokens of each modality the case has (one case).

    `maps[m]` has the shape of modality m's token grid: image (gh, gw) (or (gd, gh, gw)), notes
    (M, L), vitals (T, C). Values are >= 0, 0 on tokens the model did not read, and sum to 1.
    A modality absent from the case has no entry (never a map of zeros).
    """

    target: str  # diagnosis name or "impression"
    method: str  # attention | rollout | gradcam | integrated_gradients
    maps: Mapping[str, np.ndarray]
    share: Mapping[str, float]  # modality -> fraction of the latent relevance; {} for gradient-only methods
    score: float  # the explained logit or log-likelihood


def token_validity(model, batch: dict) -> dict[str, np.ndarray]:
    """Per modality present in the one-case `batch`, the tokens the model read, shaped as its token grid."""
    check_single(batch)
    present = {m: bool(v[0]) for m, v in model.presence(batch).items()}
    out: dict[str, np.ndarray] = {}
    if present.get("image"):
        out["image"] = np.ones(model.encoders["image"].grid(batch["image"].shape[2:]), dtype=bool)
    if present.get("notes"):
        notes = batch["notes_attention"][0].bool() & batch["notes_present"][0].bool()[:, None]  # (M, L)
        out["notes"] = notes.cpu().numpy()
    if present.get("vitals"):
        out["vitals"] = batch["vitals_observed"][0].bool().cpu().numpy()  # (T, C)
    return out


def normalise(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Clip at 0, zero outside `valid`, scale to sum 1; with no positive value, uniform over `valid`."""
    if values.shape != valid.shape:
        raise ConfigError(f"relevance {values.shape} does not match its token grid {valid.shape}", where="relevance")
    out = np.where(valid, np.clip(np.nan_to_num(values.astype(np.float64)), 0.0, None), 0.0)
    total = out.sum()
    if total > 0:
        return out / total
    return valid.astype(np.float64) / max(int(valid.sum()), 1)


def latent_spans(model) -> dict[str, slice]:
    """The context latents of each modality, in the order MedMM.encode concatenates them."""
    spans, start = {}, 0
    for name in model.encoders:
        k = model.resamplers[name].num_latents
        spans[name] = slice(start, start + k)
        start += k
    return spans


def head_mean(probs: Tensor, grads: Tensor | None) -> Tensor:
    """Ā (B, Q, K): mean over heads of (grad ⊙ A)^+ (gradient-weighted) or of A (rollout)."""
    if grads is None:
        return probs.detach().float().mean(dim=1)  # (B, Q, K)
    return (grads.float() * probs.detach().float()).clamp(min=0).mean(dim=1)  # (B, Q, K)


def perceiver_rollout(layers: Sequence[Tensor], num_tokens: int) -> Tensor:
    """R (B, K, N): relevance of each latent for each input token through the resampler layers.

    `layers` are Ā_l (B, K, N + K) in layer order; R_0 = 0; R_l = R_{l-1} + Ā_l[:, :, :N] + Ā_l[:, :, N:] @ R_{l-1}.
    """
    first = layers[0]
    rel = torch.zeros(first.shape[0], first.shape[1], num_tokens, dtype=first.dtype, device=first.device)  # (B, K, N)
    for a in layers:
        rel = rel + a[:, :, :num_tokens] + torch.matmul(a[:, :, num_tokens:], rel)  # (B, K, N)
    return rel


def compose(
    model,
    capture: AttentionCapture,
    grads: Mapping[AttentionSite, Tensor] | None,
    rows: Sequence[int] | None,
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Token relevance (N_m,) per modality and the latent share per modality, for a one-case capture.

    `grads` None gives plain rollout; `rows` restricts the LM rows (None: every row).
    """
    r_lat = None
    for site in capture.cross_layers():
        a = head_mean(capture.probs(site), None if grads is None else grads[site])  # (1, T, K_total)
        if rows is not None:
            a = a[:, list(rows)]  # (1, Q, K_total)
        block = a.sum(dim=1)[0]  # (K_total,)
        r_lat = block if r_lat is None else r_lat + block
    spans = latent_spans(model)
    tokens: dict[str, Tensor] = {}
    mass: dict[str, float] = {}
    for name, span in spans.items():
        sites = capture.resampler_layers(name)
        probs = [capture.probs(s) for s in sites]
        num_tokens = probs[0].shape[-1] - probs[0].shape[-2]
        layers = [head_mean(p, None if grads is None else grads[s]) for s, p in zip(sites, probs)]  # (1, K, N + K) each
        rel = perceiver_rollout(layers, num_tokens)[0]  # (K, N)
        weights = r_lat[span]  # (K,)
        tokens[name] = weights @ rel  # (N,)
        mass[name] = float(weights.sum())
    return tokens, mass


def _on_grid(model, modality: str, tokens: Tensor, valid: np.ndarray) -> np.ndarray:
    """A modality's token relevance (N,) on its token grid (vitals summary tokens spread over their channel)."""
    if modality == "vitals":
        observed = torch.from_numpy(valid).to(tokens.device)
        return model.encoders["vitals"].tokens_to_grid(tokens.detach(), observed).cpu().numpy()
    return tokens.detach().cpu().numpy().reshape(valid.shape)


def _maps(
    model, batch: dict, tokens: Mapping[str, Tensor], mass: Mapping[str, float], paths: Mapping[str, PathRelevance]
) -> tuple[dict, dict]:
    valid = token_validity(model, batch)
    maps = {m: mix(normalise(_on_grid(model, m, tokens[m], v), v), paths.get(m), v) for m, v in valid.items()}
    total = sum(mass[m] for m in valid)
    share = {m: (mass[m] / total if total > 0 else 1.0 / len(valid)) for m in valid}
    return maps, share


def attention_relevance(
    model, batch: dict, targets: Sequence[Target], methods: Sequence[str] = ATTENTION_METHODS
) -> list[TokenRelevance]:
    """Relevance of every target by every attention method, for a one-case batch.

    Diagnoses share one forward pass (one gradient per diagnosis); the impression takes its own.
    """
    check_single(batch)
    unknown = [m for m in methods if m not in ATTENTION_METHODS]
    if unknown:
        raise ConfigError(
            f"unknown attention method(s) {unknown}; known: {', '.join(ATTENTION_METHODS)}", where="explain"
        )
    out: list[TokenRelevance] = []
    diagnoses = [t for t in targets if t.index is not None]
    graded = "attention" in methods  # plain rollout needs no gradient
    if diagnoses:
        with torch.set_grad_enabled(graded), AttentionCapture(model) as capture, PathCapture(model) as paths:
            logits = diagnosis_logits(model, batch)  # (1, K)
        for i, target in enumerate(diagnoses):
            score = logits[:, target.index]
            bypass = _paths(model, batch, paths, score) if graded else {}
            grads = capture.gradients(score, retain_graph=i < len(diagnoses) - 1) if graded else None
            out += _relevances(
                model,
                batch,
                target,
                float(score[0].detach()),
                [_composed(model, capture, target, grads, methods)],
                methods,
                [bypass],
            )
    for target in (t for t in targets if t.index is None):
        # an impression written in clauses: one pass per clause, relevance summed over the passes
        parts, bypasses, total = [], [], 0.0
        for k, clause in enumerate(target.clauses):
            with torch.set_grad_enabled(graded), AttentionCapture(model) as capture, PathCapture(model) as paths:
                score = impression_log_likelihood(model, batch, clause.ids, clause.prompt)  # (1,)
            bypasses.append(_paths(model, batch, paths, score) if graded else {})
            grads = capture.gradients(score) if graded else None
            parts.append(_composed(model, capture, target, grads, methods, k))
            total += float(score[0].detach())
        out += _relevances(model, batch, target, total, parts, methods, bypasses)
    return out


def _paths(model, batch: dict, paths: PathCapture, score: Tensor) -> dict[str, PathRelevance]:
    """Each attention-free path's positive contribution and spread for one pass's `score` (the graph is kept)."""
    return {
        m: PathRelevance(max(c_s, 0.0), max(c_r, 0.0), np.clip(spread(model, batch, m, g_s), 0.0, None))
        for m, (c_s, c_r, g_s) in paths.contributions(score).items()
    }


def _composed(model, capture, target: Target, grads, methods, clause: int = 0) -> dict[str, tuple[dict, dict]]:
    """(token relevance, latent mass) per method for one captured pass (see compose)."""
    return {
        method: compose(model, capture, grads, None)
        if method == "attention"
        else compose(model, capture, None, query_rows(model, target, clause))
        for method in methods
    }


def _relevances(
    model,
    batch,
    target: Target,
    score: float,
    parts: Sequence[Mapping],
    methods,
    bypasses: Sequence[Mapping[str, PathRelevance]],
) -> list[TokenRelevance]:
    """One TokenRelevance per method from the sum of the passes' token relevance, latent mass and (attention) paths."""
    out = []
    paths: dict[str, PathRelevance] = {}
    for bypass in bypasses:
        for m, p in bypass.items():
            paths[m] = p if m not in paths else paths[m] + p
    for method in methods:
        tokens = {m: sum(p[method][0][m] for p in parts) for m in parts[0][method][0]}
        mass = {m: sum(p[method][1][m] for p in parts) for m in parts[0][method][1]}
        maps, share = _maps(model, batch, tokens, mass, paths if method == "attention" else {})
        out.append(TokenRelevance(target.name, method, maps, share, score))
    return out
