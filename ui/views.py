"""What the clinician sees, drawn without Gradio: HTML fragments and image arrays.

Every function here is pure (records in, HTML text or a uint8 array out), so the page's content
is testable without a browser. Text from files (note text, descriptions) is always escaped.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from medmm.codes import ETHNICITIES, RACES
from medmm.explain.mapping import ImageMap, model_pixels
from medmm.explain.render import DISCLAIMER, caption, overlay, slice_to_draw
from medmm.io.window import CT_PRESETS, apply_window, data_window, series_window
from medmm.records import MODALITIES, ImageSeries, Prediction, Study

MODALITY_LABELS = {"image": "Imaging", "notes": "Clinical notes", "vitals": "Vital signs"}
ATTRIBUTE_LABELS = {
    "sex": "Sex",
    "age_band": "Age band",
    "race": "Race",
    "ethnicity": "Ethnicity",
    "birth_sex": "Birth sex",
}
STORED = "Stored window"
FULL = "Full range"
CONTRAST = "High contrast"


# -- text --------------------------------------------------------------------------------------


def disclaimer_html() -> str:
    """The research-use banner shown at the top of every page."""
    return f'<div class="medmm-disclaimer" role="note"><strong>{html.escape(DISCLAIMER)}</strong> Outputs must not inform patient care.</div>'


def message_html(text: str, kind: str = "info") -> str:
    """A status line: kind is info | warning | error (errors are announced to screen readers)."""
    role = ' role="alert"' if kind == "error" else ""
    return f'<div class="medmm-status medmm-{kind}"{role}>{html.escape(text)}</div>'


def names_list(names: Sequence[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def conformal_sentence(prediction: Prediction) -> str:
    """The conformal set said plainly: the diagnoses the model cannot rule out at its coverage target.

    The model is multi-label: each diagnosis is judged on its own, so the members of a set are
    not alternatives to choose between; any number of them may be present together.
    """
    if prediction.coverage_target is None:
        return (
            "This model has no conformal calibration, so it gives no prediction set; read the probabilities with care."
        )
    coverage = f"{prediction.coverage_target:.0%}"
    display = {s.name: s.display for s in prediction.scores}
    named = [display.get(n, n) for n in prediction.conformal_set]
    if not named:
        return (
            f"Prediction set at {coverage} coverage: empty. The model rules out every diagnosis it knows for this patient "
            "(it can still be wrong)."
        )
    if len(named) == 1:
        return (
            f"Prediction set at {coverage} coverage: {named[0]}. The model cannot rule it out; "
            "it rules out the other diagnoses it knows."
        )
    return (
        f"Prediction set at {coverage} coverage: {names_list(named)}. The model cannot rule out any of these "
        f"{len(named)} diagnoses; each is judged on its own, so they may be present together. "
        "It rules out the other diagnoses it knows."
    )


def diagnoses_html(prediction: Prediction) -> str:
    """Ranked diagnoses with their probabilities, the prediction-set members marked, and the set in words."""
    if not prediction.answered:
        return f'<div class="medmm-diagnoses"><p class="medmm-no-answer">{html.escape(prediction.refusal)}</p></div>'
    kind = "calibrated probability" if prediction.calibrated else "probability (not calibrated)"
    rows = []
    for rank, s in enumerate(prediction.scores, start=1):
        mark = '<span class="medmm-inset">in set</span>' if s.in_set else ""
        rows.append(
            f'<tr data-diagnosis="{html.escape(s.name)}"><td>{rank}</td><td>{html.escape(s.display)}</td>'
            f'<td class="medmm-prob">{s.probability:.1%}<div class="medmm-bar" style="width:{100 * s.probability:.1f}%"></div></td>'
            f"<td>{mark}</td></tr>"
        )
    return (
        '<div class="medmm-diagnoses"><table><thead><tr><th>#</th><th>Diagnosis</th>'
        f"<th>{kind}</th><th>prediction set</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="medmm-conformal">{html.escape(conformal_sentence(prediction))}</p></div>'
    )


def modalities_html(prediction: Prediction, study: Study) -> str:
    """Which modalities the model used, which are missing, and every input it did not read, with the reason."""
    items = []
    for m in MODALITIES:
        if m in prediction.present:
            items.append(f'<li class="medmm-present">{MODALITY_LABELS[m]}: used</li>')
        elif m in study.modalities:
            items.append(f'<li class="medmm-unused">{MODALITY_LABELS[m]}: present in the files but not used</li>')
        else:
            items.append(f'<li class="medmm-missing">{MODALITY_LABELS[m]}: missing</li>')
    unused = [u for u in prediction.inputs if not u.used]
    listed = "".join(
        f'<li class="medmm-unused">{html.escape(MODALITY_LABELS.get(u.modality, u.modality))} {html.escape(u.source)}: '
        f"{html.escape(u.reason)}</li>"
        for u in unused
    )
    detail = f'<p>Not used:</p><ul class="medmm-not-used">{listed}</ul>' if unused else ""
    note = (
        ""
        if prediction.answered
        else (
            '<p class="medmm-no-answer"><strong>No answer:</strong> this study holds nothing this model can read, '
            "so it gives no diagnosis, no prediction set and no impression.</p>"
        )
    )
    return f'<div class="medmm-modalities"><ul>{"".join(items)}</ul>{detail}{note}</div>'


def impression_html(prediction: Prediction) -> str:
    """The drafted impression, marked as a draft, with the findings it states and the ones withheld and why.

    Every finding was checked against this patient's data before it reached the page (see
    medmm.grounding); a finding the data contradict or do not support is withheld, never shown
    as part of the impression.
    """
    text = prediction.impression.strip() or "(the model drafted an empty impression)"
    kept = [c for c in prediction.claims if c.kind != "statement"]
    checked = "".join(f"<li>{html.escape(c.text)}: {html.escape(c.reason)}</li>" for c in kept)
    withheld = "".join(
        f'<li class="medmm-withheld-{html.escape(c.verdict)}">{html.escape(c.text)} ({html.escape(c.verdict)}): {html.escape(c.reason)}</li>'
        for c in prediction.removed_claims
    )
    parts = [
        '<div class="medmm-impression"><p><em>Draft impression (machine-generated; every finding checked against this patient\'s data):</em></p>',
        f"<blockquote>{html.escape(text)}</blockquote>",
    ]
    if checked:
        parts.append(
            f'<details class="medmm-claims"><summary>{len(kept)} finding(s) stated, each found in the data</summary><ul>{checked}</ul></details>'
        )
    if withheld:
        parts.append(
            f'<details class="medmm-withheld" open><summary>{len(prediction.removed_claims)} finding(s) the model drafted were withheld</summary>'
            f"<ul>{withheld}</ul></details>"
        )
    return "".join(parts) + "</div>"


def group_label(attribute: str, group: str) -> str:
    """A group as people read it: race and ethnicity codes spelled out."""
    parts = []
    for a, g in zip(attribute.split(" x "), group.split(" / ")):
        parts.append(RACES.get(g, ETHNICITIES.get(g, g)) if a in ("race", "ethnicity") else g)
    return " / ".join(parts)


def attribute_label(attribute: str) -> str:
    """An audit attribute as people read it, e.g. "Sex x Age band"."""
    return " x ".join(ATTRIBUTE_LABELS.get(a, a) for a in attribute.split(" x "))


# -- images ------------------------------------------------------------------------------------


def window_presets(series: ImageSeries) -> list[str]:
    """Window/level presets that make sense for this series (HU presets for CT only)."""
    if series.is_colour:
        return [FULL]
    names = [STORED, FULL, CONTRAST]
    if series.modality == "CT":
        names += list(CT_PRESETS)
    return names


def preset_window(series: ImageSeries, pixels: np.ndarray, preset: str) -> tuple[float, float]:
    """(center, width) of a preset for these pixels."""
    if preset in CT_PRESETS and series.modality == "CT":
        return CT_PRESETS[preset]
    if preset == FULL:
        lo, hi = float(np.min(pixels)), float(np.max(pixels))
        return (lo + hi) / 2.0, max(hi - lo, 1e-3)
    if preset == CONTRAST:
        return data_window(pixels, 5.0, 95.0)
    return series_window(series.window, pixels)


def n_slices(series: ImageSeries) -> int:
    """Slices (or frames) the viewer's slider runs over; 1 for a 2D image."""
    return int(series.pixels.shape[0]) if series.is_volume else 1


def slice_frame(series: ImageSeries, index: int = 0) -> np.ndarray:
    """One slice (or frame) of the series in its own units: (H, W), or (H, W, 3) for colour."""
    pixels = series.pixels
    if series.is_volume:
        pixels = pixels[int(np.clip(index, 0, pixels.shape[0] - 1))]
    return pixels


def viewer_frame(series: ImageSeries, preset: str, index: int = 0) -> np.ndarray:
    """uint8 (H, W) (or (H, W, 3) for colour): one slice of the series through a window preset."""
    pixels = series.pixels
    if series.is_volume:
        pixels = pixels[int(np.clip(index, 0, pixels.shape[0] - 1))]
    if series.is_colour:
        lo, hi = float(np.min(pixels)), float(np.max(pixels))
        return np.round(255.0 * (pixels - lo) / max(hi - lo, 1e-6)).astype(np.uint8)
    grey = apply_window(pixels, preset_window(series, pixels, preset))  # (H, W) in [0, 1]
    return np.round(255.0 * grey).astype(np.uint8)


def overlay_frame(series: ImageSeries, image: ImageMap, opacity: float) -> np.ndarray:
    """uint8 (H, W, 3): the image the model read under its relevance heat map at `opacity`."""
    pixels = model_pixels(series) if image.relevance.ndim == 2 else series.pixels.astype(np.float32)
    relevance = image.relevance
    if relevance.ndim == 3:
        index = slice_to_draw(relevance)
        pixels, relevance = pixels[index], relevance[index]
    grey = apply_window(pixels, series_window(series.window, pixels))
    rgb = overlay(grey, relevance, opacity=float(np.clip(opacity, 0.0, 1.0)))  # (H, W, 3) in [0, 1]
    return np.round(255.0 * rgb).astype(np.uint8)


def overlay_caption(target: str, probability: float | None, method: str, display: str | None = None) -> str:
    """The caption under an overlay, e.g. "Pneumonia (probability 83%): Grad-CAM"."""
    return caption(target, probability, method, display)
