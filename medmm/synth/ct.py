"""Small synthetic axial chest CT volume in Hounsfield units, with the image findings planted in 3D.

Slice index 0 is the most inferior slice (lowest z); rows run anterior to posterior and
columns from the patient's right to left, matching ImageOrientationPatient [1,0,0, 0,1,0].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from medmm.synth.filters import bbox, gaussian_blur

SIDES = ("right", "left")
ZONES = ("upper", "middle", "lower")


@dataclass(frozen=True)
class CtVolume:
    """A rendered CT volume and its ground truth."""

    hu: np.ndarray  # (S, H, W) int16 Hounsfield units, slice 0 most inferior
    pixel_mm: float  # in-plane spacing
    slice_mm: float  # spacing along the slice normal
    lungs: np.ndarray  # (S, H, W) bool
    lesions: Mapping[str, np.ndarray]  # diagnosis -> (S, H, W) bool
    findings: Mapping[str, Mapping[str, object]]  # diagnosis -> side, zone, slice range, bbox


def render_ct(rng: np.random.Generator, slices: int, size: int, image_evidence: Mapping[str, float]) -> CtVolume:
    """Draw a chest CT volume carrying the findings in `image_evidence` (diagnosis -> strength)."""
    s_n, n = slices, size
    grid = (np.arange(n) + 0.5) / n
    x, y = grid[None, None, :], grid[None, :, None]  # (1, 1, W) right->left, (1, H, 1) anterior->posterior
    z = ((np.arange(s_n) + 0.5) / s_n)[:, None, None]  # (S, 1, 1) inferior->superior
    cx, cy = 0.5 + rng.normal(0, 0.01), 0.52 + rng.normal(0, 0.01)

    body = ((x - cx) / 0.44) ** 2 + ((y - cy) / 0.31) ** 2 < 1  # (1, H, W)
    hu = np.where(body, 40.0, -1000.0) * np.ones((s_n, 1, 1))  # (S, H, W)
    fat = body & (((x - cx) / 0.41) ** 2 + ((y - cy) / 0.28) ** 2 >= 1)
    hu = np.where(fat, -100.0, hu)

    # Lungs shrink towards the apex (top slices) and give way to the liver/diaphragm at the base.
    lungs = np.zeros((s_n, n, n), bool)
    lung_side: dict[str, np.ndarray] = {}
    scale = np.clip(1.15 - 0.65 * z, 0.35, 1.0) * np.clip(z / 0.2, 0.0, 1.0)  # (S, 1, 1)
    scale = np.maximum(scale, 1e-3)
    for side, sgn in (("right", -1), ("left", 1)):
        lx, ly = cx + sgn * 0.19, cy + 0.02
        inside = ((x - lx) / (0.15 * scale)) ** 2 + ((y - ly) / (0.22 * scale)) ** 2 < 1
        lung_side[side] = inside & body
        lungs |= lung_side[side]
    heart = (((x - (cx + 0.05)) / 0.13) ** 2 + ((y - (cy - 0.08)) / 0.11) ** 2 < 1) & (z > 0.15) & (z < 0.6)
    hf = image_evidence.get("heart_failure")
    if hf is not None:  # cardiomegaly: a wider, deeper heart
        grow = 1.0 + 0.35 * hf
        heart = (
            (((x - (cx + 0.06)) / (0.13 * grow)) ** 2 + ((y - (cy - 0.07)) / (0.11 * grow)) ** 2 < 1)
            & (z > 0.12)
            & (z < 0.65)
        )
    lungs &= ~heart
    for side in SIDES:
        lung_side[side] &= ~heart
    texture = gaussian_blur(rng.standard_normal((n, n)), 0.8)[None] * 30.0  # (1, H, W) vessels
    hu = np.where(lungs, -850.0 + texture, hu)
    hu = np.where(heart, 45.0, hu)
    spine = ((x - cx) / 0.05) ** 2 + ((y - (cy + 0.24)) / 0.05) ** 2 < 1
    hu = np.where(spine & body, 700.0, hu)
    aorta = ((x - (cx + 0.04)) / 0.03) ** 2 + ((y - (cy + 0.15)) / 0.03) ** 2 < 1
    hu = np.where(aorta & (z > 0.1), 50.0, hu)

    lesions: dict[str, np.ndarray] = {}
    findings: dict[str, dict[str, object]] = {}
    if hf is not None:
        lesions["heart_failure"] = np.broadcast_to(heart, (s_n, n, n)).copy()
    if "pneumonia" in image_evidence:
        side = SIDES[int(rng.integers(2))]
        zone = ZONES[int(rng.integers(3))]
        zc = {"upper": 0.75, "middle": 0.5, "lower": 0.3}[zone] + rng.normal(0, 0.04)
        cand = np.argwhere(lung_side[side][int(np.clip(zc * s_n, 0, s_n - 1))])
        r, c = cand[int(rng.integers(len(cand)))] if len(cand) else (n // 2, n // 2)
        radius = rng.uniform(0.06, 0.1)
        blob = ((x - grid[c]) / radius) ** 2 + ((y - grid[r]) / radius) ** 2 + ((z - zc) / (radius * 1.5)) ** 2 < 1
        mask = blob & lung_side[side]
        hu = np.where(mask, -60.0 + 60.0 * image_evidence["pneumonia"] + texture * 0.5, hu)
        lesions["pneumonia"] = mask
        findings["pneumonia"] = {"side": side, "zone": f"{side}_{zone}"}
    if "pleural_effusion" in image_evidence:
        side = SIDES[int(rng.integers(2))]
        depth = 0.15 + 0.15 * image_evidence["pleural_effusion"]
        posterior = (y > cy + 0.02 + 0.22 * scale * (1 - 2 * depth)) & (z < 0.7)  # dependent fluid
        mask = lung_side[side] & posterior
        hu = np.where(mask, 15.0, hu)
        lesions["pleural_effusion"] = mask
        findings["pleural_effusion"] = {"side": side}
    if "pneumothorax" in image_evidence:
        side = SIDES[int(rng.integers(2))]
        depth = 0.08 + 0.08 * image_evidence["pneumothorax"]
        anterior = (y < cy + 0.02 - 0.22 * scale * (1 - 2 * depth)) & (z > 0.35)  # non-dependent air
        mask = lung_side[side] & anterior
        hu = np.where(mask, -1000.0, hu)
        lesions["pneumothorax"] = mask
        findings["pneumothorax"] = {"side": side}

    for name, mask in lesions.items():
        if mask.any():
            zs = np.flatnonzero(mask.any(axis=(1, 2)))
            findings.setdefault(name, {}).update(
                {"slice_min": int(zs[0]), "slice_max": int(zs[-1]), "bbox": bbox(mask)}
            )
    hu = hu + rng.normal(0, 12.0, hu.shape)
    volume = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    pixel_mm = round(float(rng.uniform(340, 400)) / n, 4)
    return CtVolume(volume, pixel_mm, round(300.0 / s_n, 3), lungs, lesions, findings)
