"""The evidence of one diagnosis, as the page shows it in one of its two columns.

Attention and Grad-CAM over the radiograph the model read (in the in-page viewer, at the
chosen opacity), the vital signs with signed integrated-gradients hours (else attention), and
the notes with signed word marks (else attention). Every view is captioned with the diagnosis,
its probability and the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medmm.explain.mapping import model_series
from medmm.records import Study
from ui.localtime import Zone
from ui.notes_view import notes_evidence
from ui.session import Case
from ui.signed import METHOD as SIGNED_METHOD
from ui.viewer import colour_payload, payload_aspect
from ui.views import overlay_caption, overlay_frame
from ui.vitals_chart import Relevance, chart_html

DEFAULT_OPACITY = 0.35  # enough colour to see where, little enough to see the image under it


@dataclass(frozen=True)
class SideViews:
    """The four views of one column (payloads and HTML strings)."""

    attention: str
    gradcam: str
    vitals: str
    notes: str


EMPTY = SideViews("", "", "", "")


def model_series_index(study: Study) -> int | None:
    """Index in Study.images of the radiograph the model read."""
    series = model_series(study)
    return next((i for i, s in enumerate(study.images) if s is series), None)


def overlay_payloads(
    case: Case, target: str, opacity: float, markers: tuple[dict | None, str] = (None, "")
) -> tuple[str, str]:
    """(attention, Grad-CAM) viewer payloads of `target` over the radiograph the model read; "" for what was not computed."""
    result = case.explanations.get(target)
    series = model_series(case.study)
    if result is None or series is None:
        return "", ""
    probability = result.probabilities.get(target)
    out = []
    for method in ("attention", "gradcam"):
        e = result.get(target, method)
        if e is None or e.image is None:
            out.append("")
            continue
        frame = overlay_frame(series, e.image, float(np.clip(opacity, 0.0, 1.0)))
        caption = f"{overlay_caption(target, probability, method, result.display(target))} \u00b7 opacity {opacity:.2f}"
        out.append(
            colour_payload(
                frame,
                key=f"{case.token}:{target}:{method}",
                caption=caption,
                aspect=payload_aspect(series),
                markers=markers[0],
                note=markers[1],
            )
        )
    return out[0], out[1]


def side_views(
    case: Case, target: str, opacity: float, zone: Zone, markers: tuple[dict | None, str] = (None, "")
) -> SideViews:
    """Every view of `target` for this case (empty views for what was not computed)."""
    result = case.explanations.get(target)
    if result is None:
        return EMPTY
    name = result.display(target)
    probability = result.probabilities.get(target)
    overlays = overlay_payloads(case, target, opacity, markers)
    attention = result.get(target, "attention")
    signed = case.signed.get(target)
    if signed is not None and signed.vitals is not None:
        relevance = Relevance(signed.channels, signed.vitals, True, SIGNED_METHOD)
        title = overlay_caption(target, probability, "integrated_gradients", name)
    elif attention is not None and attention.vitals is not None:
        relevance = Relevance(
            attention.vitals.channels, attention.vitals.relevance, False, "attention (gradient-weighted)"
        )
        title = overlay_caption(target, probability, "attention", name)
    else:
        relevance, title = None, f"{name}: vital signs"
    vitals = chart_html(case.study.vitals, relevance, title, name, zone)
    notes_title = overlay_caption(
        target, probability, "integrated_gradients" if signed is not None and signed.words else "attention", name
    )
    notes = notes_evidence(
        case.study, zone, name, signed=signed, attention=attention.notes if attention else None, title=notes_title
    )
    return SideViews(overlays[0], overlays[1], vitals, notes)
