"""Synthetic PA chest radiograph with planted findings and their masks, rendered with numpy.

Coordinates: u runs left to right across the image, v top to bottom, both in [0, 1]. In a PA
view the patient's right lung is on the image's left. Values are attenuation-like: higher is
brighter (denser), as a MONOCHROME2 display shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from medmm.synth.filters import bbox, erode, gaussian_blur, smooth_noise

ZONES = ("upper", "middle", "lower")
SIDES = ("right", "left")  # patient sides; right lung is on the image's left in a PA view
AIR, SOFT, LUNG, MEDIASTINUM, ABDOMEN, FLUID = 0.03, 0.40, 0.16, 0.64, 0.62, 0.58


@dataclass(frozen=True)
class Finding:
    """Where one diagnosis's image evidence was drawn."""

    diagnosis: str
    mask_key: str  # key of its mask in the truth arrays
    bbox: Mapping[str, int]  # inclusive pixel box
    side: str | None  # right | left (patient side), None when bilateral/central
    zone: str | None  # e.g. right_lower for pneumonia; None for others
    detail: Mapping[str, float]  # e.g. contrast, cardiothoracic ratio


@dataclass(frozen=True)
class Radiograph:
    """A rendered radiograph: 12-bit display values (higher = brighter) and its ground truth."""

    pixels: np.ndarray  # (H, W) uint16 in [0, 4095]
    spacing_mm: float  # square pixels
    lungs: np.ndarray  # (H, W) bool, both lung fields without heart and mediastinum
    heart: np.ndarray  # (H, W) bool, cardiac silhouette
    lesions: Mapping[str, np.ndarray]  # diagnosis -> (H, W) bool lesion mask
    findings: tuple[Finding, ...]
    ctr: float  # cardiothoracic ratio measured from the heart and lung masks


def cardiothoracic_ratio(heart: np.ndarray, lungs: np.ndarray) -> float:
    """Widest horizontal extent of the heart over the widest extent of the thorax (lung margins)."""
    hc = np.flatnonzero(heart.any(axis=0))
    lc = np.flatnonzero(lungs.any(axis=0))
    return float((hc[-1] - hc[0] + 1) / (lc[-1] - lc[0] + 1))


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float) -> np.ndarray:
    return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2  # < 1 inside


def render_radiograph(
    rng: np.random.Generator,
    size: int,
    image_evidence: Mapping[str, float],
    degradation: float = 0.0,
) -> Radiograph:
    """Draw a chest radiograph carrying the findings in `image_evidence` (diagnosis -> strength 0.5..1).

    `degradation` in [0, 1] adds heavy noise and blur (the image-quality bias knob).
    """
    n = size
    grid = ((np.arange(n) + 0.5) / n).astype(np.float32)
    u, v = grid[None, :], grid[:, None]  # (1, W), (H, 1): broadcast to (H, W)
    cx = 0.5 + rng.normal(0, 0.01)
    half_w = 0.36 + rng.normal(0, 0.012)
    dome = {"right": 0.68 + rng.normal(0, 0.015), "left": 0.70 + rng.normal(0, 0.015)}

    body_hw = 0.12 + 0.34 * np.clip((v - 0.02) / 0.14, 0, 1) ** 0.7  # (H, 1) neck to shoulders
    rel = np.abs(u - cx) / body_hw  # (H, W)
    body = rel < 1
    img = np.where(body, SOFT - 0.10 * rel**4, AIR).astype(np.float32)

    # Lungs: a tall ellipse per side cut below by its hemidiaphragm (steep laterally, making the
    # costophrenic angle; nearly flat medially) and medially by the mediastinum.
    lung_env: dict[str, np.ndarray] = {}
    lung_geom: dict[str, tuple[float, float, float, float, int]] = {}
    below = np.zeros((n, n), bool)
    for side, sgn in (("right", -1), ("left", 1)):
        au = half_w / 2 + rng.normal(0, 0.004)
        eu = cx + sgn * (half_w - au)
        ev, av = 0.50 + rng.normal(0, 0.01), 0.40 + rng.normal(0, 0.01)
        x = (u - eu) * sgn / au  # (1, W), positive laterally
        dome_v = dome[side] + 0.11 * np.clip(x, 0, None) ** 2 + 0.03 * np.clip(-x, 0, None) ** 2  # (1, W)
        half = (u - cx) * sgn > 0  # (1, W)
        below |= half & (v >= dome_v)
        lung_env[side] = (_ellipse(u, v, eu, ev, au, av) < 1) & (v < dome_v) & ((u - cx) * sgn > 0.035)
        lung_geom[side] = (eu, ev, au, av, sgn)
    below &= body
    img[below] = ABDOMEN

    # Heart: two thirds to the patient's left, its lower border on the diaphragm.
    hf = image_evidence.get("heart_failure")
    ctr_target = 0.46 + 0.20 * hf if hf is not None else rng.uniform(0.38, 0.47)
    hx = ctr_target * half_w
    hb = 0.12 + (0.03 * hf if hf is not None else 0.0)
    heart = (_ellipse(u, v, cx + hx / 3, dome["left"] - 0.35 * hb, hx, hb) < 1) & ~below & body
    mediastinum = (np.abs(u - cx) < 0.05 + 0.015 * (v > 0.3)) & ~below & body
    lung_any = lung_env["right"] | lung_env["left"]
    lungs = lung_any & ~heart & ~mediastinum

    # Lung texture: vascular markings strongest near the hila, fading to the periphery.
    vessels = np.abs(gaussian_blur(rng.standard_normal((n, n), dtype=np.float32), max(0.7, n / 128)))
    vessels *= np.float32(1.0 / (vessels.mean() + 1e-6))
    hilum_d = np.minimum(np.hypot(u - (cx - 0.08), v - 0.45), np.hypot(u - (cx + 0.09), v - 0.46))
    lung_img = (LUNG + 0.05 * np.clip((v - 0.3) / 0.4, 0, 1)) + 0.07 * vessels * np.exp(-hilum_d / 0.2)
    lung_img += 0.015 * smooth_noise(rng, (n, n), 6)
    lesions: dict[str, np.ndarray] = {}
    findings: list[Finding] = []

    if "pneumothorax" in image_evidence:
        s = image_evidence["pneumothorax"]
        side = SIDES[int(rng.integers(2))]
        eu, ev, au, av, sgn = lung_geom[side]
        g = 0.012 + 0.022 * s
        collapsed = _ellipse(u, v, eu - sgn * g, ev + g, au - g, av - g)
        ptx = lungs & lung_env[side] & (collapsed >= 1) & (v < ev + 0.1 * av)
        lung_img[ptx] = LUNG - 0.05  # free air: darker, no lung markings
        line = (np.abs(collapsed - 1) < 1.6 / (n * min(au, av))) & (v < ev) & lung_env[side] & ~ptx
        lung_img[line] += 0.10  # visceral pleural line
        lesions["pneumothorax"] = ptx
        findings.append(Finding("pneumothorax", "pneumothorax", bbox(ptx), side, None, {"gap": round(2 * g, 4)}))

    img[lung_any] = lung_img[lung_any]
    img[mediastinum | heart] = MEDIASTINUM + (0.02 if hf is not None else 0.0)
    trachea = (np.abs(u - cx) < 0.013) & (v > 0.02) & (v < 0.33)
    img[trachea] -= 0.16
    if rng.random() < 0.5:  # gastric bubble under the left dome
        bubble = (_ellipse(u, v, cx + 0.17, dome["left"] + 0.06, 0.04, 0.025) < 1) & below
        img[bubble] -= 0.25

    if hf is not None:
        if rng.random() < 0.5:  # bilateral basal haze (interstitial oedema)
            haze = (
                0.09 * hf * np.clip((v - 0.5) / 0.22, 0, 1) * np.clip(1 + 0.5 * smooth_noise(rng, (n, n), 8), 0.3, 1.5)
            )
            img[lungs] += haze[lungs]
        lesions["heart_failure"] = heart
        findings.append(
            Finding("heart_failure", "heart_failure", bbox(heart), None, None, {"ctr_target": round(ctr_target, 4)})
        )

    if "pneumonia" in image_evidence:
        mask, opacity, finding = _consolidation(rng, u, v, lungs, lung_env, image_evidence["pneumonia"], n)
        img += opacity
        lesions["pneumonia"] = mask
        findings.append(finding)

    if "pleural_effusion" in image_evidence:
        s = image_evidence["pleural_effusion"]
        side = SIDES[int(rng.integers(2))]
        eu, ev, au, av, sgn = lung_geom[side]
        env = lung_env[side] & lungs
        rows = np.flatnonzero(env.any(axis=1))
        top, bottom = float(grid[rows[0]]), float(grid[rows[-1]])
        height = bottom - top
        level = bottom - (0.14 + 0.18 * s) * height
        lateral = np.clip((u - (cx + sgn * 0.035)) * sgn / (2 * au), 0, 1)  # (1, W)
        surface = level - 0.10 * height * lateral**2  # meniscus: fluid climbs the lateral wall
        effusion = env & (v > surface)
        edge = np.clip((v - surface) * n / 2.0, 0, 1)  # soft meniscus over about 2 pixels
        cover = effusion | (below & ((u - cx) * sgn > 0) & (v < surface + 0.12))  # silhouettes the dome
        img[cover] = (img * (1 - edge) + FLUID * edge)[cover]
        lesions["pleural_effusion"] = effusion
        fraction = round((bottom - level) / height, 4)
        findings.append(
            Finding("pleural_effusion", "pleural_effusion", bbox(effusion), side, None, {"fluid_fraction": fraction})
        )

    img += _bones(u, v, cx, half_w, body, rng)
    img = gaussian_blur(img, max(0.5, n / 400))
    gain, offset = rng.uniform(0.92, 1.08), rng.normal(0, 0.015)
    img = np.clip(img * np.float32(gain) + np.float32(offset), 0, 1) ** np.float32(rng.uniform(0.9, 1.1))
    img += rng.standard_normal((n, n), dtype=np.float32) * np.float32(0.008 + 0.006 * rng.random())
    if degradation > 0:
        img = gaussian_blur(img, degradation * n / 40)
        img += rng.standard_normal((n, n), dtype=np.float32) * np.float32(0.12 * degradation)
    pixels = np.clip(np.round(150 + 3800 * img), 0, 4095).astype(np.uint16)
    spacing = round(float(rng.uniform(380, 430)) / n, 4)
    return Radiograph(pixels, spacing, lungs, heart, lesions, tuple(findings), cardiothoracic_ratio(heart, lungs))


def _consolidation(rng, u, v, lungs, lung_env, s, n):
    """Focal consolidation in one of six lung zones, optionally with air bronchograms."""
    side = SIDES[int(rng.integers(2))]
    zone = ZONES[int(rng.integers(3))]
    env = lungs & lung_env[side]
    rows = np.flatnonzero(env.any(axis=1))
    third = (rows[-1] - rows[0] + 1) / 3.0
    lo = rows[0] + int(ZONES.index(zone) * third)
    hi = rows[0] + int((ZONES.index(zone) + 1) * third)
    radius = rng.uniform(0.065, 0.1)
    inner = erode(env, int(0.6 * radius * n))  # keep most of the blob inside the lung
    inner[:lo] = False
    inner[hi:] = False
    if not inner.any():  # zone thinner than the blob: any lung pixel of the zone
        inner = env.copy()
        inner[:lo] = False
        inner[hi:] = False
    cand = np.argwhere(inner)
    r, c = cand[int(rng.integers(len(cand)))]
    cu, cv = float(u[0, c]), float(v[r, 0])
    d2 = ((u - cu) / radius) ** 2 + ((v - cv) / (radius * rng.uniform(0.7, 1.2))) ** 2
    field = np.exp(-d2) * (1 + 0.35 * smooth_noise(rng, (n, n), 10))
    mask = (field > 0.5) & env
    mask[r, c] = True
    contrast = 0.18 + 0.17 * s
    opacity = np.where(env, contrast * np.clip((field - 0.3) * 2.5, 0, 1), 0).astype(np.float32)
    if rng.random() < 0.5:  # air bronchograms: dark tubes running towards the hilum
        for a in np.arctan2(0.45 - cv, 0.5 - cu) + rng.normal(0, 0.4, 3):
            du, dv = u - cu, v - cv
            along = du * np.cos(a) + dv * np.sin(a)
            across = np.abs(dv * np.cos(a) - du * np.sin(a))
            tube = (across < 1.2 / n + 0.003) & (np.abs(along) < radius) & mask
            opacity[tube] *= 0.45
    finding = Finding("pneumonia", "pneumonia", bbox(mask), side, f"{side}_{zone}", {"contrast": round(contrast, 4)})
    return mask, opacity, finding


def _bones(u, v, cx, half_w, body, rng) -> np.ndarray:
    """Posterior ribs (curving down laterally), clavicles and spine as additive density."""
    t = np.abs(u - cx) / half_w  # (1, W)
    start = 0.13 + rng.normal(0, 0.008)
    gap = 0.058 + rng.normal(0, 0.002)
    phase = (v - (start + 0.13 * t**2 - 0.04 * t)) / gap  # (H, W) rib k where phase ~ k
    k = np.round(phase)
    d = np.abs(phase - k) * gap
    ribs = (k >= 0) & (k < 10) & (t > 0.06) & (t < 1.08) & body
    bone = np.where(ribs, 0.055 * np.clip(1 - (d / 0.016) ** 2, 0, 1), 0).astype(np.float32)
    clav = (np.abs(v - (0.15 - 0.06 * t)) < 0.011) & (t > 0.08) & (t < 0.75) & body
    bone[clav] += 0.09
    spine = (np.abs(u - cx) < 0.032) & body
    bone[spine] += (0.08 + 0.03 * (np.sin(v * 2 * np.pi / 0.045) > 0.6) + 0 * u)[spine]
    return bone
