"""What each stage of an analysis puts on the page: the components, and the values a case gives them.

`Page` holds the interface's output components (set by `ui.app.build_app`) and turns a `Case`
into {component: value} updates, one method per stage, so each stage sends only what it changed.
A new analysis first empties every result (`starting`), so the previous patient never stays on
the page under a new input. `summary` is the case as the API returns it, without patient data.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from typing import Any

import gradio as gr

from medmm.deid.header import DicomHeader
from medmm.errors import MedmmError
from medmm.records import MODALITIES
from ui.audit_card import card_html
from ui.dicom_header import header_table
from ui.evidence import EMPTY, SideViews, model_series_index, overlay_payloads, side_views
from ui.header import header_html, pending_header
from ui.localtime import Zone
from ui.notes_view import notes_evidence
from ui.session import Case, ClinicianService
from ui.viewer import colour_payload, grey_payload, orientation_markers
from ui.views import (
    MODALITY_LABELS,
    diagnoses_html,
    impression_html,
    message_html,
    modalities_html,
    n_slices,
    preset_window,
    slice_frame,
    viewer_frame,
    window_presets,
)

log = logging.getLogger(__name__)
SIDES = ("a", "b")


class Page:
    """The page's output components, and the values a case gives them."""

    token: gr.State
    form: gr.State  # the feedback form: {"id": this filling-in, "recorded": the audit event of the last one sent}
    status: gr.HTML
    notice: gr.HTML
    header: gr.HTML
    modalities: gr.HTML
    diagnoses: gr.HTML
    impression: gr.HTML
    card: gr.HTML
    series: gr.Dropdown
    preset: gr.Radio
    slice: gr.Slider
    viewer: gr.HTML
    dicom: gr.HTML
    target: gr.Dropdown
    compare: gr.Dropdown
    answer: gr.Textbox
    verdict: gr.Radio
    named: gr.CheckboxGroup
    comment: gr.Textbox
    feedback_status: gr.HTML
    summary: gr.JSON

    def __init__(self, service: ClinicianService):
        self.service = service
        self.sides: dict[str, dict[str, gr.HTML]] = {}  # side -> {"attention", "gradcam", "vitals", "notes"}
        self._headers: OrderedDict[tuple[str, int], tuple[DicomHeader | None, str]] = OrderedDict()

    def stage_outputs(self) -> list:
        """Every component a stage may update, in the order the API returns them (States are not returned)."""
        evidence = [self.sides[s][k] for s in SIDES for k in ("attention", "gradcam", "vitals", "notes")]
        return [
            self.token,
            self.form,
            self.status,
            self.notice,
            self.header,
            self.modalities,
            self.diagnoses,
            self.impression,
            self.card,
            self.series,
            self.preset,
            self.slice,
            self.viewer,
            self.dicom,
            self.target,
            self.compare,
            *evidence,
            self.answer,
            self.verdict,
            self.named,
            self.comment,
            self.feedback_status,
            self.summary,
        ]

    # -- stages --------------------------------------------------------------------------------

    def starting(self, what: str, names: list[str]) -> dict:
        """A new analysis: every earlier result emptied at once, the input named."""
        out = self.cleared(f"Reading {what}...", "info")
        out[self.header] = pending_header(names) if names else pending_header([what])
        return out

    def loaded(self, case: Case, zone: Zone) -> dict:
        """The input as read: header (patient, date, files, warnings), modalities present, the group card, the viewer."""
        study = case.study
        vitals = "vital signs" if study.vitals is not None else "no vital signs"
        counts = f"{len(study.images)} image series, {len(study.notes)} note(s), {vitals}"
        series = [(series_label(s), i) for i, s in enumerate(study.images)]
        out = {
            self.token: case.token,
            self.form: {"id": secrets.token_hex(8), "recorded": None},
            self.status: message_html(f"Read {counts}. Ranking diagnoses..."),
            self.header: header_html(study, None, case.folder, zone),
            self.modalities: "".join(
                f"<p>{MODALITY_LABELS[m]}: {'present' if m in study.modalities else 'missing'}</p>" for m in MODALITIES
            ),
            self.card: card_html(case.card) if case.card else "",
            self.series: gr.update(choices=series, value=0 if series else None, visible=bool(series)),
        }
        out.update(self.evidence(case, None, 0.0, zone, "a"))
        out.update(self.viewer_for(case, 0))
        return out

    def diagnosed(self, case: Case, zone: Zone) -> dict:
        """The first result: ranked diagnoses with the prediction set, the header with what the model used."""
        p = case.prediction
        top = p.scores[0].name if p.scores else None
        choices = [(s.display, s.name) for s in p.scores]
        message = (
            "Ranked diagnoses ready. Drafting the impression..."
            if p.answered
            else "No answer: nothing this model can read."
        )
        return {
            self.status: message_html(message),
            self.header: header_html(case.study, p, case.folder, zone),
            self.diagnoses: diagnoses_html(p),
            self.modalities: modalities_html(p, case.study),
            self.target: gr.update(choices=choices, value=top),
            self.compare: gr.update(choices=choices, value=None),
            self.summary: summary(case),
        }

    def drafted(self, case: Case) -> dict:
        """The drafted impression."""
        return {
            self.status: message_html("Impression drafted. Computing the explanations..."),
            self.impression: impression_html(case.prediction),
            self.summary: summary(case),
        }

    def explained(self, case: Case, target: str, opacity: float, zone: Zone) -> dict:
        """The explanations of `target` (first column) and the total time."""
        total = sum(case.seconds.values())
        out = {
            self.status: message_html(f"Done in {total:.1f} s. Research use only: check every finding yourself."),
            self.summary: summary(case),
        }
        out.update(self.evidence(case, target, opacity, zone, "a"))
        return out

    def finished_without_answer(self, case: Case) -> dict:
        return {
            self.status: message_html("No answer: nothing this model can read (see the files above)."),
            self.summary: summary(case),
        }

    def evidence(self, case: Case | None, target: str | None, opacity: float, zone: Zone, side: str) -> dict:
        """The four evidence views of one column; with no target, the notes plain and the chart unshaded."""
        components = self.sides[side]
        if case is None:
            views = EMPTY
        elif target is None:
            views = SideViews("", "", "", notes_evidence(case.study, zone, "") if case.study.notes else "")
        else:
            index = model_series_index(case.study)
            markers = self.markers(case, index) if index is not None else (None, "")
            views = side_views(case, target, opacity, zone, markers)
        return {
            components["attention"]: views.attention,
            components["gradcam"]: views.gradcam,
            components["vitals"]: views.vitals,
            components["notes"]: views.notes,
        }

    def overlays(self, case: Case, target: str, opacity: float) -> tuple[str, str]:
        """The (attention, Grad-CAM) overlay payloads of `target` at `opacity`."""
        index = model_series_index(case.study)
        return overlay_payloads(case, target, opacity, self.markers(case, index) if index is not None else (None, ""))

    def cleared(self, message: str, kind: str = "error") -> dict:
        """Every output emptied and `message` shown (a failed load must not leave the previous patient on the page)."""
        out: dict[Any, Any] = {
            c: ""
            for c in (
                self.notice,
                self.header,
                self.modalities,
                self.diagnoses,
                self.impression,
                self.card,
                self.viewer,
                self.dicom,
                self.answer,
                self.feedback_status,
                self.comment,
            )
        }
        for side in SIDES:
            out.update({c: "" for c in self.sides[side].values()})
        out.update(
            {
                self.token: None,
                self.form: None,
                self.summary: None,
                self.status: message_html(message, kind),
                self.series: gr.update(choices=[], value=None, visible=False),
                self.preset: gr.update(choices=[], value=None, visible=False),
                self.slice: gr.update(visible=False),
                self.target: gr.update(choices=[], value=None),
                self.compare: gr.update(choices=[], value=None),
                self.verdict: gr.update(value=None),
                self.named: gr.update(value=[]),
            }
        )
        return out

    # -- the viewer ----------------------------------------------------------------------------

    def header_of(self, case: Case, index: int) -> tuple[DicomHeader | None, str]:
        """The shown DICOM header of a series' first file (kept for the last few series), or why there is none."""
        key = (case.token, index)
        if key not in self._headers:
            try:
                found: tuple[DicomHeader | None, str] = (self.service.dicom_header(case.token, index), "")
            except MedmmError as err:
                found = (None, str(err))
            except Exception as err:  # noqa: BLE001 - an unreadable header must not stop the viewer
                found = (None, f"the header could not be read ({type(err).__name__})")
            self._headers[key] = found
            while len(self._headers) > 64:
                self._headers.popitem(last=False)
        return self._headers[key]

    def markers(self, case: Case, index: int) -> tuple[dict | None, str]:
        header, _ = self.header_of(case, index)
        return orientation_markers(case.study.images[index], header.patient_orientation if header else None)

    def viewer_for(
        self, case: Case | None, index: int | None, preset: str | None = None, slice_index: int | None = None
    ) -> dict:
        """The viewer on series `index`: its window presets, a slice slider (middle slice first) for a volume, its header."""
        images = case.study.images if case is not None else ()
        if index is None or not images:
            return {
                self.viewer: "",
                self.dicom: "",
                self.preset: gr.update(choices=[], value=None, visible=False),
                self.slice: gr.update(visible=False),
            }
        index = int(index) % len(images)
        series = images[index]
        presets = window_presets(series)
        preset = preset if preset in presets else presets[0]
        count = n_slices(series)
        middle = count // 2 if slice_index is None else int(slice_index)
        header, problem = self.header_of(case, index)
        return {
            self.viewer: self.viewer_payload(case, index, preset, middle),
            self.dicom: header_table(header, problem),
            self.preset: gr.update(choices=presets, value=preset, visible=True),
            self.slice: gr.update(
                minimum=0, maximum=max(count - 1, 1), value=middle, step=1, visible=count > 1, interactive=count > 1
            ),
        }

    def viewer_payload(self, case: Case, index: int, preset: str, slice_index: int) -> str:
        """The viewer's value for one slice of a series through a window preset (the browser windows it further)."""
        series = case.study.images[index]
        markers, note = self.markers(case, index)
        count = n_slices(series)
        where = f" \u00b7 slice {min(max(slice_index, 0), count - 1) + 1} of {count}" if count > 1 else ""
        caption = f"{series_label(series)}{where} \u00b7 {preset}"
        key = f"{case.token}:{index}"
        if series.is_colour:
            return colour_payload(
                viewer_frame(series, preset, slice_index), key=key, caption=caption, markers=markers, note=note
            )
        frame = slice_frame(series, slice_index)
        return grey_payload(
            series,
            frame,
            preset_window(series, frame, preset),
            key=key,
            preset=preset,
            caption=caption,
            markers=markers,
            note=note,
        )


def series_label(series) -> str:
    """E.g. "CT CHEST (24 slices)"."""
    count = n_slices(series)
    return " ".join(x for x in (series.modality, series.description, f"({count} slice{'s' if count > 1 else ''})") if x)


def summary(case: Case) -> dict:
    """What the API returns for a case: the prediction without patient data, stage and timings."""
    p = case.prediction
    out: dict[str, Any] = {
        "stage": case.stage,
        "seconds": {k: round(v, 4) for k, v in case.seconds.items()},
        "audit_event": case.event_id,
    }
    if p is not None:
        out.update(
            {
                "scores": [{"name": s.name, "probability": s.probability, "in_set": s.in_set} for s in p.scores],
                "conformal_set": list(p.conformal_set),
                "coverage_target": p.coverage_target,
                "calibrated": p.calibrated,
                "impression": p.impression,
                "present": list(p.present),
                "missing": list(p.missing),
                "model_id": p.model_id,
                "answered": p.answered,
                "refusal": p.refusal,
            }
        )
    return out


def error_text(err: Exception) -> str:
    """What the page says about an error: a MedmmError's own message (file and field named), else only its type (logged)."""
    if isinstance(err, MedmmError):
        return f"{type(err).__name__}: {err}"
    log.error("unexpected failure: %s", type(err).__name__)  # no message: it may quote the input
    return f"Internal error ({type(err).__name__}); nothing was changed. The service keeps running."
