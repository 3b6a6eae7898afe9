"""The model beside its classical peers: baselines fitted on train, chosen on val, compared on test.

For every modality subset the model is evaluated on, the baseline of that subset (the fusion
variant with the best validation macro AUROC, see baseline_fusion) scores the same test cases,
and the difference of macro AUROC (and of each diagnosis's AUROC) gets a paired patient-bootstrap
interval (paired.py). A demographics-only baseline is reported as a reference: the model does
not read demographics, so it is no competitor, but it shows how much the labels follow them.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from medmm.errors import EvaluationError, MedmmError
from medmm.evaluate.baseline_fusion import VARIANTS, BaselineSuite, macro_auroc
from medmm.evaluate.baselines import CaseTable, case_table
from medmm.evaluate.paired import paired_auroc_difference
from medmm.io.cohort import Cohort
from medmm.records import Study

log = logging.getLogger(__name__)


def split_table(predictor, part: Cohort, *, progress: bool = False, desc: str = "") -> CaseTable:
    """Baseline features of a cohort split's readable, labelled cases, read as the model reads them (scope applied)."""
    studies = []
    for i in tqdm(range(len(part)), desc=f"baseline features {desc}", disable=not progress, leave=False):
        try:
            study = part.load(i, **predictor.preprocessor.grid_kwargs)
        except MedmmError:
            continue  # unreadable: left out, as the model's evaluation leaves it out
        if study.labels is not None:
            studies.append(study)
    return table_of(predictor, studies)


def table_of(predictor, studies: Sequence[Study]) -> CaseTable:
    config = predictor.model.config
    return case_table(
        [predictor.select(s)[0] for s in studies],
        config.diagnoses,
        predictor.task.channel_names,
        config.preprocess.vitals_steps,
        predictor.task,
    )


def baseline_comparison(
    predictor,
    cohort: Cohort,
    test_scores,
    test_studies: Sequence[Study],
    model_probs: dict[tuple[str, ...], np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    progress: bool = False,
) -> dict:
    """The comparison section of evaluation.json (see the module docstring); `model_probs` per modality subset on the test cases."""
    start = time.perf_counter()
    train_part, val_part = cohort.split("train"), cohort.split("val")
    if len(train_part) == 0 or len(val_part) == 0:
        return {"note": "no train or no validation split: baselines need both (fitted on train, chosen on val)"}
    train = split_table(predictor, train_part, progress=progress, desc="train")
    val = split_table(predictor, val_part, progress=progress, desc="val")
    test = table_of(predictor, test_studies)
    y = np.asarray(test_scores.labels)
    if test.labels.shape != y.shape or not np.array_equal(test.labels, y):
        raise EvaluationError("the baselines' test labels differ from the model's", where="baselines")
    subsets = list(model_probs)
    suite = BaselineSuite().fit(train, val, subsets, seed=seed)
    names = tuple(predictor.model.config.diagnoses)
    rows = []
    for subset in subsets:
        chosen = suite.subsets[subset]
        base = suite.probabilities(test, subset)
        paired = paired_auroc_difference(
            y,
            model_probs[subset],
            base,
            names,
            test_scores.patient_ids,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
        )
        rows.append(
            {
                "inputs": "all" if len(subset) == len(predictor.model.config.modalities) else "+".join(subset),
                "modalities": list(subset),
                "model": paired["macro"]["first"],
                "baseline": paired["macro"]["second"],
                "difference": {k: paired["macro"][k] for k in ("difference", "low", "high")},
                "baseline_variant": chosen.chosen,
                "baseline_val_macro": chosen.val_macro,
                "baseline_test_macro_by_variant": {
                    v: macro_auroc(y, suite.probabilities(test, subset, v)) for v in VARIANTS
                },
                "by_diagnosis": paired["by_diagnosis"],
            }
        )
    demographics = suite.models.probabilities(test, "demographics")
    seen = np.isfinite(demographics).all(axis=1)
    return {
        "method": "HAIM-style classical baselines fitted on the train split; hyperparameters and the fusion variant chosen on the "
        "validation split; scored on the test split. Difference = model - baseline macro AUROC with a paired "
        f"patient-bootstrap {confidence:.0%} interval ({n_boot} resamples).",
        "features": {
            "notes": "TF-IDF of words and word pairs",
            "vitals": "per-channel window statistics",
            "image": "32 x 32 pixels: PCA, 4 x 4 and 8 x 8 grid means, left-right differences",
            "demographics": "age, sex, race, ethnicity (reference only: the model does not read them)",
        },
        "classifiers": suite.models.choice,
        "rows": rows,
        "demographics_only": {
            "macro_auroc": macro_auroc(y[seen], demographics[seen]) if seen.sum() > 1 else None,
            "cases": int(seen.sum()),
        },
        "cases": {
            "train": len(train.patient_ids),
            "val": len(val.patient_ids),
            "test": len(test.patient_ids),
            "positives_test": {n: int(y[:, k].sum()) for k, n in enumerate(names)},
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
