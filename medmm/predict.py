"""Predictor: a checkpoint in, one Prediction per study out.

`Predictor.from_checkpoint(dir).predict(study)` preprocesses the study exactly as in training,
runs the diagnosis head (with the fitted temperature, when the checkpoint has one), forms the
conformal set, and drafts the impression.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.special import expit

import medmm
from medmm.codes import DIAGNOSES
from medmm.data import collate, to_device
from medmm.errors import ConfigError
from medmm.prompts import IMPRESSION_PROMPT, qa_prompt
from medmm.records import MODALITIES, DiagnosisScore, InputUse, Prediction, Study
from medmm.scope import nothing_readable, select_inputs
from medmm.transforms.study import StudyPreprocessor

_DISPLAY = {d.name: d.display for d in DIAGNOSES}


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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not in_range(value):
            raise ConfigError(f"expected {expected}", where=f"calibration.{key}")
    return dict(calibration)


class Predictor:
    """Runs a MedMM model on studies. Thread-compatible: one call at a time per instance."""

    def __init__(self, model, *, note_tokenizer=None, model_id: str | None = None, calibration: dict | None = None):
        from medmm.encoders.text import load_note_tokenizer

        self.model = model.eval()
        self.device = next(model.head.parameters()).device
        tokenizer = note_tokenizer if note_tokenizer is not None else load_note_tokenizer(model.config.notes)
        self.preprocessor = StudyPreprocessor(model.config.preprocess, tokenizer)
        self.calibration = check_calibration(calibration if calibration is not None else getattr(model, "calibration", None) or {})
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
        """Preprocessed tensors of the in-scope parts of `studies` (what the model reads)."""
        return to_device(collate([self.preprocessor(self.select(s)[0]) for s in studies]), self.device)

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
        if config.impression_guide and config.guide_set == "conformal" and self.calibration.get("conformal_threshold") is not None:
            return [self.conformal_set(row) for row in np.asarray(probs, dtype=np.float64)]
        return self.model.impression_guides(probs, self.calibration.get("operating_thresholds"))

    def impression_prompts(self, probs: np.ndarray) -> list[list[str]]:
        """The prompts each row's impression is written after (one per clause; see MedMM.clause_prompts)."""
        return [self.model.clause_prompts(guide) for guide in self.impression_guides(probs)]

    def impressions(self, batch: dict, probs: np.ndarray, *, max_new_tokens: int | None = None) -> list[str]:
        """The impression of each row of a preprocessed batch, written after the guide its probabilities give."""
        return self.model.write_impressions(batch, self.impression_guides(probs), max_new_tokens=max_new_tokens)

    def conformal_set(self, probs: np.ndarray) -> tuple[str, ...]:
        """Diagnoses with 1 - p <= q (q: the calibrated threshold), most probable first; () uncalibrated."""
        threshold = self.calibration.get("conformal_threshold")
        if threshold is None:
            return ()
        names = self.model.config.diagnoses
        p = np.asarray(probs, dtype=np.float64)
        return tuple(names[k] for k in np.argsort(-p, kind="stable") if 1.0 - p[k] <= float(threshold))

    def predict(self, study: Study, *, impression: bool = True, max_new_tokens: int | None = None) -> Prediction:
        return self.predict_many([study], impression=impression, max_new_tokens=max_new_tokens)[0]

    def predict_many(
        self, studies: Sequence[Study], *, impression: bool = True, max_new_tokens: int | None = None
    ) -> list[Prediction]:
        """One Prediction per study, with every input's verdict (used, or why not).

        A study with nothing inside the model's input scope gets no scores, no set and no
        impression, but an answer that says so. `max_new_tokens` bounds the impression's
        length (None: the model's default). With the model's impression guide, the impression
        is written after the diagnoses whose calibrated probability reaches its threshold.
        """
        start = time.perf_counter()
        chosen = [self.select(s) for s in studies]
        readable = [i for i, (_, uses) in enumerate(chosen) if any(u.used for u in uses)]
        probs = np.zeros((0, len(self.model.config.diagnoses)))
        used: dict[str, list[bool]] = {}
        texts: list[str] = []
        if readable:
            with self.lock:
                batch = to_device(collate([self.preprocessor(chosen[i][0]) for i in readable]), self.device)
                probs = self.probabilities(batch)
                used = {m: v.cpu().tolist() for m, v in self.model.presence(batch).items()}
                texts = self.impressions(batch, probs, max_new_tokens=max_new_tokens) if impression else [""] * len(readable)
        seconds = (time.perf_counter() - start) / max(len(studies), 1)
        row_of = {i: row for row, i in enumerate(readable)}
        return [
            self._prediction(study, uses, row_of.get(i), probs, used, texts, seconds)
            for i, (study, (_, uses)) in enumerate(zip(studies, chosen))
        ]

    def _prediction(self, study: Study, uses, row: int | None, probs, used, texts, seconds: float) -> Prediction:
        not_used = tuple(f"{u.modality} {u.source}: not used ({u.reason})" for u in uses if not u.used)
        common = dict(
            study_id=study.study_id, coverage_target=self.calibration.get("coverage_target"), model_id=self.model_id,
            model_version=medmm.__version__, calibrated="temperature" in self.calibration, seconds=seconds,
            warnings=tuple(str(w) for w in study.warnings) + not_used, inputs=tuple(uses),
            study_time=study.time, time_source=study.time_source,
        )
        if row is None:
            return Prediction(scores=(), conformal_set=(), impression="", present=(), missing=MODALITIES,
                              answered=False, refusal=nothing_readable(uses), **common)
        names = self.model.config.diagnoses
        p = probs[row]
        chosen = self.conformal_set(p)
        scores = tuple(
            DiagnosisScore(names[k], _DISPLAY.get(names[k], names[k]), float(p[k]), names[k] in chosen)
            for k in np.argsort(-p, kind="stable")
        )
        present = tuple(m for m in MODALITIES if m in used and used[m][row])
        return Prediction(scores=scores, conformal_set=chosen, impression=texts[row], present=present,
                          missing=tuple(m for m in MODALITIES if m not in present), **common)

    def ask(self, study: Study, question: str, *, max_new_tokens: int = 48) -> str:
        """The model's answer to a free-text question about this study, conditioned on its modalities."""
        with self.lock:
            batch = self.batch([study])
            return self.model.generate(batch, [qa_prompt(question)], max_new_tokens=max_new_tokens)[0]
