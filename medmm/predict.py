"""Predictor: a checkpoint in, one Prediction per study out.

`Predictor.from_checkpoint(dir).predict(study)` preprocesses the study exactly as in training,
runs the diagnosis head (with the fitted temperature, when the checkpoint has one), forms the
conformal set, and drafts the impression.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

import medmm
from medmm.codes import DIAGNOSES
from medmm.data import collate, to_device
from medmm.prompts import IMPRESSION_PROMPT, qa_prompt
from medmm.records import MODALITIES, DiagnosisScore, Prediction, Study
from medmm.transforms.study import StudyPreprocessor

_DISPLAY = {d.name: d.display for d in DIAGNOSES}


class Predictor:
    """Runs a MedMM model on studies. Thread-compatible: one call at a time per instance."""

    def __init__(self, model, *, note_tokenizer=None, model_id: str | None = None, calibration: dict | None = None):
        from medmm.encoders.text import load_note_tokenizer

        self.model = model.eval()
        self.device = next(model.head.parameters()).device
        tokenizer = note_tokenizer if note_tokenizer is not None else load_note_tokenizer(model.config.notes)
        self.preprocessor = StudyPreprocessor(model.config.preprocess, tokenizer)
        self.calibration = calibration if calibration is not None else getattr(model, "calibration", None) or {}
        self.model_id = model_id or "uncheckpointed"
        self.lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> "Predictor":
        from medmm.checkpoint import load_checkpoint

        directory = Path(directory)
        model = load_checkpoint(directory, device=device)
        model_id = hashlib.sha256((directory / "checksums.json").read_bytes()).hexdigest()[:16]
        return cls(model, model_id=model_id)

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    def batch(self, studies: Sequence[Study]) -> dict:
        return to_device(collate([self.preprocessor(s) for s in studies]), self.device)

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
        """Calibrated probabilities (B, K)."""
        return torch.sigmoid(self.logits(batch, modalities) / self.temperature).cpu().numpy()

    def conformal_set(self, probs: np.ndarray) -> tuple[str, ...]:
        threshold = self.calibration.get("conformal_threshold")
        if threshold is None:
            return ()
        names = self.model.config.diagnoses
        order = np.argsort(-probs)
        return tuple(names[k] for k in order if probs[k] >= 1.0 - float(threshold))

    def predict(self, study: Study, *, impression: bool = True) -> Prediction:
        return self.predict_many([study], impression=impression)[0]

    def predict_many(self, studies: Sequence[Study], *, impression: bool = True) -> list[Prediction]:
        start = time.perf_counter()
        with self.lock:
            batch = self.batch(studies)
            probs = self.probabilities(batch)
            texts = self.model.generate(batch, [IMPRESSION_PROMPT] * len(studies)) if impression else [""] * len(studies)
        seconds = (time.perf_counter() - start) / max(len(studies), 1)
        names = self.model.config.diagnoses
        out = []
        for study, p, text in zip(studies, probs, texts):
            chosen = self.conformal_set(p)
            scores = tuple(
                DiagnosisScore(names[k], _DISPLAY.get(names[k], names[k]), float(p[k]), names[k] in chosen) for k in np.argsort(-p)
            )
            present = tuple(m for m in study.modalities if m in self.model.config.modalities)
            out.append(
                Prediction(
                    study_id=study.study_id,
                    scores=scores,
                    conformal_set=chosen,
                    coverage_target=self.calibration.get("coverage_target"),
                    impression=text,
                    present=present,
                    missing=tuple(m for m in MODALITIES if m not in present),
                    model_id=self.model_id,
                    model_version=medmm.__version__,
                    calibrated="temperature" in self.calibration,
                    seconds=seconds,
                    warnings=tuple(str(w) for w in study.warnings),
                )
            )
        return out

    def ask(self, study: Study, question: str, *, max_new_tokens: int = 48) -> str:
        """The model's answer to a free-text question about this study, conditioned on its modalities."""
        with self.lock:
            batch = self.batch([study])
            return self.model.generate(batch, [qa_prompt(question)], max_new_tokens=max_new_tokens)[0]
