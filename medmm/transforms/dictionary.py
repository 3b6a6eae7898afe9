"""MONAI dictionary transforms that turn study arrays into model-ready tensors.

Each transform reads and writes keys of a dict, so they compose with monai.transforms.Compose
and MONAI's own transforms (Resized, EnsureChannelFirstd, ...). One test per transform lives
in tests/transforms/test_dictionary.py.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

# Reference mean and standard deviation per vital-sign channel (adult inpatients), used to
# put channels on a common scale. Fixed numbers, not fitted, so preprocessing never depends on
# the cohort it runs on.
VITAL_REFERENCE: dict[str, tuple[float, float]] = {
    "heart_rate": (80.0, 15.0),
    "resp_rate": (16.0, 4.0),
    "spo2": (96.0, 3.0),
    "temperature": (37.0, 0.7),
    "sbp": (120.0, 20.0),
    "dbp": (75.0, 12.0),
    "weight": (75.0, 18.0),
}


class WindowLeveld(MapTransform):
    """Apply a VOI window (center, width) read from `window_key`: [c - w/2, c + w/2] -> [0, 1], clipped."""

    def __init__(self, keys: KeysCollection, window_key: str, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.window_key = window_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        center, width = (float(x) for x in d[self.window_key])
        width = max(width, 1e-6)
        for key in self.key_iterator(d):
            lo = center - width / 2.0
            d[key] = np.clip((np.asarray(d[key], dtype=np.float32) - lo) / width, 0.0, 1.0).astype(np.float32)
        return d


class NormalizeVitalsd(MapTransform):
    """Z-score each vital channel with fixed reference statistics; unobserved cells become 0.

    Reads values (T, C) with NaN where unobserved and writes float32 values and a bool
    `observed` mask under `observed_key`. The encoder masks unobserved cells itself; the zeros
    are only there so that no NaN reaches a tensor.
    """

    def __init__(
        self,
        keys: KeysCollection,
        channels: Sequence[str],
        observed_key: str = "vitals_observed",
        allow_missing_keys: bool = False,
        reference: Mapping[str, tuple[float, float]] | None = None,
    ):
        """`reference` adds (mean, SD) for channels VITAL_REFERENCE does not have (a task's own channels)."""
        super().__init__(keys, allow_missing_keys)
        self.observed_key = observed_key
        table = {**VITAL_REFERENCE, **(reference or {})}
        self.mean = np.array([table[c][0] for c in channels], dtype=np.float32)
        self.std = np.array([table[c][1] for c in channels], dtype=np.float32)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            values = np.asarray(d[key], dtype=np.float32)
            observed = ~np.isnan(values)
            z = np.where(observed, (values - self.mean) / self.std, 0.0).astype(np.float32)
            d[key] = z
            d[self.observed_key] = observed
        return d


class TokenizeNotesd(MapTransform):
    """Tokenize a list of note texts into fixed-size (M, L) ids, attention mask and note mask.

    The newest `max_notes` notes are kept (the list is in time order); longer notes are
    truncated to `max_tokens` tokens. Character offsets are kept under `<key>_offsets` (M, L, 2)
    so that token relevance can be mapped back to words of the original text.
    """

    def __init__(
        self,
        keys: KeysCollection,
        tokenizer,
        max_notes: int = 3,
        max_tokens: int = 128,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.tokenizer = tokenizer
        self.max_notes = max_notes
        self.max_tokens = max_tokens

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            texts = list(d[key])[-self.max_notes :]
            ids = np.zeros((self.max_notes, self.max_tokens), dtype=np.int64)
            attn = np.zeros((self.max_notes, self.max_tokens), dtype=np.int64)
            offsets = np.zeros((self.max_notes, self.max_tokens, 2), dtype=np.int64)
            present = np.zeros((self.max_notes,), dtype=bool)
            if texts:
                enc = self.tokenizer(
                    texts,
                    max_length=self.max_tokens,
                    truncation=True,
                    padding="max_length",
                    return_offsets_mapping=True,
                    return_tensors="np",
                )
                n = len(texts)
                ids[:n] = enc["input_ids"]
                attn[:n] = enc["attention_mask"]
                offsets[:n] = enc["offset_mapping"]
                present[:n] = True
            d[f"{key}_ids"] = ids
            d[f"{key}_attention"] = attn
            d[f"{key}_offsets"] = offsets
            d[f"{key}_present"] = present
            del d[key]
        return d


class ToTorchd(MapTransform):
    """Convert numpy arrays to plain torch tensors (no MetaTensor), keeping their dtype."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            tensor = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(np.asarray(value))
            d[key] = tensor.contiguous()
        return d
