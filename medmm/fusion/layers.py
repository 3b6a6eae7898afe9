"""Insert gated cross-attention blocks before every n-th decoder layer of a Hugging Face causal LM.

The decoder layers are found through an explicit table keyed by ``config.model_type``. The blocks
live in :class:`CrossAttentionFusion` (a separate module), and run from forward pre-hooks on the
chosen decoder layers, so the base checkpoint's parameter names never change. The hooks read the
multimodal context only inside ``with fusion.use_context(ctx):``; outside it the LM is exactly the
base LM. Under gradient checkpointing transformers checkpoints each layer's ``forward``, which the
pre-hooks sit outside of, so ``backward()`` may run after the context has been left.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from medmm.errors import ConfigError
from medmm.fusion.context import MultimodalContext
from medmm.fusion.xattn import GatedCrossAttentionBlock

# config.model_type -> attribute path of the decoder-layer list, from the causal-LM class.
DECODER_LAYER_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "mixtral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "gemma3": "model.language_model.layers",  # Gemma3ForConditionalGeneration
    "gpt2": "transformer.h",
    "phi": "model.layers",
    "phi3": "model.layers",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
    "falcon": "transformer.h",
}


def base_model(lm: nn.Module) -> nn.Module:
    """The model under any peft wrapper (PeftModel.get_base_model), else `lm` itself."""
    while hasattr(lm, "get_base_model"):
        inner = lm.get_base_model()
        if inner is lm:
            break
        lm = inner
    return lm


def model_type(lm: nn.Module) -> str:
    """`config.model_type` of the (unwrapped) LM."""
    config = getattr(base_model(lm), "config", None)
    kind = getattr(config, "model_type", None)
    if not kind:
        raise ConfigError(f"{type(lm).__name__} has no config.model_type", where="language model")
    return str(kind)


def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The LM's decoder-layer list, located through DECODER_LAYER_PATHS."""
    kind = model_type(lm)
    if kind not in DECODER_LAYER_PATHS:
        raise ConfigError(
            f"unknown architecture model_type={kind!r}; known: {', '.join(sorted(DECODER_LAYER_PATHS))}",
            where="fusion decoder-layer table",
        )
    path = DECODER_LAYER_PATHS[kind]
    try:
        layers = functools.reduce(getattr, path.split("."), base_model(lm))
    except AttributeError as exc:
        raise ConfigError(
            f"model_type={kind!r} has no attribute path {path!r}", where="fusion decoder-layer table"
        ) from exc
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"{path!r} of model_type={kind!r} is not a layer list", where="fusion decoder-layer table")
    return layers


def hidden_size(lm: nn.Module) -> int:
    """Width of the LM's residual stream (the text config's hidden_size)."""
    config = base_model(lm).config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


@dataclass(frozen=True)
class FusionConfig:
    """Where and how wide the gated cross-attention blocks are."""

    every_n: int = 2  # a block before decoder layers n-1, 2n-1, ... (every_n=1: before every layer)
    heads: int = 8
    dim_head: int | None = None  # None: hidden_size // heads
    ff_mult: int = 4
    dim_context: int | None = None  # width of the context latents; None: the LM's hidden size


class CrossAttentionFusion(nn.Module):
    """Gated cross-attention blocks for one LM, applied through hooks while a context is in use."""

    def __init__(self, num_layers: int, dim: int, config: FusionConfig = FusionConfig()):
        super().__init__()
        if config.every_n < 1:
            raise ConfigError(f"every_n must be at least 1, got {config.every_n}", where="fusion config")
        self.config = config
        self.num_layers = num_layers
        self.layer_indices: tuple[int, ...] = tuple(i for i in range(num_layers) if (i + 1) % config.every_n == 0)
        if not self.layer_indices:
            raise ConfigError(
                f"every_n={config.every_n} places no block in a {num_layers}-layer model", where="fusion config"
            )
        self.blocks = nn.ModuleList(
            GatedCrossAttentionBlock(
                dim, config.heads, config.ff_mult, dim_context=config.dim_context, dim_head=config.dim_head
            )
            for _ in self.layer_indices
        )
        self._handles: list[RemovableHandle] = []
        self._context: MultimodalContext | None = None

    @classmethod
    def for_lm(cls, lm: nn.Module, config: FusionConfig = FusionConfig()) -> CrossAttentionFusion:
        """Blocks sized for `lm` (not yet attached)."""
        return cls(len(decoder_layers(lm)), hidden_size(lm), config)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @property
    def context(self) -> MultimodalContext | None:
        """The context in use, or None outside ``use_context``."""
        return self._context

    def attach(self, lm: nn.Module) -> None:
        """Register the pre-hooks on `lm`'s decoder layers; the LM's modules are not changed."""
        if self.attached:
            raise ConfigError("fusion blocks are already attached; detach them first", where="fusion")
        layers = decoder_layers(lm)
        if len(layers) != self.num_layers:
            raise ConfigError(
                f"fusion built for {self.num_layers} decoder layers, the model has {len(layers)}", where="fusion"
            )
        for position, index in enumerate(self.layer_indices):
            hook = self._make_hook(position, type(layers[index]).__name__)
            self._handles.append(layers[index].register_forward_pre_hook(hook, with_kwargs=True))

    def detach(self) -> None:
        """Remove the hooks; the LM is the base LM again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def use_context(self, context: MultimodalContext) -> Iterator[MultimodalContext]:
        """Make `context` visible to the blocks for the LM calls inside the block; always cleared after."""
        previous = self._context
        self._context = context
        try:
            yield context
        finally:
            self._context = previous

    def apply_block(self, position: int, hidden: Tensor, context: MultimodalContext) -> Tensor:
        """Run block `position` on hidden states (B, T, D) in the block's dtype, return the LM's dtype."""
        if hidden.shape[0] != context.batch_size:
            raise ConfigError(
                f"hidden states have batch {hidden.shape[0]} but the context has {context.batch_size}; "
                "expand it with MultimodalContext.repeat_interleave",
                where="fusion",
            )
        block = self.blocks[position]
        ref = block.attn_gate
        latents = context.latents.to(device=ref.device, dtype=ref.dtype)  # (B, K, Dc)
        mask = context.mask.to(device=ref.device)  # (B, K)
        kv = context.keys_values(position, block, latents, mask)
        out = block(hidden.to(device=ref.device, dtype=ref.dtype), latents, mask, kv)  # (B, T, D)
        return out.to(device=hidden.device, dtype=hidden.dtype)

    def _make_hook(self, position: int, layer_name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            context = self._context
            if context is None:
                return None
            if args:
                return (self.apply_block(position, args[0], context), *args[1:]), kwargs
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": self.apply_block(position, kwargs["hidden_states"], context)}
            raise ConfigError(f"{layer_name} was called without hidden states", where="fusion pre-hook")

        return hook
