"""The page's events: analyses (one at a time per page, refused visibly otherwise), the viewer, the two
evidence columns, questions and feedback (recorded once per submission, then the form is reset).

Audit events name the signed-in user, or "anonymous" without login, never the account the
server runs under. Progress shows on the status line only (`show_progress_on`), so results
that have arrived are never faded under progress bars while later stages run.
"""

from __future__ import annotations

import secrets
from typing import Callable

import gradio as gr

from medmm.errors import InputError, MedmmError
from ui.guard import OWNERS, session_of
from ui.localtime import BROWSER_ZONE_JS, local_time, zone_named
from ui.page import SIDES, Page, error_text
from ui.runs import Run, RunGuard
from ui.session import Case, ClinicianService
from ui.views import message_html

ANONYMOUS = "anonymous"


def audit_user(request: gr.Request | None) -> str:
    """The signed-in user's name, or "anonymous" when the app has no login."""
    return getattr(request, "username", None) or ANONYMOUS


def refusal(run: Run, zone_name: str | None) -> str:
    zone = zone_named(zone_name)
    return (
        f"Analyse was pressed while the analysis of {run.what} (started {local_time(run.started, zone, seconds=True)}) was still "
        "running: that click was not taken. The result below is of that analysis (its files are listed in its header); "
        "press Analyse again once it has finished."
    )


def wire(
    demo: gr.Blocks,
    page: Page,
    service: ClinicianService,
    *,
    zone,
    files,
    analyse,
    pick,
    analyse_demo,
    pacs_patient,
    pacs_search,
    pacs_studies,
    analyse_pacs,
    opacity,
    question,
    ask,
    send,
) -> None:
    """Attach every event of the page."""
    outputs = page.stage_outputs()
    runs = RunGuard()
    demo.load(None, None, zone, js=BROWSER_ZONE_JS)
    demo.load(lambda: gr.update(choices=service.demo_patients()), None, pick, api_name=False, show_progress="hidden")

    def run_stages(
        open_case: Callable[[], Case], what: str, names: list[str], opacity_value, zone_name, request, progress
    ):
        session = getattr(request, "session_hash", None) or secrets.token_hex(
            8
        )  # no page to speak of: a key of its own
        admitted, run = runs.begin(session, what)
        if not admitted:
            yield {page.notice: message_html(refusal(run, zone_name), "warning")}
            return
        zone = zone_named(zone_name)
        slot = False
        try:
            yield page.starting(what, names)
            slot = service.slots.acquire(blocking=False)
            if not slot:
                yield {page.status: message_html("Waiting for a free slot: other analyses are running...")}
                slot = service.slots.acquire()
            progress(0.05, desc="Reading the input")
            case = open_case()
            yield page.loaded(case, zone)
            progress(0.3, desc="Ranking diagnoses")
            next_step = {"diagnoses": (0.5, "Drafting the impression"), "impression": (0.75, "Computing explanations")}
            for case in service.analyse(case, user=audit_user(request)):
                if case.stage == "diagnoses":
                    yield page.diagnosed(case, zone)
                elif case.stage == "impression":
                    yield page.drafted(case)
                elif case.prediction.answered:
                    yield page.explained(case, case.prediction.scores[0].name, float(opacity_value or 0.0), zone)
                else:
                    yield page.finished_without_answer(case)
                if case.stage in next_step:
                    progress(*next_step[case.stage])
        except Exception as err:  # noqa: BLE001 - the page reports it and the app keeps serving
            yield page.cleared(error_text(err))
        finally:
            if slot:
                service.slots.release()
            runs.end(session, run)

    def analyse_uploads(paths, opacity_value, zone_name, request: gr.Request, progress=gr.Progress()):
        paths = [str(p) for p in (paths or [])]
        names = [p.rsplit("/", 1)[-1] for p in paths]
        owner = session_of(getattr(request, "cookies", None))

        def open_case() -> Case:
            if any(not OWNERS.owned_by(owner, p) for p in paths):
                raise InputError(
                    "these files were not uploaded from this browser session; upload them again", where="upload"
                )
            return service.open_uploads(paths)

        what = f"{len(paths)} uploaded file{'s' if len(paths) != 1 else ''}"
        yield from run_stages(open_case, what, names, opacity_value, zone_name, request, progress)

    def analyse_patient(patient_id, opacity_value, zone_name, request: gr.Request, progress=gr.Progress()):
        yield from run_stages(
            lambda: service.open_demo(patient_id or ""),
            "a demo-cohort patient",
            [],
            opacity_value,
            zone_name,
            request,
            progress,
        )

    def analyse_study(study_uid, patient_id, opacity_value, zone_name, request: gr.Request, progress=gr.Progress()):
        yield from run_stages(
            lambda: service.open_pacs(study_uid or "", (patient_id or "").strip()),
            "a study pulled from the PACS",
            [],
            opacity_value,
            zone_name,
            request,
            progress,
        )

    running = {
        "outputs": outputs,
        "show_progress": "full",
        "show_progress_on": [page.status],
        "trigger_mode": "multiple",
        "concurrency_limit": None,
    }
    analyse.click(analyse_uploads, [files, opacity, zone], api_name="analyse", **running)
    analyse_demo.click(analyse_patient, [pick, opacity, zone], api_name="analyse_demo", **running)
    analyse_pacs.click(analyse_study, [pacs_studies, pacs_patient, opacity, zone], api_name="analyse_pacs", **running)

    def files_changed(token, request: gr.Request):
        session = getattr(request, "session_hash", None)
        if token is None and (session is None or runs.running(session) is None):
            return ""
        return message_html(
            "The file list changed: the result below is still of the files named in its header. Press Analyse "
            "to analyse the new list.",
            "warning",
        )

    files.change(files_changed, [page.token], page.notice, api_name=False, show_progress="hidden", queue=False)

    def search(patient_id):
        try:
            found = service.search_pacs(patient_id or "")
        except Exception as err:  # noqa: BLE001
            return gr.update(choices=[], value=None), message_html(error_text(err), "error")
        choices = [
            (
                f"{s.date or 'no date'} {s.description or ''} {'/'.join(s.modalities)} ({s.n_instances or '?'} images)",
                s.study_uid,
            )
            for s in found
        ]
        note = (
            f"{len(found)} stud{'y' if len(found) == 1 else 'ies'} found."
            if found
            else "No study found for this patient id."
        )
        return gr.update(choices=choices, value=choices[0][1] if choices else None), message_html(note)

    pacs_search.click(search, [pacs_patient], [pacs_studies, page.status], api_name="search_pacs")
    _wire_viewer(page, service)
    _wire_evidence(page, service, opacity, zone)

    def answer(token, text):
        try:
            return service.ask(token, text or "")
        except Exception as err:  # noqa: BLE001
            return error_text(err)

    ask.click(answer, [page.token, question], page.answer, api_name="ask", show_progress_on=[page.answer])
    question.submit(answer, [page.token, question], page.answer, api_name=False, show_progress_on=[page.answer])

    def record(token, form, verdict_value, diagnoses, request: gr.Request):
        form = form if isinstance(form, dict) else {}
        if not verdict_value:
            done = form.get("recorded")
            said = (
                f"Feedback recorded (event {done[:8]}). To send another, choose a verdict."
                if done
                else "Choose a verdict first (agree, disagree or unsure); nothing was recorded."
            )
            return {page.feedback_status: message_html(said, "info" if done else "warning")}
        try:
            event, new = service.feedback(
                token, verdict_value, list(diagnoses or []), user=audit_user(request), submission=form.get("id")
            )
        except Exception as err:  # noqa: BLE001
            return {page.feedback_status: message_html(error_text(err), "error")}
        said = (
            f"Feedback recorded in the audit trail (event {event[:8]})."
            if new
            else f"Already recorded (event {event[:8]})."
        )
        # the form keeps its id: a late click of this filling-in (same verdict and names) is "already recorded",
        # a new verdict or new names under it are a new submission (see ClinicianService.feedback)
        return {
            page.feedback_status: message_html(said),
            page.form: {"id": form.get("id"), "recorded": event},
            page.verdict: gr.update(value=None),
            page.named: gr.update(value=[]),
            page.comment: "",
        }

    send.click(
        record,
        [page.token, page.form, page.verdict, page.named],
        [page.feedback_status, page.form, page.verdict, page.named, page.comment],
        api_name="feedback",
    )


def _wire_viewer(page: Page, service: ClinicianService) -> None:
    def select_series(token, index):
        try:
            return page.viewer_for(service.get(token), index)
        except MedmmError:
            return page.viewer_for(None, None)

    def redraw(token, index, preset, slice_index):
        try:
            case = service.get(token)
        except MedmmError:
            return ""
        if index is None or not case.study.images:
            return ""
        index = int(index) % len(case.study.images)
        return page.viewer_payload(case, index, preset or "", int(slice_index or 0))

    view_inputs = [page.token, page.series, page.preset, page.slice]
    quiet = {"api_name": False, "show_progress": "hidden"}
    page.series.input(
        select_series, [page.token, page.series], [page.viewer, page.preset, page.slice, page.dicom], **quiet
    )
    page.preset.input(redraw, view_inputs, page.viewer, **quiet)
    page.slice.input(redraw, view_inputs, page.viewer, trigger_mode="always_last", **quiet)


def _wire_evidence(page: Page, service: ClinicianService, opacity, zone) -> None:
    for side, chooser in zip(SIDES, (page.target, page.compare)):
        views = list(page.sides[side].values())

        def show(token, target, opacity_value, zone_name, side=side, progress=gr.Progress()):
            if not token or not target:
                return page.evidence(None, None, 0.0, zone_named(zone_name), side)
            try:
                case = service.get(token)
                missing = target not in case.explanations or (
                    service.settings.signed_notes and target not in case.signed
                )
                if case.stage == "explanations" and missing:
                    progress(0.2, desc="Computing explanations")
                    case = service.explain(token, target)
                return page.evidence(case, target, float(opacity_value or 0.0), zone_named(zone_name), side)
            except Exception as err:  # noqa: BLE001
                return {page.sides[side]["notes"]: message_html(error_text(err), "error")}

        chooser.input(
            show,
            [page.token, chooser, opacity, zone],
            views,
            api_name="explain" if side == "a" else "compare",
            show_progress_on=[page.sides[side]["notes"]],
        )

    overlays = [page.sides[s][k] for s in SIDES for k in ("attention", "gradcam")]

    def reopacify(token, first, second, opacity_value):
        try:
            case = service.get(token)
        except MedmmError:
            return {c: gr.update() for c in overlays}
        out = {}
        for side, target in zip(SIDES, (first, second)):
            attention, gradcam = page.overlays(case, target, float(opacity_value or 0.0)) if target else ("", "")
            out[page.sides[side]["attention"]], out[page.sides[side]["gradcam"]] = attention, gradcam
        return out

    opacity.input(
        reopacify,
        [page.token, page.target, page.compare, opacity],
        overlays,
        api_name=False,
        show_progress="hidden",
        trigger_mode="always_last",
    )
