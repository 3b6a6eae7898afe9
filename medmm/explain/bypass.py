"""Relevance through the paths that reach a modality's latents without attention.

Two modalities can have such a path (see MedMM.encode): with vitals summary tokens, a linear map
of every channel's window statistics (`summary_skip`) is added to each vitals latent; with a notes
lexical embedding, a linear map of the mean word-piece embedding over the words read
(`lexical_skip`). No attention map sees these paths, so a map made of attention alone leaves out
what the model took from them. The gradient-weighted "attention" view credits them thus:

- split: the modality's latents are L = R + s, R the resampler's output and s the path's vector
  added to every kept latent (an absent modality has zero latents, so zero is the reference of
  both). With g = dS/dL for the explained score S, the first-order contributions are
  c_R = sum_k g_k . R_k and c_s = sum_k g_k . s = g_s . s; the path's share of the map is
  f = c_s^+ / (c_s^+ + c_R^+) (0 when neither is positive).
- spread: the path's relevance over the modality's tokens is gradient x input of g_s . s(x) with
  g_s held fixed: per vital-sign cell x * d(g_s . s)/dx on the z-scored grid (0 is the reference
  population's mean); per note word piece (g_s . W e_i) / n. Both are exact: a mean of embeddings
  is linear, and every window statistic but the share of steps observed is positively homogeneous
  of degree 1 in the values, so by Euler's theorem the cells add up to g_s . (s - bias) less the
  share's term (which the values do not move); gradient x input here equals integrated gradients
  from the reference. Clipped at 0 (only evidence for S counts).
- the map: (1 - f) * attention map + f * path map, each scaled to sum 1 first.

Everything is read through forward hooks and ``torch.autograd.grad``: the model is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BYPASSES = {"vitals": "summary_skip", "notes": "lexical_skip"}  # modality -> MedMM attribute of its path


@dataclass(frozen=True)
class PathRelevance:
    """One modality's path for one explained score: its share of the map and its spread over the tokens."""

    positive_path: float  # c_s^+
    positive_attention: float  # c_R^+
    tokens: np.ndarray  # (token grid) gradient x input of the path, clipped at 0

    def __add__(self, other: PathRelevance) -> PathRelevance:
        """Relevance summed over passes (an impression's clauses)."""
        return PathRelevance(
            self.positive_path + other.positive_path,
            self.positive_attention + other.positive_attention,
            self.tokens + other.tokens,
        )

    @property
    def share(self) -> float:
        """f, the path's share of the map (0 when its spread holds no positive value)."""
        total = self.positive_path + self.positive_attention
        if total <= 0 or not (self.tokens > 0).any():
            return 0.0
        return self.positive_path / total


def mix(attention_map: np.ndarray, path: PathRelevance | None, valid: np.ndarray) -> np.ndarray:
    """(1 - f) * the attention map + f * the path's map on the tokens read (both sum to 1); the attention map when f = 0."""
    f = 0.0 if path is None else path.share
    if f == 0.0:
        return attention_map
    spread = np.where(valid, np.clip(path.tokens, 0.0, None), 0.0)
    total = spread.sum()
    if total <= 0:
        return attention_map
    return (1.0 - f) * attention_map + f * spread / total


class PathCapture:
    """``with PathCapture(model) as paths:`` keeps the resampler output and path vector of every modality with a path."""

    def __init__(self, model):
        self.model = model
        self.modalities = tuple(m for m, attr in BYPASSES.items() if m in model.encoders and hasattr(model, attr))
        self.latents: dict[str, Tensor] = {}
        self.vectors: dict[str, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> PathCapture:
        for m in self.modalities:
            self._handles.append(
                self.model.resamplers[m].register_forward_hook(self._keep(self.latents, m, tuple_output=True))
            )
            self._handles.append(getattr(self.model, BYPASSES[m]).register_forward_hook(self._keep(self.vectors, m)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _keep(store: dict, modality: str, tuple_output: bool = False):
        def hook(module, inputs, output):
            value = output[0] if tuple_output else output
            replaced = torch.is_grad_enabled() and not value.requires_grad
            if replaced:  # nothing upstream needs a gradient: the same values as a leaf that takes one
                value = value.detach().requires_grad_(True)
            store[modality] = value
            if not replaced:
                return None
            return (value, *output[1:]) if tuple_output else value

        return hook

    def contributions(self, score: Tensor) -> dict[str, tuple[float, float, Tensor]]:
        """Per modality with a path that the pass used: (c_s, c_R, g_s) for a one-case `score`; the graph is kept."""
        used = [m for m in self.modalities if m in self.vectors and m in self.latents]
        if not used:
            return {}
        tensors = [t for m in used for t in (self.vectors[m], self.latents[m])]
        grads = torch.autograd.grad(score.sum(), tensors, retain_graph=True, allow_unused=True)
        out = {}
        for i, m in enumerate(used):
            g_s, g_r = grads[2 * i], grads[2 * i + 1]
            s, r = self.vectors[m].detach().float(), self.latents[m].detach().float()
            c_s = 0.0 if g_s is None else float((g_s.float() * s).sum())
            c_r = 0.0 if g_r is None else float((g_r.float() * r).sum())
            out[m] = (c_s, c_r, torch.zeros_like(s[0]) if g_s is None else g_s.detach().float()[0])
        return out


def spread(model, batch: dict, modality: str, g_s: Tensor) -> np.ndarray:
    """Gradient x input of g_s . s over the modality's token grid (vitals (T, C), notes (M, L)); 0 on tokens not read.

    For the notes it sums to g_s . (s - bias) exactly; negative values (evidence against) are kept here.
    """
    present = model.presence(batch)
    skip = getattr(model, BYPASSES[modality])
    weight = skip.weight
    w = g_s.to(device=weight.device, dtype=torch.float32) @ weight.float()  # (F,): d(g_s . s)/d(path input)
    if modality == "vitals":
        observed = batch["vitals_observed"].bool() & present["vitals"][:, None, None]  # (1, T, C)
        with torch.enable_grad():
            x = batch["vitals"].detach().to(weight.dtype).clone().requires_grad_(True)  # (1, T, C)
            features = model.encoders["vitals"].summary_features(x, observed)  # (1, F)
            (grad,) = torch.autograd.grad((features.float() @ w).sum(), [x], allow_unused=True)
        if grad is None:
            return np.zeros(tuple(x.shape[1:]))
        # sd's square root has no finite gradient at 0 (a constant channel): such terms give no credit
        grad = torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
        cells = torch.where(observed, x.detach().float() * grad, torch.zeros((), device=x.device))[
            0
        ]  # (T, C); unobserved may hold NaN
        return cells.cpu().numpy().astype(np.float64)
    note_present = batch["notes_present"].bool() & present["notes"][:, None]  # (1, M)
    read = batch["notes_attention"].bool() & note_present[..., None]  # (1, M, L)
    encoder = model.encoders["notes"]
    with torch.no_grad():
        words = encoder.lexical(batch["notes_ids"].to(read.device)).float()  # (1, M, L, E)
        per_word = (words @ w) * read.float() / read.float().sum().clamp(min=1.0)  # (1, M, L)
    return per_word[0].cpu().numpy().astype(np.float64)
