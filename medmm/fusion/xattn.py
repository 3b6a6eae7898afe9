"""Gated cross-attention from language-model hidden states to the multimodal context.

Both the attention and the feed-forward are scaled by tanh(gate) with the gate starting at 0,
so an untrained block adds exactly nothing and the fused model equals the base LM. Attention is
computed explicitly and its probabilities (B, heads, Q, K) pass through ``attn_probs``
(an ``nn.Identity``) so a forward hook can read them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medmm.errors import ConfigError


def head_size(dim: int, heads: int, dim_head: int | None, where: str) -> int:
    """Width of one attention head: `dim_head`, or dim // heads when that divides evenly."""
    if dim_head is not None:
        return dim_head
    if dim % heads:
        raise ConfigError(f"width {dim} is not divisible by {heads} heads; set dim_head", where=where)
    return dim // heads


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, H*Dh) -> (B, H, N, Dh)."""
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, N, Dh) -> (B, N, H*Dh)."""
    batch, heads, length, width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * width)


def masked_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, probs_hook: nn.Module) -> Tensor:
    """Softmax attention over keys where key_mask (B, K) is True; a row with no valid key gives 0.

    q (B, H, Q, Dh), k and v (B, H, K, Dh) -> (B, H, Q, Dh). The probabilities pass through
    `probs_hook` so that explanations can capture them without changing the model.
    """
    valid_rows = key_mask.any(dim=-1)  # (B,)
    # Fully masked rows attend to every key (finite numbers), then get zero probabilities.
    usable = key_mask | ~valid_rows[:, None]  # (B, K)
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, Q, K)
    scores = scores.masked_fill(~usable[:, None, None, :], float("-inf"))  # (B, H, Q, K)
    probs = scores.softmax(dim=-1)  # (B, H, Q, K)
    probs = probs * valid_rows[:, None, None, None].to(probs.dtype)  # (B, H, Q, K)
    probs = probs_hook(probs)
    return torch.matmul(probs, v)  # (B, H, Q, Dh)


class FeedForward(nn.Sequential):
    """Pre-norm MLP: LayerNorm, ff_in, GELU, ff_out (names chosen to stay clear of LoRA targets)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, dim * mult, bias=False)
        self.act = nn.GELU()
        self.ff_out = nn.Linear(dim * mult, dim, bias=False)


class MaskedCrossAttention(nn.Module):
    """Queries from hidden states (B, T, D), keys/values from context latents (B, K, Dc)."""

    def __init__(self, dim: int, dim_context: int, heads: int = 8, dim_head: int | None = None):
        super().__init__()
        self.heads = heads
        inner = heads * head_size(dim, heads, dim_head, where="cross-attention")
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_context, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.attn_probs = nn.Identity()

    def keys_values(self, context: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, K, Dh) of the context; computed once per case and cacheable."""
        # Masked latents are zeroed so that nothing there (not even NaN) reaches the output.
        context = torch.where(mask[..., None], context, torch.zeros((), dtype=context.dtype, device=context.device))
        k, v = self.to_kv(context).chunk(2, dim=-1)  # (B, K, inner) each
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, hidden: Tensor, mask: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        q = split_heads(self.to_q(self.norm(hidden)), self.heads)  # (B, H, T, Dh)
        out = masked_attention(q, kv[0], kv[1], mask, self.attn_probs)  # (B, H, T, Dh)
        return self.to_out(merge_heads(out))  # (B, T, D)


class GatedCrossAttentionBlock(nn.Module):
    """x + tanh(a_attn) * xattn(x, ctx), then + tanh(a_ff) * ff(x); both gates start at 0.

    Rows whose context is fully masked get exactly zero added.
    """

    def __init__(
        self, dim: int, heads: int = 8, ff_mult: int = 4, *, dim_context: int | None = None, dim_head: int | None = None
    ):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_context or dim, heads=heads, dim_head=dim_head)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = FeedForward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def keys_values(self, context: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, K, Dh) for `context` (B, K, Dc) with mask (B, K)."""
        return self.attn.keys_values(context, mask)

    def forward(self, hidden: Tensor, context: Tensor, mask: Tensor, kv: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Update hidden (B, T, D) from context (B, K, Dc) with mask (B, K); `kv` reuses cached keys/values."""
        if kv is None:
            kv = self.keys_values(context, mask)
        has_context = mask.any(dim=-1)[:, None, None]  # (B, 1, 1)
        zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        attended = torch.where(has_context, self.attn(hidden, mask, kv), zero)  # (B, T, D)
        x = hidden + torch.tanh(self.attn_gate) * attended  # (B, T, D)
        fed = torch.where(has_context, self.ff(x), zero)  # (B, T, D)
        return x + torch.tanh(self.ff_gate) * fed  # (B, T, D)
