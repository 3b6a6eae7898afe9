"""Modality encoders: each maps its inputs and mask to tokens (B, N, D) and a mask (B, N)."""

from medmm.encoders.image import ImageEncoder, ImageEncoderConfig
from medmm.encoders.text import TextEncoder, TextEncoderConfig, default_model_path, load_note_tokenizer
from medmm.encoders.vitals import VitalsEncoder, VitalsEncoderConfig

__all__ = [
    "ImageEncoder",
    "ImageEncoderConfig",
    "TextEncoder",
    "TextEncoderConfig",
    "VitalsEncoder",
    "VitalsEncoderConfig",
    "default_model_path",
    "load_note_tokenizer",
]
