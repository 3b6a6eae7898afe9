"""One planned batch of cases -> one CaseResult per case, the same code under every engine.

A case is read with the model's vital-sign window, its input files are hashed, and, under the
strict input policy, a case with an input that could not be read at all (a corrupt DICOM set, a
FHIR file that is not JSON) fails with that error instead of being predicted from what is left.
One case failing never stops the others: a failed batch call is retried case by case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from medmm import errors
from medmm.batch.plan import CaseTask, Outputs, PlannedBatch
from medmm.errors import CohortError, InputError, MedmmError
from medmm.records import Claim, DiagnosisScore, InputUse, Prediction, Study
from medmm.trail import InputDigest, file_digest

# load_study reports a whole input it could not read as "<ErrorClass>: <detail>"
_FILE_FAILURE = re.compile(r"^([A-Z][A-Za-z]*Error): (.*)$", re.DOTALL)
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class CaseInput:
    """One input file of a case: its path inside the patient folder, kind, SHA-256 and size."""

    path: str
    kind: str  # dicom | fhir | vitals
    sha256: str
    size: int

    def digest(self) -> InputDigest:
        return InputDigest(self.kind, self.sha256, self.size)


@dataclass(frozen=True)
class CaseResult:
    """What a study recorded for one case: a prediction, or the error that stopped it."""

    patient_id: str
    batch: int
    status: str  # done | failed
    split: str | None
    study_time: datetime | None
    labels: tuple[str, ...] | None  # the study's known diagnoses (None: unknown), for evaluation
    prediction: Prediction | None
    error_type: str | None
    error_message: str | None
    inputs: tuple[CaseInput, ...]
    load_seconds: float
    predicted_at: datetime
    explanation: str | None = None  # folder of the explanation views, relative to the output folder
    sample_id: str | None = None  # a built cohort's sample (one of several of a patient)

    @property
    def key(self) -> str:
        """What names the case uniquely in the study: its sample id, else its patient id."""
        return self.sample_id if self.sample_id is not None else self.patient_id

    def to_json(self) -> str:
        """Exact JSON form (floats round-trip), for moving results between processes."""
        data = dataclasses.asdict(self)
        for key in ("study_time", "predicted_at"):
            data[key] = None if data[key] is None else data[key].isoformat()
        if data["prediction"] is not None and data["prediction"]["study_time"] is not None:
            data["prediction"]["study_time"] = data["prediction"]["study_time"].isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "CaseResult":
        data = json.loads(text)
        pred = data["prediction"]
        if pred is not None:
            pred = Prediction(
                **{
                    **pred,
                    "scores": tuple(DiagnosisScore(**s) for s in pred["scores"]),
                    **{k: tuple(pred[k]) for k in ("conformal_set", "present", "missing", "warnings")},
                    "inputs": tuple(InputUse(**u) for u in pred["inputs"]),
                    "claims": tuple(Claim(**c) for c in pred.get("claims", ())),
                    "removed_claims": tuple(Claim(**c) for c in pred.get("removed_claims", ())),
                    "study_time": None if pred["study_time"] is None else datetime.fromisoformat(pred["study_time"]),
                }
            )
        return cls(
            **{
                **data,
                "prediction": pred,
                "labels": None if data["labels"] is None else tuple(data["labels"]),
                "inputs": tuple(CaseInput(**i) for i in data["inputs"]),
                "study_time": None if data["study_time"] is None else datetime.fromisoformat(data["study_time"]),
                "predicted_at": datetime.fromisoformat(data["predicted_at"]),
            }
        )


@dataclass(frozen=True)
class CaseOptions:
    """What every engine worker needs to run cases the same way."""

    cohort_root: str
    outputs: Outputs
    torch_threads: int = 1
    out_dir: str | None = None  # where explanation views go

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "CaseOptions":
        data = json.loads(text)
        return cls(**{**data, "outputs": Outputs(**data["outputs"])})


@dataclass(frozen=True)
class LoadedCase:
    """A case after reading: its study, or the error that stops it."""

    task: CaseTask
    study: Study | None
    inputs: tuple[CaseInput, ...]
    error: tuple[str, str] | None  # (error type, message)
    seconds: float


def _now() -> datetime:
    return datetime.now(timezone.utc)


def hash_inputs(folder: Path) -> tuple[CaseInput, ...]:
    """The model inputs under a patient folder (DICOM, FHIR, vitals tables), hashed, in path order."""
    from medmm.io.study import classify_files

    files = classify_files(folder)
    out = []
    for kind, group in (("dicom", files.dicom), ("fhir", files.fhir), ("vitals", files.vitals)):
        for f in group:
            d = file_digest(f, kind)
            out.append(CaseInput(f.relative_to(folder).as_posix(), kind, d.sha256, d.size))
    return tuple(sorted(out, key=lambda i: i.path))


def _unreadable_input(study: Study) -> tuple[str, str] | None:
    """The first input the study could not read at all, as (error type, message), else None."""
    for issue in study.warnings:
        m = _FILE_FAILURE.match(issue.message) if issue.kind == "skipped" else None
        kind = getattr(errors, m.group(1), None) if m else None
        if isinstance(kind, type) and issubclass(kind, MedmmError):
            where = f"{issue.source}: {issue.where}" if issue.where else issue.source
            return m.group(1), f"{where}: {m.group(2)}"
    return None


def load_case(
    task: CaseTask, options: CaseOptions, grid: Mapping[str, float | int], require: Sequence[str] = ()
) -> LoadedCase:
    """Hash and read one case; any error becomes the case's recorded failure (never raised).

    Beyond read errors a case fails when, under the strict policy, one of its inputs could not
    be read at all, or when a modality the protocol requires is absent after reading.
    """
    from medmm.io.study import load_study

    start = time.perf_counter()
    folder = Path(options.cohort_root) / task.folder
    inputs: tuple[CaseInput, ...] = ()
    study, error = None, None
    try:
        if not folder.is_dir():
            raise CohortError("patient folder listed in the manifest does not exist", path=folder)
        inputs = hash_inputs(folder)
        study = load_study(
            folder, study_time=task.study_time, time_source="cohort manifest", patient_id=task.patient_id, **grid
        )
        error = _unreadable_input(study) if options.outputs.inputs == "strict" else None
        missing = [m for m in require if m not in study.modalities]
        if error is None and missing:
            raise InputError(f"required modality {', '.join(missing)} absent after reading", path=folder)
    except MedmmError as err:
        error = (type(err).__name__, str(err))
    except Exception as exc:  # a reader bug must not stop the study; its text may quote file content, so it is not kept
        error = (
            type(exc).__name__,
            f"unexpected {type(exc).__name__} while reading the case (`medmm --debug inspect` on it shows the cause)",
        )
    return LoadedCase(task, None if error else study, inputs, error, time.perf_counter() - start)


class CaseRunner:
    """Holds one Predictor and runs planned batches through it."""

    def __init__(self, model_dir: str | Path, options: CaseOptions, require: Sequence[str] = ()):
        import torch

        from medmm.predict import Predictor

        torch.set_num_threads(options.torch_threads)
        self.options = options
        self.model_dir = Path(model_dir)
        self.require = tuple(require)
        self.predictor = Predictor.from_checkpoint(model_dir)
        model = self.predictor.model
        if options.outputs.max_new_tokens is not None:
            # the impression length is read from the model's config at generation time
            model.config = dataclasses.replace(model.config, max_new_tokens=options.outputs.max_new_tokens)
        self.grid = self.predictor.preprocessor.grid_kwargs

    def load(self, task: CaseTask) -> LoadedCase:
        return load_case(task, self.options, self.grid, require=self.require)

    def run(self, batch: PlannedBatch, loaded: Sequence[LoadedCase] | None = None) -> list[CaseResult]:
        """One CaseResult per case of `batch`, in its order (`loaded`: the cases already read)."""
        loaded = list(loaded) if loaded is not None else [self.load(t) for t in batch.cases]
        good = [c for c in loaded if c.study is not None]
        predictions = self._predict(good)
        out = []
        for case in loaded:
            pred = predictions.get(case.task.key) if case.study is not None else None
            error = case.error
            if case.study is not None and not isinstance(pred, Prediction):
                error = pred
                pred = None
            explanation = None
            if pred is not None and self.options.outputs.explanations:
                pred, explanation = self._explain(case, pred)
            study = case.study
            out.append(
                CaseResult(
                    patient_id=case.task.patient_id,
                    batch=batch.index,
                    status="done" if pred is not None else "failed",
                    split=case.task.split,
                    study_time=(study.time if study is not None else None) or case.task.study_time,
                    labels=None
                    if study is None or study.labels is None
                    else self.predictor.task.positives(study.labels),
                    prediction=pred,
                    error_type=None if pred is not None else error[0],
                    error_message=None if pred is not None else error[1],
                    inputs=case.inputs,
                    load_seconds=case.seconds,
                    predicted_at=_now(),
                    explanation=explanation,
                    sample_id=case.task.sample_id,
                )
            )
        return out

    def _predict(self, cases: list[LoadedCase]) -> dict[str, Prediction | tuple[str, str]]:
        """Predictions by case key (sample id, else patient id); when the batch call fails, each case alone (so only the bad one fails)."""
        if not cases:
            return {}
        impression = self.options.outputs.impression
        try:
            preds = self.predictor.predict_many(
                [c.study for c in cases], impression=impression, max_new_tokens=self.options.outputs.max_new_tokens
            )
            return {c.task.key: p for c, p in zip(cases, preds)}
        except Exception:
            return {c.task.key: self._predict_one(c) for c in cases}

    def _predict_one(self, case: LoadedCase) -> Prediction | tuple[str, str]:
        try:
            outputs = self.options.outputs
            return self.predictor.predict_many(
                [case.study], impression=outputs.impression, max_new_tokens=outputs.max_new_tokens
            )[0]
        except MedmmError as err:
            return type(err).__name__, str(err)
        except Exception as exc:  # the model raised on this case; its text could quote inputs, so only its type is kept
            return (
                type(exc).__name__,
                f"unexpected {type(exc).__name__} while predicting (`medmm --debug predict` on the case shows the cause)",
            )

    def _explain(self, case: LoadedCase, pred: Prediction) -> tuple[Prediction, str | None]:
        """Write the views explaining the most probable diagnosis under <out>/explanations/<case key>/.

        An explanation that cannot be made leaves the prediction standing, with a warning saying so.
        """
        from medmm.explain.explainer import explain_study
        from medmm.explain.relevance import DEFAULT_METHOD
        from medmm.explain.run import write_views

        rel = Path("explanations") / _folder_name(case.task.key)
        try:
            result = explain_study(
                self.predictor,
                case.study,
                methods=(DEFAULT_METHOD,),
                diagnoses=(pred.scores[0].name,),
                impression=False,
            )
            write_views(case.study, result, Path(self.options.out_dir or ".") / rel)
        except Exception as exc:  # the prediction is still good; its text is not kept (it could quote inputs)
            return dataclasses.replace(
                pred, warnings=pred.warnings + (f"explanation: not made ({type(exc).__name__})",)
            ), None
        return pred, rel.as_posix()


def _folder_name(patient_id: str) -> str:
    """The patient id when it is a plain file name, else a digest of it (never a path outside the output)."""
    if _PLAIN_NAME.match(patient_id):
        return patient_id
    return "case-" + hashlib.sha256(patient_id.encode()).hexdigest()[:16]
