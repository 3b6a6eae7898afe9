"""The Gradio clinician interface: one patient at a time, research use only.

`build_app(service)` lays out the page and wires its events to a `ClinicianService`;
`serve(...)` (behind `medmm serve`) finds or trains the model, applies the security settings
(loopback by default, optional login, upload size limit, file access only to the app's own
output folder, no analytics, never a share link) and launches it.

The main event is a generator: the ranked diagnoses reach the page first, then the impression,
then the explanations, each stage sending only what it changed (see `ui.page`).
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import gradio as gr

import medmm
from medmm.codes import DIAGNOSES
from medmm.errors import MedmmError
from ui.auth import load_users, make_checker
from ui.page import CSS, Page, error_text
from ui.session import ClinicianService, Settings
from ui.views import disclaimer_html, message_html, viewer_frame

log = logging.getLogger(__name__)
ENV_PACS = "MEDMM_DICOMWEB_URL"
DEFAULT_MAX_FILE_SIZE = "200mb"
PUBLIC = "public"  # the only folder (besides Gradio's own uploads and cache) the file route serves
_VERDICTS = [("Agree", "agree"), ("Disagree / correct", "disagree"), ("Unsure", "unsure")]


def build_app(service: ClinicianService, *, title: str = "medmm clinician interface") -> gr.Blocks:
    """The page, wired to `service`."""
    page = Page(service)
    public = service.work_dir / PUBLIC
    public.mkdir(parents=True, exist_ok=True)
    patients = service.demo_patients()
    card_link, card_text = _model_card(service, public)

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        page.token = gr.State(None)
        gr.HTML(disclaimer_html(), elem_id="medmm-disclaimer")
        gr.Markdown(f"## {title}\nModel `{service.predictor.model_id}` (medmm {medmm.__version__}). {card_link}")
        with gr.Tabs():
            with gr.Tab("Upload files"):
                files = gr.File(label="DICOM files, a patient folder as .zip, a FHIR bundle (.json/.ndjson), a vitals table (.csv/.parquet)",
                                file_count="multiple", type="filepath", elem_id="medmm-upload")
                analyse = gr.Button("Analyse", variant="primary", elem_id="medmm-analyse")
            with gr.Tab("Demo cohort", visible=bool(patients)):
                pick = gr.Dropdown(choices=patients, label="Patient of the synthetic demo cohort", elem_id="medmm-demo-patient")
                analyse_demo = gr.Button("Analyse this patient", elem_id="medmm-analyse-demo")
            with gr.Tab("PACS (DICOMweb)", visible=bool(service.settings.pacs_url)):
                pacs_patient = gr.Textbox(label="Patient id", elem_id="medmm-pacs-patient")
                pacs_search = gr.Button("Search studies")
                pacs_studies = gr.Dropdown(choices=[], label="Studies of this patient", elem_id="medmm-pacs-studies")
                analyse_pacs = gr.Button("Pull and analyse", elem_id="medmm-analyse-pacs")
        page.status = gr.HTML(elem_id="medmm-status")
        with gr.Row():
            with gr.Column(scale=3):
                page.modalities = gr.HTML(elem_id="medmm-modalities")
                page.diagnoses = gr.HTML(elem_id="medmm-diagnoses")
                page.impression = gr.HTML(elem_id="medmm-impression")
            with gr.Column(scale=2):
                page.card = gr.HTML(elem_id="medmm-group-card")
        with gr.Accordion("Image viewer", open=True):
            with gr.Row():
                page.series = gr.Dropdown(choices=[], label="Series", visible=False, elem_id="medmm-series")
                page.preset = gr.Radio(choices=[], label="Window / level", visible=False, elem_id="medmm-preset")
            page.slice = gr.Slider(0, 1, step=1, label="Slice", visible=False, elem_id="medmm-slice")
            page.viewer = gr.Image(label="Image", type="numpy", format="png", interactive=False, height=480, elem_id="medmm-viewer")
        with gr.Accordion("Evidence: attention and Grad-CAM", open=True):
            with gr.Row():
                page.target = gr.Dropdown(choices=[], label="Explain diagnosis", elem_id="medmm-target")
                opacity = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Overlay opacity", elem_id="medmm-opacity")
            with gr.Row():
                overlay = {"type": "numpy", "format": "png", "interactive": False, "height": 420}
                page.overlay_attention = gr.Image(label="Attention", elem_id="medmm-overlay-attention", **overlay)
                page.overlay_gradcam = gr.Image(label="Grad-CAM", elem_id="medmm-overlay-gradcam", **overlay)
            page.vitals = gr.Image(label="Vital signs (shaded by relevance)", type="numpy", format="png", interactive=False, elem_id="medmm-vitals")
            page.notes = gr.HTML(elem_id="medmm-notes")
        with gr.Accordion("Ask about this patient", open=True):
            question = gr.Textbox(label="Question", placeholder="What supports heart failure?", elem_id="medmm-question")
            ask = gr.Button("Ask", elem_id="medmm-ask")
            page.answer = gr.Textbox(label="The model's answer (research use only)", interactive=False, elem_id="medmm-answer")
        with gr.Accordion("Feedback", open=True):
            verdict = gr.Radio(_VERDICTS, value="agree", label="Your verdict on this prediction", elem_id="medmm-verdict")
            named = gr.CheckboxGroup([(d.display, d.name) for d in DIAGNOSES], label="Diagnoses you would name (a correction when you disagree)",
                                     elem_id="medmm-named")
            gr.Textbox(label="Comment (kept on this page only: the audit trail stores no free text)", lines=2, elem_id="medmm-comment")
            send = gr.Button("Record feedback", elem_id="medmm-send-feedback")
            page.feedback_status = gr.HTML(elem_id="medmm-feedback-status")
        if card_text:
            with gr.Accordion("Model card", open=False):
                gr.Markdown(card_text)
        page.summary = gr.JSON(visible=False, label="summary")
        _wire(page, service, files, analyse, pick, analyse_demo, pacs_patient, pacs_search, pacs_studies, analyse_pacs, opacity, question, ask,
              verdict, named, send)
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def _wire(page: Page, service: ClinicianService, files, analyse, pick, analyse_demo, pacs_patient, pacs_search, pacs_studies, analyse_pacs,
          opacity, question, ask, verdict, named, send) -> None:
    """The page's events."""
    outputs = page.stage_outputs()

    def run_stages(open_case, opacity_value: float, request: gr.Request | None, progress: gr.Progress):
        progress(0.05, desc="Reading the input")
        try:
            case = open_case()
            yield page.loaded(case)
            progress(0.3, desc="Ranking diagnoses")
            next_step = {"diagnoses": (0.5, "Drafting the impression"), "impression": (0.75, "Computing explanations")}
            for case in service.analyse(case, user=_username(request)):
                if case.stage == "diagnoses":
                    yield page.diagnosed(case)
                elif case.stage == "impression":
                    yield page.drafted(case)
                elif case.prediction.answered:
                    yield page.explained(case, case.prediction.scores[0].name, opacity_value)
                else:
                    yield page.diagnosed(case)
                if case.stage in next_step:
                    progress(*next_step[case.stage])
        except Exception as err:  # noqa: BLE001 - the page reports it and the app keeps serving
            yield page.cleared(error_text(err))

    def analyse_uploads(paths, opacity_value, request: gr.Request, progress=gr.Progress()):
        yield from run_stages(lambda: service.open_uploads(list(paths or [])), opacity_value, request, progress)

    def analyse_patient(patient_id, opacity_value, request: gr.Request, progress=gr.Progress()):
        yield from run_stages(lambda: service.open_demo(patient_id or ""), opacity_value, request, progress)

    def analyse_study(study_uid, patient_id, opacity_value, request: gr.Request, progress=gr.Progress()):
        yield from run_stages(lambda: service.open_pacs(study_uid or "", (patient_id or "").strip()), opacity_value, request, progress)

    analyse.click(analyse_uploads, [files, opacity], outputs, api_name="analyse")
    analyse_demo.click(analyse_patient, [pick, opacity], outputs, api_name="analyse_demo")
    analyse_pacs.click(analyse_study, [pacs_studies, pacs_patient, opacity], outputs, api_name="analyse_pacs")

    def search(patient_id):
        try:
            found = service.search_pacs(patient_id or "")
        except Exception as err:  # noqa: BLE001
            return gr.update(choices=[], value=None), message_html(error_text(err), "error")
        choices = [(f"{s.date or 'no date'} {s.description or ''} {'/'.join(s.modalities)} ({s.n_instances or '?'} images)", s.study_uid)
                   for s in found]
        note = f"{len(found)} stud{'y' if len(found) == 1 else 'ies'} found." if found else "No study found for this patient id."
        return gr.update(choices=choices, value=choices[0][1] if choices else None), message_html(note)

    pacs_search.click(search, [pacs_patient], [pacs_studies, page.status], api_name="search_pacs")

    def select_series(token, index):
        try:
            return page.viewer_for(service.get(token), index)
        except MedmmError:
            return page.viewer_for(None, None)

    def redraw(token, index, preset, slice_index):
        try:
            images = service.get(token).study.images
        except MedmmError:
            return None
        if index is None or not images:
            return None
        return viewer_frame(images[int(index) % len(images)], preset or "", int(slice_index or 0))

    view_inputs = [page.token, page.series, page.preset, page.slice]
    page.series.input(select_series, [page.token, page.series], [page.viewer, page.preset, page.slice], api_name=False)
    page.preset.input(redraw, view_inputs, page.viewer, api_name=False)
    page.slice.release(redraw, view_inputs, page.viewer, api_name=False, trigger_mode="always_last")

    evidence = [page.overlay_attention, page.overlay_gradcam, page.vitals, page.notes]

    def show_evidence(token, target, opacity_value, progress=gr.Progress()):
        if not token or not target:
            return {c: gr.update() for c in evidence}
        try:
            case = service.get(token)
            if target not in case.explanations and case.stage == "explanations":
                progress(0.2, desc="Computing explanations")
                case = service.explain(token, target)
            return page.explanation_views(case, target, opacity_value)
        except Exception as err:  # noqa: BLE001
            return {page.notes: message_html(error_text(err), "error")}

    page.target.input(show_evidence, [page.token, page.target, opacity], evidence, api_name="explain")
    opacity.release(show_evidence, [page.token, page.target, opacity], evidence, api_name=False, trigger_mode="always_last")

    def answer(token, text):
        try:
            return service.ask(token, text or "")
        except Exception as err:  # noqa: BLE001
            return error_text(err)

    ask.click(answer, [page.token, question], page.answer, api_name="ask")
    question.submit(answer, [page.token, question], page.answer, api_name=False)

    def record(token, verdict_value, diagnoses, request: gr.Request):
        try:
            event = service.feedback(token, verdict_value, list(diagnoses or []), user=_username(request))
        except Exception as err:  # noqa: BLE001
            return message_html(error_text(err), "error")
        return message_html(f"Feedback recorded in the audit trail (event {event[:8]}).")

    send.click(record, [page.token, verdict, named], page.feedback_status, api_name="feedback")


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) or None


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


# -- serving -----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where the embedded default model is trained and kept: $MEDMM_CACHE/demo, else ~/.cache/medmm/demo."""
    root = os.environ.get("MEDMM_CACHE") or str(Path.home() / ".cache" / "medmm")
    return Path(root) / "demo"


def ensure_default_model(cache_dir: Path | None = None, *, quick: bool = False) -> Path:
    """The embedded default's checkpoint folder, trained by `medmm demo`'s code path first when not cached."""
    from medmm.demo import DemoOptions, model_is_cached, run_demo

    out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not model_is_cached(out / "model"):
        log.info("training the embedded default model once (it is kept for later runs)")
        run_demo(DemoOptions(out=out, quick=quick))
    return out / "model"


def serve(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    audit: str | Path | None = None,
    audit_store: str | Path | None = None,
    auth_file: str | Path | None = None,
    cohort: str | Path | None = None,
    pacs_url: str | None = None,
    work_dir: str | Path | None = None,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
) -> tuple[gr.Blocks, str]:
    """Launch the interface; returns (app, local URL). With `block=False` it serves from a background thread.

    `model` None: the embedded default (trained into the cache on first use), with its demo
    cohort pickable. `port` None: 7860, or the next free port after it. `audit`: the audit folder (default: next to the model). Users come from
    `auth_file` and $MEDMM_USERS; with none, no login is asked for. `pacs_url` (or
    $MEDMM_DICOMWEB_URL): a DICOMweb root to search and pull studies from.
    """
    if model is None:
        model_dir = ensure_default_model()
        cohort = cohort if cohort is not None else model_dir.parent / "cohort"
    else:
        model_dir = Path(model)
    users = load_users(auth_file)
    if not users and not _is_loopback(host):
        log.warning("serving on a non-loopback address without login: anyone who can reach it can use it")
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="medmm-ui-"))
    if work_dir is None:
        atexit.register(shutil.rmtree, work, True)
    configure_gradio_paths(work)
    settings = Settings(
        model_dir=model_dir, work_dir=work, audit_dir=Path(audit) if audit else None, audit_store=Path(audit_store) if audit_store else None,
        cohort_dir=Path(cohort) if cohort else None, pacs_url=pacs_url or os.environ.get(ENV_PACS) or None,
    )
    service = ClinicianService(settings)
    app = build_app(service)
    _, url, _ = app.launch(**launch_options(work, host, port, users, max_file_size), prevent_thread_lock=not block)
    return app, url


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configure_gradio_paths(work_dir: Path) -> None:
    """Point Gradio's upload folder and cache inside the app's own folder (call before building the app).

    Process-wide: Gradio reads both from the environment at each upload, so one process serves one app.
    """
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(work_dir / "gradio" / "examples")


def launch_options(work_dir: Path, host: str, port: int | None, users: dict[str, str], max_file_size: str | int) -> dict:
    """Keyword arguments for `Blocks.launch` carrying the security settings."""
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "auth": make_checker(users) if users else None,
        "auth_message": "medmm: research use only. Sign in." if users else None,
        "max_file_size": max_file_size,
        "allowed_paths": [str((work_dir / PUBLIC).resolve())],
        "show_error": False,
        "ssr_mode": False,
        "mcp_server": False,
        "quiet": True,
        "css": CSS,
        "theme": gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
    }
