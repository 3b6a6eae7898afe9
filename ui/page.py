"""What each stage of an analysis puts on the page: the components, and the values a case gives them.

`Page` holds the interface's output components (set by `ui.app.build_app`) and turns a `Case`
into {component: value} updates, one method per stage, so each stage sends only what it changed.
`summary` is the case as the API returns it, without patient data.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from medmm.errors import MedmmError
from medmm.explain.mapping import model_series
from medmm.records import MODALITIES
from ui.audit_card import card_html
from ui.session import Case, ClinicianService
from ui.views import (
    MODALITY_LABELS,
    diagnoses_html,
    impression_html,
    message_html,
    modalities_html,
    n_slices,
    notes_fragment,
    overlay_caption,
    overlay_frame,
    viewer_frame,
    vitals_chart,
    warnings_html,
    window_presets,
)

log = logging.getLogger(__name__)
CSS = """
.medmm-disclaimer{background:#fff4e5;border:2px solid #b45309;padding:.6em 1em;border-radius:6px;color:#7c2d12}
.medmm-status.medmm-error{background:#fee2e2;border:1px solid #b91c1c;color:#7f1d1d;padding:.5em;border-radius:4px}
.medmm-status.medmm-warning{background:#fef9c3;padding:.5em;border-radius:4px}
.medmm-diagnoses table,.medmm-group-card table{border-collapse:collapse;width:100%}
.medmm-group-card{overflow-x:auto;font-size:90%}
.medmm-diagnoses td,.medmm-diagnoses th,.medmm-group-card td,.medmm-group-card th{border-bottom:1px solid #ddd;padding:.25em .5em;text-align:left}
.medmm-bar{height:4px;background:#2563eb}
.medmm-inset{background:#dbeafe;border-radius:3px;padding:0 .3em}
.medmm-missing{color:#b91c1c}.medmm-unused{color:#b45309}
.medmm-notes pre{white-space:pre-wrap;font-family:inherit;line-height:1.6}.unread{color:#999}
#medmm-viewer img,#medmm-overlay-attention img,#medmm-overlay-gradcam img{width:100%;height:100%;object-fit:contain;image-rendering:pixelated}
"""


class Page:
    """The page's output components, and the values a case gives them."""

    token: gr.State
    status: gr.HTML
    modalities: gr.HTML
    diagnoses: gr.HTML
    impression: gr.HTML
    card: gr.HTML
    series: gr.Dropdown
    preset: gr.Radio
    slice: gr.Slider
    viewer: gr.Image
    target: gr.Dropdown
    overlay_attention: gr.Image
    overlay_gradcam: gr.Image
    vitals: gr.Image
    notes: gr.HTML
    answer: gr.Textbox
    feedback_status: gr.HTML
    summary: gr.JSON

    def __init__(self, service: ClinicianService):
        self.service = service

    def stage_outputs(self) -> list:
        """Every component a stage may update, in the order the API returns them (the State is not returned)."""
        return [self.token, self.status, self.modalities, self.diagnoses, self.impression, self.card, self.series, self.preset, self.slice,
                self.viewer, self.target, self.overlay_attention, self.overlay_gradcam, self.vitals, self.notes, self.answer,
                self.feedback_status, self.summary]

    def loaded(self, case: Case) -> dict:
        """The input as read: counts and warnings, modalities present, the group card, the viewer; earlier results emptied."""
        study = case.study
        vitals = "vital signs" if study.vitals is not None else "no vital signs"
        counts = f"{len(study.images)} image series, {len(study.notes)} note(s), {vitals}"
        series = [(series_label(s), i) for i, s in enumerate(study.images)]
        out = {
            self.token: case.token,
            self.status: message_html(f"Read {counts}. Ranking diagnoses...") + warnings_html([str(w) for w in study.warnings]),
            self.modalities: "".join(f"<p>{MODALITY_LABELS[m]}: {'present' if m in study.modalities else 'missing'}</p>" for m in MODALITIES),
            self.diagnoses: "", self.impression: "", self.answer: "", self.feedback_status: "",
            self.card: card_html(case.card) if case.card else "",
            self.series: gr.update(choices=series, value=0 if series else None, visible=bool(series)),
            self.vitals: None, self.notes: notes_fragment(study, None, "Clinical notes"),
            self.overlay_attention: None, self.overlay_gradcam: None,
        }
        out.update(self.viewer_for(case, 0))
        return out

    def viewer_for(self, case: Case | None, index: int | None, preset: str | None = None, slice_index: int | None = None) -> dict:
        """The viewer on series `index`: its window presets, and a slice slider (middle slice first) for a volume."""
        images = case.study.images if case is not None else ()
        if index is None or not images:
            return {self.viewer: None, self.preset: gr.update(choices=[], value=None, visible=False), self.slice: gr.update(visible=False)}
        series = images[int(index) % len(images)]
        presets = window_presets(series)
        preset = preset if preset in presets else presets[0]
        count = n_slices(series)
        middle = count // 2 if slice_index is None else int(slice_index)
        return {
            self.viewer: viewer_frame(series, preset, middle),
            self.preset: gr.update(choices=presets, value=preset, visible=True),
            self.slice: gr.update(minimum=0, maximum=max(count - 1, 1), value=middle, step=1, visible=count > 1, interactive=count > 1),
        }

    def diagnosed(self, case: Case) -> dict:
        """The first result: ranked diagnoses with the prediction set, modalities used and missing."""
        p = case.prediction
        top = p.scores[0].name if p.scores else None
        message = "Ranked diagnoses ready. Drafting the impression..." if p.answered else "No answer: nothing this model can read."
        return {
            self.status: message_html(message) + warnings_html(list(p.warnings)),
            self.diagnoses: diagnoses_html(p),
            self.modalities: modalities_html(p, case.study),
            self.target: gr.update(choices=[(s.display, s.name) for s in p.scores], value=top),
            self.summary: summary(case),
        }

    def drafted(self, case: Case) -> dict:
        """The drafted impression."""
        return {
            self.status: message_html("Impression drafted. Computing the explanations..."),
            self.impression: impression_html(case.prediction),
            self.summary: summary(case),
        }

    def explained(self, case: Case, target: str, opacity: float) -> dict:
        """The explanations of `target` and the total time."""
        total = sum(case.seconds.values())
        out = {self.status: message_html(f"Done in {total:.1f} s. Research use only: check every finding yourself."), self.summary: summary(case)}
        out.update(self.explanation_views(case, target, opacity))
        return out

    def explanation_views(self, case: Case, target: str, opacity: float) -> dict:
        """Attention and Grad-CAM overlays at `opacity`, the vitals chart and the notes shaded by attention, for `target`."""
        result = case.explanations.get(target)
        series = model_series(case.study)
        views: dict[Any, Any] = {self.overlay_attention: None, self.overlay_gradcam: None}
        if result is None:
            return views
        probability = result.probabilities.get(target)
        for method, component in (("attention", self.overlay_attention), ("gradcam", self.overlay_gradcam)):
            e = result.get(target, method)
            if e is not None and e.image is not None and series is not None:
                frame = overlay_frame(series, e.image, opacity)
                views[component] = gr.update(value=frame, label=overlay_caption(target, probability, method))
        default = result.get(target, "attention")
        title = overlay_caption(target, probability, "attention")
        chart = self.service.render_dir(case.token) / f"vitals-{target}.png"
        views[self.vitals] = vitals_chart(case.study, default.vitals if default else None, title, chart)
        views[self.notes] = notes_fragment(case.study, default.notes if default else None, title)
        return views

    def cleared(self, message: str, kind: str = "error") -> dict:
        """Every output emptied and `message` shown (a failed load must not leave the previous patient on the page)."""
        out = {c: None for c in (self.viewer, self.overlay_attention, self.overlay_gradcam, self.vitals, self.summary)}
        out.update({c: "" for c in (self.modalities, self.diagnoses, self.impression, self.card, self.notes, self.answer, self.feedback_status)})
        out.update({
            self.token: None,
            self.status: message_html(message, kind),
            self.series: gr.update(choices=[], value=None, visible=False),
            self.preset: gr.update(choices=[], value=None, visible=False),
            self.slice: gr.update(visible=False),
            self.target: gr.update(choices=[], value=None),
        })
        return out


def series_label(series) -> str:
    """E.g. "CT CHEST (24 slices)"."""
    count = n_slices(series)
    return " ".join(x for x in (series.modality, series.description, f"({count} slice{'s' if count > 1 else ''})") if x)


def summary(case: Case) -> dict:
    """What the API returns for a case: the prediction without patient data, stage and timings."""
    p = case.prediction
    out: dict[str, Any] = {"stage": case.stage, "seconds": {k: round(v, 4) for k, v in case.seconds.items()}, "audit_event": case.event_id}
    if p is not None:
        out.update({
            "scores": [{"name": s.name, "probability": s.probability, "in_set": s.in_set} for s in p.scores],
            "conformal_set": list(p.conformal_set), "coverage_target": p.coverage_target, "calibrated": p.calibrated,
            "impression": p.impression, "present": list(p.present), "missing": list(p.missing), "model_id": p.model_id,
            "answered": p.answered, "refusal": p.refusal,
        })
    return out


def error_text(err: Exception) -> str:
    """What the page says about an error: a MedmmError's own message (file and field named), else only its type (logged)."""
    if isinstance(err, MedmmError):
        return f"{type(err).__name__}: {err}"
    log.error("unexpected failure: %s", type(err).__name__)  # no message: it may quote the input
    return f"Internal error ({type(err).__name__}); nothing was changed. The service keeps running."
