"""Fusion: Perceiver resamplers per modality and gated cross-attention into a causal LM."""

from medmm.fusion.context import ModalitySpan, MultimodalContext
from medmm.fusion.layers import (
    DECODER_LAYER_PATHS,
    CrossAttentionFusion,
    FusionConfig,
    base_model,
    decoder_layers,
    hidden_size,
    model_type,
)
from medmm.fusion.resampler import PerceiverAttention, PerceiverResampler
from medmm.fusion.xattn import FeedForward, GatedCrossAttentionBlock, MaskedCrossAttention, masked_attention

__all__ = [
    "DECODER_LAYER_PATHS",
    "CrossAttentionFusion",
    "FeedForward",
    "FusionConfig",
    "GatedCrossAttentionBlock",
    "MaskedCrossAttention",
    "ModalitySpan",
    "MultimodalContext",
    "PerceiverAttention",
    "PerceiverResampler",
    "base_model",
    "decoder_layers",
    "hidden_size",
    "masked_attention",
    "model_type",
]
