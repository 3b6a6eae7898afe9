"""Reading a finished study back: the results table, and its scores in the form `medmm evaluate` takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from medmm.batch.store import RESULTS, STUDY
from medmm.errors import ConfigError, EvaluationError
from medmm.io.cohort import Cohort


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """results.parquet of a finished study, one row per case in plan order."""
    path = Path(out_dir) / RESULTS
    if not path.is_file():
        raise ConfigError(
            "no results.parquet: the study has not finished (run the same command again to resume)", path=out_dir
        )
    return pd.read_parquet(path)


def load_study_settings(out_dir: str | Path) -> dict:
    """The resolved protocol (study.yaml) a study ran with."""
    path = Path(out_dir) / STUDY
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("study.yaml is missing or unreadable", path=path) from exc
    if not isinstance(data, dict) or not isinstance(data.get("resolved"), dict):
        raise ConfigError("study.yaml has no resolved section", path=path, where="resolved")
    return data


def split_scores(out_dir: str | Path, split: str, *, cohort_dir: str | Path | None = None):
    """The study's predicted, labelled cases of one split as medmm.evaluate SplitScores.

    Probabilities are turned back into raw logits with the temperature the checkpoint had
    when the study ran, so evaluation fits and applies its own calibration as it does from a
    live model. Failed cases, and cases with nothing the model could read (no probabilities,
    no RiskAssessment), count as unreadable; cases with unknown labels as unlabelled.
    """
    from medmm.evaluate.calibration import probs_to_logits
    from medmm.evaluate.scores import SplitScores, cohort_attributes
    from medmm.tasks import DEFAULT_TASK, load_task, task_from_dict

    settings = load_study_settings(out_dir)
    resolved = settings["resolved"]
    names = tuple(resolved["labels"])
    frame = load_results(out_dir)
    frame = frame[frame["split"] == split]
    done = frame[frame["status"] == "done"]
    answered = done[done["answered"].fillna(False).astype(bool)]
    kept = answered[answered["labels_known"].fillna(False).astype(bool)]
    if kept.empty:
        raise EvaluationError("no predicted case with known labels", path=out_dir, where=f"split {split}")
    probs = kept[[f"prob_{n}" for n in names]].to_numpy(dtype=np.float64)
    labels = kept[[f"label_{n}" for n in names]].to_numpy(dtype=np.int8)
    logits = probs_to_logits(probs) * float(resolved.get("temperature") or 1.0)
    cohort = Cohort.open(cohort_dir or settings["cohort"])
    ids = [str(i) for i in kept["patient_id"]]  # bootstraps resample patients, with all their samples
    samples = kept["sample_id"] if "sample_id" in kept.columns else [None] * len(kept)
    keys = [str(p) if s is None or (isinstance(s, float) and np.isnan(s)) else str(s) for p, s in zip(ids, samples)]
    # the model's task (a study written before tasks were recorded: the default one)
    task = (
        task_from_dict(resolved["task"], "study.yaml resolved.task")
        if resolved.get("task")
        else load_task(DEFAULT_TASK)
    )
    attributes, missing = cohort_attributes(cohort, keys, task)
    return SplitScores(
        split,
        names,
        tuple(ids),
        labels,
        logits,
        attributes,
        unreadable=int((frame["status"] == "failed").sum()) + len(done) - len(answered),
        unlabelled=len(answered) - len(kept),
        missing_attributes=missing,
    )
