"""`medmm evaluate` and `medmm audit`: a checkpoint and a cohort in, evaluation.json / audit.json and plots out.

Both run the Predictor over the cohort's validation and test splits (preprocessed cases are
cached under <cohort>/.cache, as in training) and hand the per-case scores to
medmm.evaluate.pipeline. The evaluation fits the temperature, operating points and conformal
threshold on the validation split and reports with them; only with `save_calibration` does it
write them into the checkpoint's calibration.json (so that the Predictor returns calibrated
probabilities and conformal sets from then on). `evaluate_checkpoint` is the one path the CLI,
the demo and the governance documents take: evaluate, audit when asked, render report.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from medmm.errors import CohortError
from medmm.evaluate.describe import describe_cohort, describe_split
from medmm.evaluate.pipeline import FROM_VALIDATION, audit_from_scores, evaluate_from_scores, write_json
from medmm.evaluate.scores import SplitScores, label_columns, score_cases
from medmm.io.cohort import Cohort
from medmm.tasks import task_to_dict


def run_evaluation(
    model_dir: str | Path,
    cohort_dir: str | Path,
    out_dir: str | Path,
    *,
    coverage: float = 0.9,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    audit: bool = False,
    confidence: float = 0.95,
    baselines: bool = True,
    save_calibration: bool = False,
) -> dict:
    """Evaluate a checkpoint on a cohort's test split (fitting on its val split); write out_dir/evaluation.json and plots.

    With `save_calibration`, the calibration fitted on the validation split is written into the
    checkpoint (its calibration.json, and so its id); without, the checkpoint is left as it is and
    the figures are those of the model calibrated in memory.

    With `baselines` (the default), classical per-modality models are fitted on the train split,
    chosen on val, and reported beside the model for every modality subset, with the paired
    bootstrap interval of the AUROC difference (medmm.evaluate.compare).

    Sections: per-diagnosis metrics with patient-bootstrap CIs, calibration before/after
    temperature scaling, conformal coverage, the modality ablation, impression quality (of the
    grounded impression, as served) and grounding: impressions and answers to a fixed question set
    read by an independent verifier against each case's data, the raw LM draft beside the
    grounded text. The image-branch thresholds at which radiograph findings are stated are
    fitted on the validation split and saved with the calibration.
    With `audit`, the subgroup audit is run on the same scores at the newly fitted calibration
    and written to out_dir/audit.json (what `run_audit` would write, without scoring again).
    """
    from medmm.checkpoint import checkpoint_id, update_calibration
    from medmm.evaluate.grounding import (
        free_text_questions,
        grounding_report,
        impression_scores,
        question_set,
        write_case_texts,
    )
    from medmm.predict import check_calibration

    predictor, cohort = _open(model_dir, cohort_dir)
    (val, val_part, val_items), (test, test_part, test_items) = _score_splits(predictor, cohort, progress)
    info = model_info(predictor, model_dir)
    by_subset = subset_probabilities(predictor, test_items)
    context = {
        "model": info,
        "cohort": {**describe_cohort(cohort), "test": describe_split(test, test_items)},
        "ablation": modality_ablation(predictor, test_items, test, by_subset),
    }
    out = Path(out_dir)
    evaluation, fitted = evaluate_from_scores(
        val,
        test,
        out,
        saved_calibration=predictor.calibration,
        coverage=coverage,
        n_boot=n_boot,
        seed=seed,
        context=context,
    )
    fitted_here = fitted.source == FROM_VALIDATION
    calibration = fitted.calibration_json(cohort.root.name) if fitted_here else predictor.calibration
    image_fit = None
    if fitted_here and val_part is not None:
        image_fit = fit_image_finding_thresholds(predictor, val_part, val_items)
        if image_fit is not None:
            calibration = {**calibration, **image_fit.calibration()}
    saved = fitted_here and save_calibration
    if saved:
        update_calibration(model_dir, calibration)
        # the new calibration.json changes the checkpoint's id: name the model as it is now served
        info = {**info, "id": checkpoint_id(model_dir), "id_before_calibration": info["id"]}
        evaluation["model"] = info
    # impressions as served: a guided impression names the diagnoses at the calibrated operating points
    predictor.calibration = check_calibration(calibration)
    studies, truths = read_cases(predictor, test_part, test_items)
    names = predictor.model.config.diagnoses
    free = free_text_questions(names, predictor.task.displays)
    cases = write_case_texts(predictor, test_items, studies, truths, free_questions=free, value_questions=True)
    evaluation["impression"] = {
        **impression_scores(cases, names),
        "examples": [{"truth": sorted(c.labels), "impression": c.grounded.text} for c in cases[:5]],
        "raw": impression_scores(cases, names, raw=True),
        "scored_on": "the grounded impression (as the Predictor gives it out); raw: the LM's draft before grounding",
    }
    evaluation["grounding"] = {
        **grounding_report(cases, question_set(names, predictor.task.displays), free_questions=free),
        "image_findings": image_fit.to_dict()
        if image_fit is not None
        else "not fitted (no validation split, or no radiograph in it)",
    }
    evaluation["latency"] = case_latency(predictor, studies)
    if baselines:
        from medmm.evaluate.compare import baseline_comparison

        evaluation["baselines"] = baseline_comparison(
            predictor,
            cohort,
            test,
            studies,
            by_subset,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            progress=progress,
        )
        if evaluation["baselines"].get("rows"):
            from medmm.evaluate.pipeline import _save_png
            from medmm.evaluate.plots import difference_plot

            evaluation.setdefault("plots", {})["baselines"] = _save_png(
                out, "baselines", difference_plot(evaluation["baselines"]["rows"])
            )
    evaluation["checkpoint"] = {
        "calibration_saved": saved,
        "file": "calibration.json",
        "note": "the Predictor now applies this temperature and returns these conformal sets"
        if saved
        else (
            "fitted on the validation split for these figures; the checkpoint's calibration was left unchanged"
            if fitted_here
            else "no validation split: the checkpoint's calibration was left unchanged"
        ),
    }
    write_json(out / "evaluation.json", evaluation)
    if audit:
        audit_from_scores(
            val,
            test,
            out,
            saved_calibration=calibration,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            context={"model": {**info, "calibration_before_run": dict(calibration)}, "cohort": describe_cohort(cohort)},
        )
    return evaluation


def run_audit(
    model_dir: str | Path,
    cohort_dir: str | Path,
    out_dir: str | Path,
    *,
    min_group_size: int = 30,
    bound_difference: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    progress: bool = True,
) -> dict:
    """Subgroup audit (the model's task's attributes, by default sex, age band, race and ethnicity, and their intersections) of a checkpoint on a cohort's test split.

    Writes out_dir/audit.json (with the flags), audit.html and the subgroup plots. Every scored
    group is tested on several metrics, so at `confidence` 0.95 an unbiased cohort can still raise
    an occasional chance flag; 0.99 trades some power for fewer of them.
    """
    predictor, cohort = _open(model_dir, cohort_dir)
    (val, _, _), (test, _, _) = _score_splits(predictor, cohort, progress)
    context = {"model": model_info(predictor, model_dir), "cohort": describe_cohort(cohort)}
    return audit_from_scores(
        val,
        test,
        out_dir,
        saved_calibration=predictor.calibration,
        min_group_size=min_group_size,
        bound_difference=bound_difference,
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
        context=context,
    )


def _open(model_dir: str | Path, cohort_dir: str | Path):
    from medmm.predict import Predictor

    cohort = Cohort.open(cohort_dir)  # first: a wrong cohort path fails before the model loads
    return Predictor.from_checkpoint(model_dir), cohort


def evaluation_splits(cohort: Cohort) -> tuple[tuple[str, Cohort] | None, tuple[str, Cohort]]:
    """(name, part) of the validation split (None when absent) and of the evaluated split.

    The evaluated split is "test"; a cohort without one (a batch of new cases) is evaluated
    whole, less any train/val patients, under the name "all".
    """
    val = cohort.split("val")
    test = cohort.split("test")
    if len(test) == 0:
        rest = [e.patient_id for e in cohort.entries if e.split not in ("train", "val")]
        test = cohort.select(rest)
        if len(test) == 0:
            raise CohortError(
                "no test split and no patients outside train/val to evaluate",
                path=cohort.root,
                where="manifest split column",
            )
        return (("val", val) if len(val) else None), ("all", test)
    return (("val", val) if len(val) else None), ("test", test)


def _score_splits(predictor, cohort: Cohort, progress: bool):
    """((val scores, val part, val items), (test scores, test part, test items)); the val triple is Nones without a val split."""
    from medmm.cases import CaseSet

    notes = predictor.model.encoders["notes"] if "notes" in predictor.model.encoders else None
    val_part, (test_name, test_part) = evaluation_splits(cohort)
    scored = {}
    for name, part in ([val_part] if val_part else []) + [(test_name, test_part)]:
        cases = CaseSet(
            part,
            predictor.preprocessor,
            cache_dir=cohort.root / ".cache",
            note_encoder=notes,
            progress=progress,
            desc=name,
        )
        scored[name] = (*score_cases(predictor, part, name, cases.items, len(cases.failed)), part)
    val = (scored["val"][0], scored["val"][2], scored["val"][1]) if val_part else (None, None, None)
    test_scores, test_items, _ = scored[test_name]
    return val, (test_scores, test_part, test_items)


def evaluate_checkpoint(
    model_dir: str | Path,
    cohort_dir: str | Path,
    out_dir: str | Path,
    *,
    save_calibration: bool = False,
    audit: bool = False,
    report: bool = True,
    coverage: float = 0.9,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    baselines: bool = True,
    progress: bool = True,
):
    """The one evaluation path: evaluate (`run_evaluation`), audit the same scores when asked, render
    out_dir/report.html (with out_dir/audit.json when there is one, and out_dir/explanations/ when
    `medmm explain` wrote there); returns the typed Evaluation. Calibration is written into the
    checkpoint only with `save_calibration`."""
    from medmm.evaluate.audit_document import AUDIT_FILE, load_audit
    from medmm.evaluate.document import Evaluation
    from medmm.report.html import write_report

    out = Path(out_dir)
    document = run_evaluation(
        model_dir, cohort_dir, out, coverage=coverage, n_boot=n_boot, seed=seed, progress=progress, audit=audit,
        confidence=confidence, baselines=baselines, save_calibration=save_calibration,
    )  # fmt: skip
    if report:
        audit = load_audit(out / AUDIT_FILE) if (out / AUDIT_FILE).is_file() else None
        write_report(out, document, audit, out / "explanations" if (out / "explanations").is_dir() else None)
    return Evaluation.from_dict(document)


LATENCY_CASES = 8


def case_latency(predictor, studies: Sequence, cases: int = LATENCY_CASES) -> dict:
    """Seconds per case as a clinician waits for it: one `Predictor.predict` per study (preprocessing, the
    diagnoses, the impression drafted and grounded), over the first `cases` studies, after one unmeasured call."""
    import time

    import torch

    chosen = list(studies[:cases])
    if not chosen:
        return {"cases": 0}
    predictor.predict(chosen[0])  # warm-up: lazy initialisation is not a case's latency
    seconds = []
    for study in chosen:
        start = time.perf_counter()
        predictor.predict(study)
        seconds.append(time.perf_counter() - start)
    return {
        "cases": len(seconds),
        "median_seconds": float(np.median(seconds)),
        "mean_seconds": float(np.mean(seconds)),
        "max_seconds": float(np.max(seconds)),
        "device": str(predictor.device),
        "threads": torch.get_num_threads(),
        "what": "one Predictor.predict per case, batch of one: preprocessing, diagnoses, impression drafted and grounded",
    }


def read_cases(predictor, part: Cohort, items: list[dict]) -> tuple[list, list[dict | None]]:
    """The studies (read with the model's vital-sign window) and synthetic truths of preprocessed `items`, in their order."""
    from medmm.train.targets import load_truth

    index = {e.key: i for i, e in enumerate(part.entries)}
    studies, truths = [], []
    for item in items:
        i = index[str(item["meta"]["key"])]
        studies.append(part.load(i, **predictor.preprocessor.grid_kwargs))
        truths.append(load_truth(part.entries[i].folder))
    return studies, truths


def fit_image_finding_thresholds(predictor, part: Cohort, items: list[dict], batch_size: int = 32):
    """Image-branch thresholds for radiograph findings, fitted on validation cases with an image (None: none has one).

    The target is the lesion truth where every case has a truth.json, else the diagnosis labels.
    """
    import torch

    from medmm.cases import collate, to_device
    from medmm.evaluate.image_findings import fit_image_findings
    from medmm.predict import DEFAULT_IMAGE_FINDING_THRESHOLD
    from medmm.train.targets import load_truth

    names = list(predictor.model.config.diagnoses)
    with_image = [it for it in items if bool(it["image_present"])]
    if not with_image:
        return None
    scores = []
    with torch.no_grad():
        for start in range(0, len(with_image), batch_size):
            batch = to_device(collate(with_image[start : start + batch_size]), predictor.device)
            values, _ = predictor.image_finding_scores(batch)
            if values is None:
                return None
            scores.append(values)
    folders = {e.key: e.folder for e in part.entries}
    truths = [load_truth(folders[str(it["meta"]["key"])]) for it in with_image]
    if all(t is not None for t in truths):
        target = "lesion truth (the diagnosis has image evidence in truth.json)"
        y = np.array(
            [
                [("image" in ((t.get("evidence") or {}).get(n) or {}).get("modalities", ())) for n in names]
                for t in truths
            ]
        )
    else:
        target = "diagnosis labels (no lesion truth for every case)"
        y = np.stack(
            [it["labels"].numpy()[label_columns(names, predictor.task.label_names)] > 0.5 for it in with_image]
        )
    return fit_image_findings(np.concatenate(scores), y, names, DEFAULT_IMAGE_FINDING_THRESHOLD, target)


def model_info(predictor, model_dir: str | Path) -> dict:
    """What the reports say about the model: identity, inputs, outputs, architecture and size."""
    model = predictor.model
    cfg = model.config
    meta = getattr(model, "checkpoint_meta", None) or {}
    return {
        "id": predictor.model_id,
        "folder": Path(model_dir).name,
        "medmm_version": meta.get("medmm_version"),
        "architecture": meta.get("model_type"),
        "diagnoses": list(cfg.diagnoses),
        "task": predictor.task.name,
        "labels": task_to_dict(predictor.task)["labels"],
        "channels": list(predictor.task.channel_names),
        "strata": {"attributes": list(predictor.task.audit_attributes), "age_bands": list(predictor.task.age_bands)},
        "modalities": list(cfg.modalities),
        "backbone": {
            "source": cfg.backbone.source,
            "finetune": cfg.backbone.finetune.method,
            "hidden_size": cfg.backbone.hidden_size,
            "num_layers": cfg.backbone.num_layers,
        },
        "preprocess": {
            "image_size": cfg.preprocess.image_size,
            "window_hours": cfg.preprocess.window_hours,
            "step_minutes": cfg.preprocess.step_minutes,
            "max_notes": cfg.preprocess.max_notes,
        },
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "image_encoder_frozen": bool(cfg.image.frozen) if "image" in cfg.modalities else None,
        "impression_guide": cfg.guide_set if cfg.impression_guide else None,
        "impression_clauses": bool(cfg.impression_guide and cfg.guide_clauses),
        "unimodal_heads": bool(cfg.unimodal_heads),
        "calibration_before_run": dict(predictor.calibration),
    }


def subset_probabilities(predictor, items: list[dict]) -> dict[tuple[str, ...], np.ndarray]:
    """The model's probabilities (N, K) given only each modality subset (others treated as absent)."""
    from medmm.ablation import case_probabilities, modality_subsets

    return {
        tuple(s): case_probabilities(predictor, items, tuple(s))
        for s in modality_subsets(tuple(predictor.model.config.modalities))
    }


def modality_ablation(predictor, items: list[dict], scores: SplitScores, by_subset: dict | None = None) -> dict:
    """AUROC per diagnosis and macro for every modality subset of the model (HAIM's table); others treated as absent."""
    from medmm.ablation import subset_name

    modalities = tuple(predictor.model.config.modalities)
    y = scores.labels
    rows = []
    for subset, probs in (by_subset or subset_probabilities(predictor, items)).items():
        both = [0 < y[:, k].sum() < len(y) for k in range(y.shape[1])]
        per = {
            name: float(roc_auc_score(y[:, k], probs[:, k])) if both[k] else None for k, name in enumerate(scores.names)
        }
        scored = [v for v in per.values() if v is not None]
        rows.append(
            {
                "inputs": subset_name(subset, modalities),
                "modalities": list(subset),
                "macro_auroc": float(np.mean(scored)) if scored else None,
                "auroc": per,
                "cases_with_input": sum(any(m in it["meta"].get("modalities", ()) for m in subset) for it in items),
            }
        )
    return {
        "metric": "AUROC on the test split (point estimates)",
        "rows": rows,
        "note": "Each row gives the model only the named modalities; cases lacking all of them are scored from nothing.",
    }
