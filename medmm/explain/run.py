"""`medmm explain`: every view for one patient, or the faithfulness figures over a cohort with ground truth.

explain_patient writes, under OUT/<target>/, one file per method and modality the study has
(<method>-image.png, <method>-vitals.png, <method>-notes.html) and OUT/explanation.json, which
lists them with the probabilities and modality shares. explain_cohort scores the maps against
each patient's planted truth (see faithfulness.py for the definitions) and writes
OUT/faithfulness.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from medmm.errors import CohortError, MedmmError
from medmm.explain.capture import diagnosis_target
from medmm.explain.explainer import METHODS, StudyExplanation, explain_study, map_relevance, token_relevances
from medmm.explain.faithfulness import (
    TARGETS,
    CaseFigures,
    PairFigure,
    deletion_drops,
    distinctness,
    phrase_in_top,
    pointing_hit,
    summarise,
    summarise_distinctness,
    window_masses,
)
from medmm.explain.integrated import DEFAULT_STEPS
from medmm.explain.mapping import Explanation, model_series
from medmm.explain.relevance import DEFAULT_METHOD, token_validity
from medmm.explain.render import caption, render_image, render_notes, render_vitals
from medmm.records import Study
from medmm.synth.planted import GroundTruth, read_ground_truth

log = logging.getLogger(__name__)
FAITHFULNESS_FILE = "faithfulness.json"
EXPLANATION_FILE = "explanation.json"


def _load_predictor(model_dir):
    from medmm.predict import Predictor

    return Predictor.from_checkpoint(model_dir)


# -- one patient -------------------------------------------------------------------------------


def write_views(study: Study, result: StudyExplanation, out_dir: str | Path) -> list[dict]:
    """Render every explanation of `result` under `out_dir`; one JSON-ready entry per explanation."""
    out = Path(out_dir)
    series = model_series(study)
    entries = []
    for e in result.explanations:
        text = caption(e.target, e.probability, e.method, result.display(e.target))
        folder = out / e.target
        files = {}
        if e.image is not None and series is not None:
            files["image"] = render_image(series, e.image, text, folder / f"{e.method}-image.png")
        if e.vitals is not None and study.vitals is not None:
            files["vitals"] = render_vitals(study.vitals, e.vitals, text, folder / f"{e.method}-vitals.png")
        if e.notes is not None:
            files["notes"] = render_notes(study, e.notes, text, folder / f"{e.method}-notes.html")
        entries.append(
            {
                "target": e.target,
                "method": e.method,
                "default": e.method == DEFAULT_METHOD,
                "probability": e.probability,
                "caption": text,
                "share": dict(e.share),
                "files": {m: str(p.relative_to(out)) for m, p in files.items()},
                **_peaks(e),
            }
        )
    return entries


def _peaks(e: Explanation) -> dict:
    """Where each map peaks: a pixel index, a time step and channel, a note and character range."""
    peaks: dict = {}
    if e.image is not None:
        peaks["image_peak"] = [
            int(i) for i in np.unravel_index(int(np.argmax(e.image.relevance)), e.image.relevance.shape)
        ]
    if e.vitals is not None:
        step, channel = np.unravel_index(int(np.argmax(e.vitals.relevance)), e.vitals.relevance.shape)
        peaks["vitals_peak"] = {"time": e.vitals.times[step].isoformat(), "channel": e.vitals.channels[channel]}
    if e.notes is not None and e.notes.words:
        best = max(e.notes.words, key=lambda w: w.relevance)
        peaks["notes_peak"] = {"note": best.note, "start": best.start, "end": best.end}
    return peaks


def explain_patient(
    model_dir: str | Path, patient: str | Path, out_dir: str | Path, *, methods: Sequence[str] = METHODS, predictor=None
) -> dict:
    """Explain one patient (folder or file) with the checkpoint in `model_dir`; write every view and explanation.json.

    A `predictor` already loaded (the UI's, a test's) is used instead of loading `model_dir`.
    """
    from medmm.io import load_study

    predictor = predictor or _load_predictor(model_dir)
    study = load_study(patient, **predictor.preprocessor.grid_kwargs)
    result = explain_study(predictor, study, methods=methods)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "study_id": result.study_id,
        "present": list(result.present),
        "missing": [m for m in predictor.model.config.modalities if m not in result.present],
        "probabilities": dict(result.probabilities),
        "impression": result.impression,
        "default_method": DEFAULT_METHOD,
        "explanations": write_views(study, result, out),
        "disclaimer": "Research use only; not a medical device.",
    }
    (out / EXPLANATION_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


# -- faithfulness over a cohort ----------------------------------------------------------------


def case_figures(
    predictor,
    study: Study,
    truth: GroundTruth,
    methods: Sequence[str],
    rng: np.random.Generator,
    *,
    n_steps: int = DEFAULT_STEPS,
) -> tuple[list[CaseFigures], list[PairFigure]]:
    """The per-method quantities of every scorable diagnosis of one case, and how the maps of
    its two most probable diagnoses differ (see faithfulness.py)."""
    model = predictor.model
    names = tuple(model.config.diagnoses)
    study = predictor.select(study)[0]
    batch = predictor.batch([study])
    with torch.no_grad():
        top_two = [names[k] for k in np.argsort(-predictor.probabilities(batch)[0], kind="stable")[:2]]
    read = token_validity(model, batch)
    plan: dict[str, set[str]] = {}
    for d in (d for d in truth.labels if d in names and d in truth.evidence):
        ev = truth.evidence[d]
        wanted = {
            m
            for m, has in (
                ("image", ev.lesion is not None),
                ("vitals", ev.window is not None),
                ("notes", bool(ev.spans)),
            )
            if has and m in read
        }
        if wanted:
            plan[d] = wanted
    negated: dict[str, list] = {}
    if "notes" in read:
        for s in truth.distractors:
            if s.kind == "negated" and s.diagnosis in names:
                negated.setdefault(s.diagnosis, []).append(s)
    explained = [d for d in names if d in plan or d in negated or d in top_two]
    relevances = token_relevances(
        model, batch, [diagnosis_target(model, d) for d in explained], methods, n_steps=n_steps
    )
    pairs = []
    if len(top_two) == 2:
        first, second = ({r.method: r for r in relevances if r.target == d} for d in top_two)
        for method in first.keys() & second.keys():
            for modality in first[method].maps.keys() & second[method].maps.keys():
                value = distinctness(first[method].maps[modality], second[method].maps[modality])
                if value is not None:
                    pairs.append(PairFigure(method, modality, value))
    max_notes = model.config.preprocess.max_notes
    out = []
    for d in explained:
        scored, ev = plan.get(d, set()), truth.evidence.get(d)
        by_method = {r.method: r for r in relevances if r.target == d}
        drops, random_drop = {}, None
        if "image" in scored:
            grids = {m: r.maps["image"] for m, r in by_method.items() if "image" in r.maps}
            drops, random_drop = deletion_drops(model, batch, names.index(d), grids, rng)
        for method, relevance in by_method.items():
            e = map_relevance(study, batch, relevance, None, max_notes, predictor.task.channel_names)
            fields: dict = {}
            if "image" in scored and e.image is not None:
                if e.image.relevance.shape != ev.lesion.shape:
                    raise CohortError(
                        f"lesion mask {ev.lesion.shape} does not match the image {e.image.relevance.shape}",
                        where=f"evidence.{d}.image",
                    )
                fields.update(
                    pointing=pointing_hit(e.image.relevance, ev.lesion), drop_top=drops[method], drop_random=random_drop
                )
            if "vitals" in scored and e.vitals is not None:
                masses = window_masses(e.vitals, ev.window)
                if masses is not None:
                    fields.update(window_mass=masses[0], window_uniform=masses[1])
            if "notes" in scored and e.notes is not None:
                fields["note_hit"] = phrase_in_top(e.notes, ev.spans)
            if d in negated and e.notes is not None:
                fields["negated_hit"] = phrase_in_top(e.notes, negated[d])
            if any(v is not None for v in fields.values()):
                out.append(CaseFigures(d, method, **fields))
    return out, pairs


def explain_cohort(
    model_dir: str | Path,
    cohort_dir: str | Path,
    out_dir: str | Path,
    limit: int | None = None,
    *,
    split: str | None = "test",
    methods: Sequence[str] = METHODS,
    n_steps: int = DEFAULT_STEPS,
    seed: int = 0,
    predictor=None,
    progress: bool | None = None,
) -> dict:
    """Faithfulness figures of every method over the cohort's `split` (all patients when it has none); writes faithfulness.json.

    `limit` keeps the first patients of the split; a `predictor` already loaded is used instead of `model_dir`.
    """
    from medmm.io.cohort import Cohort

    predictor = predictor or _load_predictor(model_dir)
    cohort = Cohort.open(cohort_dir)
    if split is not None and any(e.split == split for e in cohort.entries):
        cohort = cohort.split(split)
    else:
        split = None
    count = len(cohort) if limit is None else min(limit, len(cohort))
    rng = np.random.default_rng(seed)
    results: list[CaseFigures] = []
    pairs: list[PairFigure] = []
    tally = {"patients": count, "scored": 0, "without_truth": 0, "unreadable": 0, "unmatched_note_spans": 0}
    for i in tqdm(range(count), desc="faithfulness", disable=None if progress is None else not progress, leave=False):
        entry = cohort.entries[i]
        try:
            study = cohort.load(i, **predictor.preprocessor.grid_kwargs)
            truth = read_ground_truth(entry.folder, study)
        except MedmmError as err:
            tally["unreadable"] += 1
            log.warning("patient %d of the cohort left out: %s", i, type(err).__name__)
            continue
        if truth is None:
            tally["without_truth"] += 1
            continue
        tally["unmatched_note_spans"] += truth.unmatched_spans
        rows, case_pairs = case_figures(predictor, study, truth, methods, rng, n_steps=n_steps)
        tally["scored"] += bool(rows)
        results += rows
        pairs += case_pairs
    figures = summarise(results, methods)
    doc = {
        **figures,
        "map_distinctness": summarise_distinctness(pairs, methods),
        "methods": list(methods),
        "default_method": DEFAULT_METHOD,
        "targets": dict(TARGETS),
        "split": split or "all",
        "cases": tally,
        "model_id": predictor.model_id,
        "pointing_tolerance": "15/224 of the longer image side, at least 1 pixel",
        "integrated_gradients_steps": n_steps,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / FAITHFULNESS_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc
