"""Predictor: a checkpoint in, one Prediction per study out.

`Predictor.from_checkpoint(dir).predict(study)` preprocesses the study exactly as in training,
runs the diagnosis head (with the fitted temperature, when the checkpoint has one), forms the
conformal set, and drafts the impression; `predict_stages(study)` gives the same Prediction in
two steps (the scores first, then the impression written from the same batch) for an interface
that shows the scores while the impression is written. Generated words never leave it
unchecked: the impression is grounded against the study and the prediction (medmm.grounding),
and questions (`ask`) are answered from the study's data and the prediction, not from free LM
text.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from scipy.special import expit

import medmm
from medmm.cases import collate, to_device
from medmm.codes import NOTE_TYPES
from medmm.errors import ConfigError
from medmm.grounding import GroundedText, PatientFacts, answer_question, ground_impression
from medmm.grounding.notes import NoteText, note_label
from medmm.grounding.questions import ADVICE, UNKNOWN, recognise
from medmm.grounding.vitals import adult_thresholds_apply, summarise, when
from medmm.lm.prompts import IMPRESSION_PROMPT
from medmm.records import MODALITIES, Answer, DiagnosisScore, InputUse, Prediction, Study
from medmm.scope import nothing_readable, select_inputs
from medmm.tasks import DEFAULT_TASK, load_task
from medmm.transforms.study import StudyPreprocessor

# Score of the image branch at which a radiograph finding is stated, before validation data fit one:
# the unimodal image head is trained with a logistic loss, so 0.5 is its own decision point.
DEFAULT_IMAGE_FINDING_THRESHOLD = 0.5


_CALIBRATION_RANGES = {
    "temperature": ("a positive number", lambda v: v > 0),
    "conformal_threshold": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "coverage_target": ("a number in (0, 1)", lambda v: 0 < v < 1),
}


def check_calibration(calibration: dict) -> dict:
    """A copy of `calibration`, refused when a value would mislead (temperature <= 0, threshold outside [0, 1])."""
    if not isinstance(calibration, dict):
        raise ConfigError("calibration must be a mapping", where="calibration")
    for key, (expected, in_range) in _CALIBRATION_RANGES.items():
        value = calibration.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not in_range(value)
        ):
            raise ConfigError(f"expected {expected}", where=f"calibration.{key}")
    for key, bounded in (("operating_thresholds", False), ("image_finding_thresholds", True)):
        table = calibration.get(key)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ConfigError("expected a mapping of diagnosis to threshold", where=f"calibration.{key}")
        for name, value in table.items():
            number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if not number or (bounded and not 0 <= value <= 1):
                raise ConfigError(
                    "expected a number in [0, 1]" if bounded else "expected a number", where=f"calibration.{key}.{name}"
                )
    return dict(calibration)


class Predictor:
    """Runs a MedMM model on studies. Thread-compatible: one call at a time per instance."""

    def __init__(self, model, *, note_tokenizer=None, model_id: str | None = None, calibration: dict | None = None):
        from medmm.encoders.text import load_note_tokenizer

        self.model = model.eval()
        self.device = next(model.head.parameters()).device
        tokenizer = note_tokenizer if note_tokenizer is not None else load_note_tokenizer(model.config.notes)
        self.task = model.task if getattr(model, "task", None) is not None else load_task(DEFAULT_TASK)
        self.preprocessor = StudyPreprocessor(model.config.preprocess, tokenizer, task=self.task)
        self.calibration = check_calibration(
            calibration if calibration is not None else getattr(model, "calibration", None) or {}
        )
        self.model_id = model_id or "uncheckpointed"
        self.lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls,
        directory: str | Path,
        *,
        device: str | torch.device = "cpu",
        note_tokenizer=None,
        text_backbone: torch.nn.Module | None = None,
    ) -> "Predictor":
        """Load a checkpoint folder; its model id is derived from the checksums of its files."""
        from medmm.checkpoint import checkpoint_id, load_checkpoint

        directory = Path(directory)
        model = load_checkpoint(directory, device=device, text_backbone=text_backbone)
        return cls(model, note_tokenizer=note_tokenizer, model_id=checkpoint_id(directory))

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    def select(self, study: Study) -> tuple[Study, tuple[InputUse, ...]]:
        """The study as this model may read it (its input scope applied), and a verdict per input."""
        config = self.model.config
        return select_inputs(study, config.scope, config.modalities, config.preprocess.vitals_steps)

    def batch(self, studies: Sequence[Study]) -> dict:
        """Preprocessed tensors of the in-scope parts of `studies` (what the model reads).

        The studies travel with the batch (under "studies") so that what is generated from it can
        be grounded against them.
        """
        batch = to_device(collate([self.preprocessor(self.select(s)[0]) for s in studies]), self.device)
        batch["studies"] = list(studies)
        return batch

    @torch.no_grad()
    def logits(self, batch: dict, modalities: tuple[str, ...] | None = None) -> torch.Tensor:
        """Diagnosis logits (B, K) for a preprocessed batch, optionally restricted to some modalities."""
        model = self.model
        n = batch["image"].shape[0] if "image" in batch else len(batch["meta"])
        ids, attn = model.prompt_ids([IMPRESSION_PROMPT] * n, self.device)
        context = model.encode(batch, modalities=modalities)
        out = model(batch, ids, attn, torch.full((n,), ids.shape[1] - 1, device=self.device), context=context)
        return out.diagnosis_logits

    def probabilities(self, batch: dict, modalities: tuple[str, ...] | None = None) -> np.ndarray:
        """Calibrated probabilities (B, K): expit(logits / T) in float64, as the evaluation computes them.

        The same arithmetic matters: conformal sets compare 1 - p with a threshold fitted on
        such probabilities, and a case at the threshold must fall on the same side here.
        """
        logits = self.logits(batch, modalities).float().cpu().numpy().astype(np.float64)  # (B, K)
        return expit(logits / self.temperature)

    def impression_guides(self, probs: np.ndarray) -> list[tuple[str, ...]]:
        """The diagnoses the impression guide of each row of calibrated probabilities (B, K) names, most probable first.

        The conformal set where the model asks for it and is calibrated with a conformal
        threshold, else the diagnoses at or above their calibrated operating thresholds.
        """
        config = self.model.config
        if (
            config.impression_guide
            and config.guide_set == "conformal"
            and self.calibration.get("conformal_threshold") is not None
        ):
            return [self.conformal_set(row) for row in np.asarray(probs, dtype=np.float64)]
        return self.model.impression_guides(probs, self.calibration.get("operating_thresholds"))

    def impression_prompts(self, probs: np.ndarray) -> list[list[str]]:
        """The prompts each row's impression is written after (one per clause; see MedMM.clause_prompts)."""
        return [self.model.clause_prompts(guide) for guide in self.impression_guides(probs)]

    def draft_impressions(self, batch: dict, probs: np.ndarray, *, max_new_tokens: int | None = None) -> list[str]:
        """The LM's text for each row, written after the guide its probabilities give. Never given out as is: see `ground`."""
        return self.model.write_impressions(batch, self.impression_guides(probs), max_new_tokens=max_new_tokens)

    def ground(self, batch: dict, probs: np.ndarray, texts: Sequence[str]) -> list[GroundedText]:
        """Each row's generated text checked against its study (batch["studies"]) and its prediction.

        A batch without its studies is grounded against nothing but its image: no vital-sign or
        note finding can then be supported, so none is given out.
        """
        return [ground_impression(text, facts) for text, facts in zip(texts, self.facts(batch, probs))]

    def grounded_impressions(
        self, batch: dict, probs: np.ndarray, *, max_new_tokens: int | None = None
    ) -> list[GroundedText]:
        """The impression of each row with the claims it kept and removed (`draft_impressions`, then `ground`)."""
        return self.ground(batch, probs, self.draft_impressions(batch, probs, max_new_tokens=max_new_tokens))

    def impressions(self, batch: dict, probs: np.ndarray, *, max_new_tokens: int | None = None) -> list[str]:
        """The grounded impression of each row of a batch made by `batch` (what `predict` returns as the impression)."""
        return [g.text for g in self.grounded_impressions(batch, probs, max_new_tokens=max_new_tokens)]

    @torch.no_grad()
    def image_finding_scores(self, batch: dict) -> tuple[np.ndarray | None, str]:
        """The image branch's own score per diagnosis (B, K), from the radiograph alone, and what made it.

        The unimodal image head when the model has one (a logistic head on the image latents,
        trained on the diagnoses); else the diagnosis head given the radiograph alone. None
        without an image encoder.
        """
        model = self.model
        if "image" not in model.encoders:
            return None, ""
        if "image" in model.unimodal_heads:
            context = model.encode(batch, modalities=("image",))
            logits, _ = model.modality_logits(context)["image"]  # (B, K)
            return expit(logits.float().cpu().numpy().astype(np.float64)), "image-only head"
        return self.probabilities(batch, ("image",)), "diagnosis head given the radiograph alone"

    def notes_read(self, study: Study) -> tuple[NoteText, ...]:
        """The in-scope notes of `study` (its scope applied) with how many leading characters of each the model reads.

        As the preprocessing does: the newest `max_notes` notes, each cut at `max_note_tokens`
        tokens; older notes are listed with nothing read.
        """
        cfg = self.preprocessor.config
        notes = tuple(study.notes)
        newest = notes[-cfg.max_notes :] if cfg.max_notes > 0 else ()
        read = [0] * (len(notes) - len(newest))
        if newest:
            enc = self.preprocessor.note_tokenizer(
                [n.text for n in newest], max_length=cfg.max_note_tokens, truncation=True, return_offsets_mapping=True
            )
            read += [max((int(end) for _, end in offsets), default=0) for offsets in enc["offset_mapping"]]
        out = []
        for note, chars in zip(notes, read):
            kind = note.type_display or NOTE_TYPES.get(note.type_code or "", None)
            label = note_label(kind, when(note.time) if note.time is not None else None, note.source_id)
            out.append(NoteText(label, note.text, chars, note.time))
        return tuple(out)

    def facts(self, batch: dict, probs: np.ndarray) -> list[PatientFacts]:
        """What grounding reads for each row: the in-scope study, what the model read of it, and its prediction."""
        names = tuple(self.model.config.diagnoses)
        probs = np.asarray(probs, dtype=np.float64)
        studies = batch.get("studies") or [None] * probs.shape[0]
        scores, source = self.image_finding_scores(batch)
        image_present = batch["image_present"].bool().cpu().tolist()
        fitted = self.calibration.get("operating_thresholds") or {}
        operating = {n: float(fitted.get(n, self.model.config.guide_threshold)) for n in names}
        cuts = self.calibration.get("image_finding_thresholds") or {}
        coverage = (
            self.calibration.get("coverage_target") if self.calibration.get("conformal_threshold") is not None else None
        )
        out = []
        for row, study in enumerate(studies):
            selected, uses = self.select(study) if study is not None else (Study(study_id=""), ())
            p = probs[row]
            image = bool(image_present[row])
            out.append(
                PatientFacts(
                    study=selected,
                    inputs=uses,
                    vitals=summarise(selected.vitals),
                    notes=self.notes_read(selected),
                    image_used=image,
                    image_scores={n: float(scores[row, k]) for k, n in enumerate(names)}
                    if image and scores is not None
                    else {},
                    image_thresholds={n: float(cuts.get(n, DEFAULT_IMAGE_FINDING_THRESHOLD)) for n in names},
                    image_source=source,
                    probabilities={n: float(p[k]) for k, n in enumerate(names)},
                    ranked=tuple(names[k] for k in np.argsort(-p, kind="stable")),
                    operating=operating,
                    calibrated=bool(fitted),
                    conformal_set=self.conformal_set(p),
                    coverage=None if coverage is None else float(coverage),
                    adult=adult_thresholds_apply(selected),
                    displays=self.task.displays.lower,
                    vocabulary=self.task.displays,
                )
            )
        return out

    def conformal_set(self, probs: np.ndarray) -> tuple[str, ...]:
        """Diagnoses with 1 - p <= q (q: the calibrated threshold), most probable first; () uncalibrated."""
        threshold = self.calibration.get("conformal_threshold")
        if threshold is None:
            return ()
        names = self.model.config.diagnoses
        p = np.asarray(probs, dtype=np.float64)
        return tuple(names[k] for k in np.argsort(-p, kind="stable") if 1.0 - p[k] <= float(threshold))

    def predict(self, study: Study, *, impression: bool = True, max_new_tokens: int | None = None) -> Prediction:
        """The Prediction of one study (see `predict_many`)."""
        return self.predict_many([study], impression=impression, max_new_tokens=max_new_tokens)[0]

    def predict_stages(self, study: Study, *, max_new_tokens: int | None = None) -> Iterator[Prediction]:
        """The Prediction of one study in two stages: the ranked diagnoses, then the same with the grounded impression.

        For an interface that shows the scores while the impression is written: the study is
        preprocessed and scored once, and the impression is drafted and grounded from that same
        batch and those probabilities, so the last Prediction equals `predict(study)` (timings
        aside). A study with nothing the model can read yields one Prediction, its refusal. Each
        stage's `seconds` counts the work done for it and before it, not the time the caller
        spends between stages; the lock is held only while the model works, never across a yield.
        """
        for predictions in self._stages([study], impression=True, max_new_tokens=max_new_tokens):
            yield predictions[0]

    def predict_many(
        self, studies: Sequence[Study], *, impression: bool = True, max_new_tokens: int | None = None
    ) -> list[Prediction]:
        """One Prediction per study, with every input's verdict (used, or why not).

        A study with nothing inside the model's input scope gets no scores, no set and no
        impression, but an answer that says so. `max_new_tokens` bounds the impression's
        length (None: the model's default). With the model's impression guide, the impression
        is written after the diagnoses whose calibrated probability reaches its threshold.
        """
        *_, last = self._stages(studies, impression=impression, max_new_tokens=max_new_tokens)
        return last

    def _stages(
        self, studies: Sequence[Study], *, impression: bool, max_new_tokens: int | None
    ) -> Iterator[list[Prediction]]:
        """The Predictions of `studies` after scoring, then (with `impression`, when any is readable) after drafting.

        The one place a batch of studies is preprocessed, scored and turned into Predictions: the
        impression stage reuses the scoring stage's batch and probabilities. `seconds` is the time
        spent on the stages so far, shared out evenly among the studies.
        """
        start = time.perf_counter()
        chosen = [self.select(s) for s in studies]
        readable = [i for i, (_, uses) in enumerate(chosen) if any(u.used for u in uses)]
        row_of = {i: row for row, i in enumerate(readable)}
        probs = np.zeros((0, len(self.model.config.diagnoses)))
        used: dict[str, list[bool]] = {}
        batch: dict = {}
        if readable:
            with self.lock:
                batch = to_device(collate([self.preprocessor(chosen[i][0]) for i in readable]), self.device)
                batch["studies"] = [studies[i] for i in readable]
                probs = self.probabilities(batch)
                used = {m: v.cpu().tolist() for m, v in self.model.presence(batch).items()}
        spent = time.perf_counter() - start

        def predictions(texts: Sequence[GroundedText | None]) -> list[Prediction]:
            seconds = spent / max(len(studies), 1)
            return [
                self._prediction(study, uses, row_of.get(i), probs, used, texts, seconds)
                for i, (study, (_, uses)) in enumerate(zip(studies, chosen))
            ]

        yield predictions([None] * len(readable))
        if not (impression and readable):
            return
        start = time.perf_counter()
        with self.lock:
            texts = self.grounded_impressions(batch, probs, max_new_tokens=max_new_tokens)
        spent += time.perf_counter() - start
        yield predictions(texts)

    def _prediction(self, study: Study, uses, row: int | None, probs, used, texts, seconds: float) -> Prediction:
        not_used = tuple(f"{u.modality} {u.source}: not used ({u.reason})" for u in uses if not u.used)
        common = dict(
            study_id=study.study_id,
            coverage_target=self.calibration.get("coverage_target"),
            model_id=self.model_id,
            model_version=medmm.__version__,
            calibrated="temperature" in self.calibration,
            seconds=seconds,
            warnings=tuple(str(w) for w in study.warnings) + not_used,
            inputs=tuple(uses),
            study_time=study.time,
            time_source=study.time_source,
        )
        if row is None:
            return Prediction(
                scores=(),
                conformal_set=(),
                impression="",
                present=(),
                missing=MODALITIES,
                answered=False,
                refusal=nothing_readable(uses),
                **common,
            )
        names = self.model.config.diagnoses
        p = probs[row]
        chosen = self.conformal_set(p)
        scores = tuple(
            DiagnosisScore(names[k], self.task.display(names[k]), float(p[k]), names[k] in chosen)
            for k in np.argsort(-p, kind="stable")
        )
        present = tuple(m for m in MODALITIES if m in used and used[m][row])
        grounded = texts[row]
        return Prediction(
            scores=scores,
            conformal_set=chosen,
            impression=grounded.text if grounded else "",
            present=present,
            missing=tuple(m for m in MODALITIES if m not in present),
            claims=grounded.claims if grounded else (),
            removed_claims=grounded.removed if grounded else (),
            **common,
        )

    def answer(self, study: Study, question: str) -> Answer:
        """The answer to a question about this study, from its data and the prediction (see medmm.grounding.answers).

        A study with nothing the model can read gets no answer, only why.
        """
        _, uses = self.select(study)
        if not any(u.used for u in uses):
            return Answer(question, "none", f"No answer: {nothing_readable(uses)}.", answered=False)
        if recognise(question).kind in (ADVICE, UNKNOWN):
            return answer_question(question, None)
        with self.lock:
            batch = self.batch([study])
            probs = self.probabilities(batch)
            facts = self.facts(batch, probs)[0]
        return answer_question(question, facts)

    def ask(self, study: Study, question: str) -> str:
        """The text of `answer(study, question)`."""
        return self.answer(study, question).text
