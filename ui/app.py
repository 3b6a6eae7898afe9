"""The Gradio clinician interface: one patient at a time, research use only.

`build_app(service)` lays out the page and wires its events (ui.events) to a
`ClinicianService`; `serve(...)` (ui.serving, behind `medmm serve`) launches it with the
security settings.

The main event is a generator: a new analysis first empties the page, then the ranked
diagnoses arrive, then the impression, then the explanations, each stage sending only what it
changed (see `ui.page`). Progress shows on the status line only, so results are never faded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gradio as gr

import medmm
from medmm.errors import MedmmError
from ui.events import wire
from ui.evidence import DEFAULT_OPACITY
from ui.page import SIDES, Page
from ui.serving import (  # noqa: F401 - the serving API, as it was imported from here
    DEFAULT_MAX_FILE_SIZE,
    ENV_PACS,
    PUBLIC,
    configure_gradio_paths,
    default_cache_dir,
    ensure_default_model,
    launch_options,
    serve,
)
from ui.session import ClinicianService
from ui.viewer import viewer
from ui.views import disclaimer_html

log = logging.getLogger(__name__)
VERDICTS = [("Agree", "agree"), ("Disagree / correct", "disagree"), ("Unsure", "unsure")]
NO_BUTTONS: list = []  # no share, download or fullscreen buttons on any component


def build_app(service: ClinicianService, *, title: str = "medmm clinician interface") -> gr.Blocks:
    """The page, wired to `service`."""
    page = Page(service)
    public = service.work_dir / PUBLIC
    public.mkdir(parents=True, exist_ok=True)
    has_patients = bool(service.settings.cohort_dir) and bool(service.demo_patients())
    card_link, card_text = _model_card(service, public)

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        page.token, page.form = gr.State(None), gr.State(None)
        zone = gr.Textbox("", visible=False, elem_id="medmm-zone")
        gr.HTML(disclaimer_html(), elem_id="medmm-disclaimer")
        gr.Markdown(f"## {title}\nModel `{service.predictor.model_id}` (medmm {medmm.__version__}). {card_link}")
        with gr.Tabs():
            with gr.Tab("Upload files"):
                files = gr.File(
                    label="DICOM files, a patient folder as .zip, a FHIR bundle (.json/.ndjson), a vitals table (.csv/.parquet)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="medmm-upload",
                )
                analyse = gr.Button("Analyse", variant="primary", elem_id="medmm-analyse")
            with gr.Tab("Demo cohort", visible=has_patients):
                # choices arrive per session once the page loads (after login): the page's config holds no patient id
                pick = gr.Dropdown(
                    choices=[],
                    label="Patient of the synthetic demo cohort",
                    elem_id="medmm-demo-patient",
                    allow_custom_value=True,
                )
                analyse_demo = gr.Button("Analyse this patient", elem_id="medmm-analyse-demo")
            with gr.Tab("PACS (DICOMweb)", visible=bool(service.settings.pacs_url)):
                pacs_patient = gr.Textbox(label="Patient id", elem_id="medmm-pacs-patient")
                pacs_search = gr.Button("Search studies")
                pacs_studies = gr.Dropdown(choices=[], label="Studies of this patient", elem_id="medmm-pacs-studies")
                analyse_pacs = gr.Button("Pull and analyse", elem_id="medmm-analyse-pacs")
        page.notice = gr.HTML(elem_id="medmm-notice")
        page.status = gr.HTML(elem_id="medmm-status", min_height=40)
        page.header = gr.HTML(elem_id="medmm-header")
        with gr.Row():
            with gr.Column(scale=3):
                page.modalities = gr.HTML(elem_id="medmm-modalities")
                page.diagnoses = gr.HTML(elem_id="medmm-diagnoses")
                page.impression = gr.HTML(elem_id="medmm-impression")
            with gr.Column(scale=2):
                page.card = gr.HTML(elem_id="medmm-group-card")
        with gr.Accordion(
            "Image viewer (wheel: zoom, drag: pan, right drag or W/L: window, double click: reset)", open=True
        ):
            with gr.Row():
                page.series = gr.Dropdown(choices=[], label="Series", visible=False, elem_id="medmm-series")
                page.preset = gr.Radio(choices=[], label="Window / level preset", visible=False, elem_id="medmm-preset")
            page.slice = gr.Slider(0, 1, step=1, label="Slice", visible=False, elem_id="medmm-slice")
            page.viewer = viewer("medmm-viewer", height=480)
            with gr.Accordion("DICOM header (no identifiers beyond those in the header above)", open=False):
                page.dicom = gr.HTML(elem_id="medmm-dicom-header")
        with gr.Accordion("Evidence: two diagnoses side by side", open=True, elem_id="medmm-evidence"):
            opacity = gr.Slider(
                0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", elem_id="medmm-opacity"
            )
            with gr.Row(equal_height=False):
                for side in SIDES:
                    with gr.Column():
                        if side == "a":
                            page.target = gr.Dropdown(choices=[], label="Explain diagnosis", elem_id="medmm-target")
                        else:
                            page.compare = gr.Dropdown(choices=[], label="Compare with", elem_id="medmm-compare")
                        with gr.Row():
                            attention = viewer(
                                f"medmm-overlay-attention{_suffix(side)}", height=300, elem_classes=["medmm-overlay"]
                            )
                            gradcam = viewer(
                                f"medmm-overlay-gradcam{_suffix(side)}", height=300, elem_classes=["medmm-overlay"]
                            )
                        vitals = gr.HTML(elem_id=f"medmm-vitals{_suffix(side)}")
                        notes = gr.HTML(elem_id=f"medmm-notes{_suffix(side)}")
                        page.sides[side] = {
                            "attention": attention,
                            "gradcam": gradcam,
                            "vitals": vitals,
                            "notes": notes,
                        }
        with gr.Accordion("Ask about this patient", open=True):
            example = next(
                iter(service.predictor.task.displays.lower.values()), "a diagnosis"
            )  # the model's own first label
            question = gr.Textbox(label="Question", placeholder=f"What supports {example}?", elem_id="medmm-question")
            ask = gr.Button("Ask", elem_id="medmm-ask")
            page.answer = gr.Textbox(
                label="The model's answer (research use only)",
                interactive=False,
                elem_id="medmm-answer",
                buttons=NO_BUTTONS,
            )
        with gr.Accordion("Feedback", open=True):
            page.verdict = gr.Radio(
                VERDICTS, value=None, label="Your verdict on this prediction (choose one)", elem_id="medmm-verdict"
            )
            page.named = gr.CheckboxGroup(
                [(spec.display, spec.name) for spec in service.predictor.task.labels],
                value=[],
                label="Diagnoses you would name (a correction when you disagree)",
                elem_id="medmm-named",
            )
            page.comment = gr.Textbox(
                label="Comment (kept on this page only: the audit trail stores no free text)",
                lines=2,
                elem_id="medmm-comment",
                buttons=NO_BUTTONS,
            )
            send = gr.Button("Record feedback", elem_id="medmm-send-feedback")
            page.feedback_status = gr.HTML(elem_id="medmm-feedback-status")
        if card_text:
            with gr.Accordion("Model card", open=False):
                gr.Markdown(card_text)
        page.summary = gr.JSON(visible=False, label="summary", buttons=NO_BUTTONS)
        wire(
            demo,
            page,
            service,
            zone=zone,
            files=files,
            analyse=analyse,
            pick=pick,
            analyse_demo=analyse_demo,
            pacs_patient=pacs_patient,
            pacs_search=pacs_search,
            pacs_studies=pacs_studies,
            analyse_pacs=analyse_pacs,
            opacity=opacity,
            question=question,
            ask=ask,
            send=send,
        )
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def _suffix(side: str) -> str:
    return "" if side == "a" else "-b"


def _model_card(service: ClinicianService, public: Path) -> tuple[str, str]:
    """(Markdown link to the model card served from the public folder, its text).

    The card is the one found beside the audit or the model, else written from the audit
    folder's evaluation.json when there is one; otherwise the page says there is none.
    """
    text = None
    if service.model_card is not None and Path(service.model_card).is_file():
        text = Path(service.model_card).read_text(encoding="utf-8")
    elif service.audit_dir is not None and (Path(service.audit_dir) / "evaluation.json").is_file():
        from medmm.governance import load_run, model_card

        try:
            evaluation, audit = load_run(service.audit_dir)
            config = json.loads((Path(service.settings.model_dir) / "config.json").read_text(encoding="utf-8"))
            text = model_card(evaluation, audit, config)
        except (MedmmError, OSError, ValueError, KeyError) as err:
            log.warning("no model card: the evaluation could not be read (%s)", type(err).__name__)
    if text is None:
        return "No model card was found for this model (write one with `python -m medmm.governance`).", ""
    copy = public / "model_card.md"
    copy.write_text(text, encoding="utf-8")
    return f"[Model card]({_file_url(copy)}) (performance, intended use and limits).", text


def _file_url(path: Path) -> str:
    return f"/gradio_api/file={path.resolve()}"
