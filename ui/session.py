"""The clinician interface's logic without Gradio: open a case, analyse it in stages, answer, take feedback.

A case is one patient's input (uploaded files, a demo-cohort patient or a study pulled from a
DICOMweb server) read into a Study. `ClinicianService.analyse` yields the case three times:
with the ranked diagnoses (fast, first), with the drafted impression (then the prediction is
recorded in the audit store), and with the explanations of the top diagnosis. Open cases are
kept in a small LRU keyed by a random token; an evicted case's files are deleted.

Nothing here logs patient data: log lines carry stage names, counts, timings and error types.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from medmm.deid.header import DicomHeader, read_header
from medmm.errors import ConfigError, InputError
from medmm.explain.explainer import StudyExplanation, explain_study
from medmm.records import Prediction, Study
from medmm.trail import VERDICTS, AuditStore, InputDigest, default_path, input_digests
from ui.audit_card import GroupCard, group_card, load_audit, model_ids
from ui.files import relative
from ui.inputs import CaseInputs, relative_message  # noqa: F401 - re-exported
from ui.patient import effective_demographics
from ui.signed import SignedEvidence, signed_evidence

log = logging.getLogger(__name__)
EXPLAIN_METHODS = ("attention", "gradcam")
MAX_QUESTION_CHARS = 300


@dataclass(frozen=True)
class Settings:
    """Where the service finds its model, audit and data, and where it may write."""

    model_dir: Path
    """Checkpoint folder."""
    work_dir: Path
    """The interface's own folder: case inputs, renders, Gradio's uploads and cache."""
    audit_dir: Path | None = None
    """Audit folder (audit.json, what `medmm audit` writes) for the subgroup card [default: next to the model]."""
    audit_store: Path | None = None
    """Audit trail (SQLite) of predictions and feedback [default: $MEDMM_AUDIT_STORE, else ~/.medmm/audit.sqlite]."""
    cohort_dir: Path | None = None
    """A cohort whose patients can be picked in the interface."""
    pacs_url: str | None = None
    """DICOMweb root (QIDO-RS / WADO-RS) to search and pull studies from [served: default $MEDMM_DICOMWEB_URL]."""
    model_card: Path | None = None
    """The model card shown beside the results [default: next to the audit and the model]."""
    max_cases: int = 16
    """Open cases kept in memory."""
    max_new_tokens: int | None = None
    """Impression length in tokens [default: the model's]."""
    explain_methods: tuple[str, ...] = EXPLAIN_METHODS
    """Evidence-map methods computed for the top diagnosis."""
    signed_notes: bool = True
    """Also compute signed word and hour evidence (integrated gradients)."""
    analysis_slots: int = 2
    """Analyses that run at once; others wait for a slot, and say so."""


@dataclass(frozen=True)
class Case:
    """One patient's input and what the model said about it so far."""

    token: str
    study: Study
    origin: str  # upload | demo | pacs
    folder: Path  # where its input files are
    digests: tuple[InputDigest, ...]
    stage: str = "loaded"  # loaded | diagnoses | impression | explanations
    prediction: Prediction | None = None
    explanations: Mapping[str, StudyExplanation] = field(default_factory=dict)  # diagnosis -> its explanation
    event_id: str | None = None  # audit event of the prediction
    seconds: Mapping[str, float] = field(default_factory=dict)  # stage -> seconds
    card: GroupCard | None = None
    signed: Mapping[str, SignedEvidence | None] = field(
        default_factory=dict
    )  # diagnosis -> signed evidence (None: no notes or vitals)


def find_audit_dir(model_dir: Path) -> Path | None:
    """The audit folder beside DIR/model: DIR/evaluation (as `medmm demo` writes it), DIR/audit, DIR/model/audit, DIR/audits/default; or None."""
    root = model_dir.parent
    for candidate in (root / "evaluation", root / "audit", model_dir / "audit", root / "audits" / "default"):
        if (candidate / "audit.json").is_file():
            return candidate
    return None


def find_model_card(model_dir: Path, audit_dir: Path | None) -> Path | None:
    """model_card.md beside the audit (governance/model_card.md for governance/audits/default) or the model."""
    places = [model_dir / "model_card.md", model_dir.parent / "model_card.md"]
    if audit_dir is not None:
        places = [
            audit_dir / "model_card.md",
            audit_dir.parent / "model_card.md",
            audit_dir.parent.parent / "model_card.md",
        ] + places
    return next((p for p in places if p.is_file()), None)


class ClinicianService(CaseInputs):
    """Cases, predictions, explanations, questions and feedback for the clinician interface."""

    def __init__(self, settings: Settings, *, predictor=None, store: AuditStore | None = None):
        from medmm.predict import Predictor

        self.settings = settings
        self.work_dir = Path(settings.work_dir)
        self.cases_dir = self.work_dir / "cases"
        self.cases_dir.mkdir(parents=True, exist_ok=True)
        self.predictor = predictor if predictor is not None else Predictor.from_checkpoint(settings.model_dir)
        self.store = (
            store
            if store is not None
            else AuditStore(settings.audit_store or default_path(Path.home() / ".medmm" / "audit.sqlite"))
        )
        self.audit_dir = (
            settings.audit_dir if settings.audit_dir is not None else find_audit_dir(Path(settings.model_dir))
        )
        self.audit = load_audit(self.audit_dir)
        self.model_card = settings.model_card or find_model_card(Path(settings.model_dir), self.audit_dir)
        self.model_ids = model_ids(settings.model_dir) | {self.predictor.model_id}
        self._cases: OrderedDict[str, Case] = OrderedDict()
        self._lock = threading.Lock()
        self._feedback: dict[tuple, str] = {}  # (case token, form id, verdict, diagnoses) -> audit event
        self.slots = threading.BoundedSemaphore(max(settings.analysis_slots, 1))
        self._grid = self.predictor.preprocessor.grid_kwargs  # the model's grid and its task's channels

    # -- cases ---------------------------------------------------------------------------------

    def _new_folder(self) -> tuple[str, Path]:
        token = secrets.token_hex(16)
        folder = self.cases_dir / token
        folder.mkdir(parents=True)
        return token, folder

    def _keep(self, case: Case) -> Case:
        evicted = []
        with self._lock:
            self._cases[case.token] = case
            self._cases.move_to_end(case.token)
            while len(self._cases) > self.settings.max_cases:
                evicted.append(self._cases.popitem(last=False)[1])
        for old in evicted:
            self._discard(old)
        return case

    def _discard(self, case: Case) -> None:
        if case.origin != "demo" and case.folder.is_relative_to(self.cases_dir):
            shutil.rmtree(case.folder, ignore_errors=True)
        with self._lock:
            for key in [k for k in self._feedback if k[0] == case.token]:
                del self._feedback[key]

    def get(self, token: str | None) -> Case:
        """The open case with this token (InputError when it was closed or never opened)."""
        with self._lock:
            case = self._cases.get(token or "")
            if case is not None:
                self._cases.move_to_end(case.token)
        if case is None:
            raise InputError("no open case: load a patient first (cases close after a while)", where="case")
        return case

    def close(self) -> None:
        """Forget every case and delete the copies of their files."""
        with self._lock:
            cases = list(self._cases.values())
            self._cases.clear()
        for case in cases:
            self._discard(case)

    def _open(self, token: str, study: Study, origin: str, folder: Path, start: float) -> Case:
        """A new case with its input files hashed for the audit trail and its group card, kept open."""
        card = group_card(self.audit, effective_demographics(study), self.model_ids)
        case = Case(
            token,
            study,
            origin,
            folder,
            input_digests([folder]),
            card=card,
            seconds={"load": time.perf_counter() - start},
        )
        return self._keep(case)

    # -- analysis ------------------------------------------------------------------------------

    def _update(self, case: Case, **changes) -> Case:
        updated = dataclasses.replace(case, **changes)
        with self._lock:
            if case.token in self._cases:
                self._cases[case.token] = updated
        return updated

    def analyse(self, case: Case, *, user: str | None = None) -> Iterator[Case]:
        """Yield the case after each stage: ranked diagnoses, impression (recorded in the audit store), explanations.

        The first two stages are the Predictor's own (`Predictor.predict_stages`): the study is
        preprocessed and scored once, and the impression is written from that same batch, so the
        recorded prediction is the one `Predictor.predict` gives.
        """
        times = dict(case.seconds)
        start = time.perf_counter()
        stages = self.predictor.predict_stages(case.study, max_new_tokens=self.settings.max_new_tokens)
        first = next(stages)
        times["diagnoses"] = time.perf_counter() - start
        case = self._update(case, stage="diagnoses", prediction=first, seconds=dict(times))
        yield case
        if not first.answered:  # nothing the model can read: no impression, nothing to explain
            event = self._record(first, case, user)
            yield self._update(case, stage="explanations", event_id=event, seconds=dict(times))
            return

        start = time.perf_counter()
        try:
            prediction = next(stages)
        except Exception:
            self._record(first, case, user)  # what was shown is recorded even when the draft fails
            raise
        times["impression"] = time.perf_counter() - start
        event = self._record(prediction, case, user)
        case = self._update(case, stage="impression", prediction=prediction, event_id=event, seconds=dict(times))
        yield case

        start = time.perf_counter()
        top = prediction.scores[0].name
        explained, signed = self._explanation(case, top)
        times["explanations"] = time.perf_counter() - start
        case = self._update(case, stage="explanations", explanations=explained, signed=signed, seconds=dict(times))
        log.info("case analysed: %s", ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
        yield case

    def _record(self, prediction: Prediction, case: Case, user: str | None) -> str:
        return self.store.record_prediction(
            prediction, digests=case.digests, model_dir=self.settings.model_dir, user=user, source="ui"
        )

    def _explanation(
        self, case: Case, diagnosis: str
    ) -> tuple[dict[str, StudyExplanation], dict[str, SignedEvidence | None]]:
        """Attention and Grad-CAM of `diagnosis`, and its signed evidence (integrated gradients), added to the case's."""
        explained, signed = dict(case.explanations), dict(case.signed)
        if not case.study.modalities:
            return explained, signed
        if diagnosis not in explained:
            with self.predictor.lock:  # hooks on the shared model: one explanation or prediction at a time
                explained[diagnosis] = explain_study(
                    self.predictor,
                    case.study,
                    methods=self.settings.explain_methods,
                    diagnoses=[diagnosis],
                    impression=False,
                )
        if self.settings.signed_notes and diagnosis not in signed:
            signed[diagnosis] = signed_evidence(self.predictor, case.study, diagnosis)
        return explained, signed

    def explain(self, token: str, diagnosis: str) -> Case:
        """The case with `diagnosis` explained (computed once, then kept)."""
        if diagnosis not in self.predictor.model.config.diagnoses:
            raise ConfigError("unknown diagnosis", where="explain target")
        case = self.get(token)
        if diagnosis in case.explanations and (diagnosis in case.signed or not self.settings.signed_notes):
            return case
        explained, signed = self._explanation(case, diagnosis)
        return self._update(case, explanations=explained, signed=signed)

    def dicom_header(self, token: str, series_index: int) -> DicomHeader:
        """The shown part of the header of the first file of a series of an open case (read from the case's own folder only)."""
        case = self.get(token)
        images = case.study.images
        if not images:
            raise InputError("this case has no image", where="dicom header")
        series = images[int(series_index) % len(images)]
        if not series.source_files:
            raise InputError("this series names no file", where="dicom header")
        path = Path(series.source_files[0])
        folder = case.folder.resolve()
        if not path.resolve().is_relative_to(folder) or not path.is_file():
            raise InputError("the series' file is not in the case folder", where="dicom header")
        return read_header(path, relative(str(path), case.folder))

    # -- questions and feedback ----------------------------------------------------------------

    def ask(self, token: str, question: str) -> str:
        """The model's answer about this patient, conditioned on every modality the case has."""
        question = " ".join(question.split())
        if not question:
            raise InputError("type a question first", where="question")
        if len(question) > MAX_QUESTION_CHARS:
            raise InputError(f"questions are limited to {MAX_QUESTION_CHARS} characters", where="question")
        case = self.get(token)
        readable = (
            case.prediction.answered
            if case.prediction is not None
            else any(u.used for u in self.predictor.select(case.study)[1])
        )
        if not readable:
            return "No answer: this study holds nothing this model can read (see the inputs above)."
        start = time.perf_counter()
        answer = self.predictor.ask(case.study, question)
        log.info("question answered in %.2f s", time.perf_counter() - start)
        return answer.strip()

    def feedback(
        self,
        token: str,
        verdict: str,
        diagnoses: Sequence[str] = (),
        *,
        user: str | None = None,
        submission: str | None = None,
    ) -> tuple[str, bool]:
        """Record the clinician's verdict on the case's prediction; returns (audit event id, whether it is new).

        agree: the diagnoses confirmed (default: the prediction set, else the top diagnosis);
        disagree: the diagnoses the clinician would name instead (a correction; may be empty);
        unsure: no diagnoses needed. `submission` identifies the form: the same verdict and names sent
        again under it (a double click, a retried request, a click after the form was recorded) are
        recorded once; another verdict or other names under it are a new submission.
        """
        if verdict not in VERDICTS:
            raise ConfigError(f"verdict must be one of {', '.join(VERDICTS)}", where="feedback.verdict")
        case = self.get(token)
        if case.prediction is None or case.event_id is None:
            raise InputError("the prediction is not finished yet; wait for the impression", where="feedback")
        named = [d for d in diagnoses if d]
        known = self.predictor.model.config.diagnoses
        unknown = [d for d in named if d not in known]
        if unknown:
            raise ConfigError(f"diagnoses must be among {', '.join(known)}", where="feedback.diagnoses")
        if verdict == "agree" and not named:
            named = list(case.prediction.conformal_set) or [s.name for s in case.prediction.scores[:1]]
        # One filling-in of the form sent again (a double click, a click that lands after the form was
        # recorded but before its reset reached the page) is one event: same form, same content.
        key = (case.token, submission, verdict, tuple(sorted(set(named)))) if submission else None
        with self._lock:
            if key is not None and key in self._feedback:
                return self._feedback[key], False
            event = self.store.record_feedback(
                case.prediction,
                verdict=verdict,
                diagnoses=named,
                model_dir=self.settings.model_dir,
                user=user,
                source="ui",
                digests=case.digests,
            )
            if key is not None:
                self._feedback[key] = event
        log.info("feedback recorded (%s)", verdict)
        return event, True
