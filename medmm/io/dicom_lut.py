"""Stored pixel values to output units: the modality LUT and the stored VOI window.

The modality LUT is a rescale (slope, intercept), per frame where the file has per-frame
functional groups, or a Modality LUT Sequence, and is read strictly since a wrong rescale would
silently mislead; the window is the first stored (center, width), dropped with an Issue when
invalid. Each frame's output range comes back too: MONOCHROME1 inversion, applied where the
file is decoded, flips within it.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from medmm.errors import DicomError
from medmm.io.dicom_elements import INVALID, _group_item, _int, _numbers, tag_label
from medmm.records import Issue


def _modality_lut(
    frames: np.ndarray, ds: Dataset, source: str, issues: list[Issue]
) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    """Output values (F, H, W), the first frame's (slope, intercept), each frame's output range (F, 2)."""
    n = frames.shape[0]
    bits = _int(ds, "BitsStored", source, 0) or _int(ds, "BitsAllocated", source, 0)
    signed = _int(ds, "PixelRepresentation", source, 0) == 1
    if frames.dtype.kind == "f" or not 0 < bits <= 32:
        stored = np.array([np.nanmin(frames), np.nanmax(frames)], dtype=np.float64)
    else:
        stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1], dtype=np.int64)
    per_frame = [_rescale(_group_item(ds, i, "PixelValueTransformationSequence"), source, issues) for i in range(n)]
    if any(r is not None for r in per_frame):
        fallback = _rescale(ds, source, issues) or (1.0, 0.0)
        pairs = np.array([r or fallback for r in per_frame], dtype=np.float64)  # (F, 2)
        values = frames.astype(np.float64) * pairs[:, 0, None, None] + pairs[:, 1, None, None]
        ends = stored[None, :] * pairs[:, :1] + pairs[:, 1:]  # (F, 2)
        return values, (float(pairs[0, 0]), float(pairs[0, 1])), np.sort(ends, axis=1)
    if ds.get("ModalityLUTSequence"):
        values = apply_modality_lut(frames, ds).astype(np.float64)
        ends = apply_modality_lut(stored, ds).astype(np.float64)
        return values, (1.0, 0.0), np.tile(np.sort(ends), (n, 1))
    slope, intercept = _rescale(ds, source, issues) or (1.0, 0.0)
    values = frames.astype(np.float64) * slope + intercept  # the rescale of pydicom's apply_modality_lut
    return values, (slope, intercept), np.tile(np.sort(stored * slope + intercept), (n, 1))


def _rescale(item: Dataset | None, source: str, issues: list[Issue]) -> tuple[float, float] | None:
    """(slope, intercept) of an item; strict, since a wrong rescale would silently mislead."""
    if item is None or ("RescaleSlope" not in item and "RescaleIntercept" not in item):
        return None
    pair = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = _numbers(item, keyword, 1, source, None)
        if value is None:
            issues.append(Issue(source, tag_label(keyword), f"missing beside its partner; {default} used"))
        pair.append(default if value is None else value[0])
    if pair[0] == 0.0:
        raise DicomError(f"{INVALID}: rescale slope is zero", path=source, where=tag_label("RescaleSlope"))
    return pair[0], pair[1]


def _window(ds: Dataset, source: str, issues: list[Issue]) -> tuple[float, float] | None:
    """The first (WindowCenter, WindowWidth) pair, per-frame group first; None when absent or invalid."""
    item = _group_item(ds, 0, "FrameVOILUTSequence") or ds
    center, width = (_numbers(item, k, None, source, issues) for k in ("WindowCenter", "WindowWidth"))
    if center is None or width is None:
        return None
    if width[0] <= 0:
        issues.append(Issue(source, tag_label("WindowWidth"), "not positive; modality default used"))
        return None
    return center[0], width[0]
