"""Models of the same cohort side by side, from their evaluation folders (e.g. the embedded LM and a pretrained one).

Each folder is what `medmm evaluate` (or `medmm demo`) wrote. The test splits must be the same
cases: cohort name, split sizes, the test split's positives and (for a synthetic cohort) the
generator settings are compared, and folders that differ are refused. Figures are read from each
evaluation.json as written, never recomputed: test macro AUROC with its patient-bootstrap
interval and per modality subset, impression quality (of the grounded impression as served, and
the LM's raw draft), the LM's answers about the patient's values (medmm.grounding.record), its
free-text answers' contradicted claims, and latency per case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from medmm.errors import EvaluationError
from medmm.evaluate.document import Evaluation, load_evaluation


def _same_test_split(cohort: dict) -> dict:
    test = cohort.get("test") or {}
    return {
        "name": cohort.get("name"),
        "splits": cohort.get("splits"),
        "synthetic": cohort.get("synthetic"),
        "cases": test.get("cases"),
        "positives": test.get("positives"),
    }


def _get(doc: dict, *keys, default=None):
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return default
        doc = doc[key]
    return doc


def _backbone(model: dict) -> str:
    b = model.get("backbone") or {}
    source = b.get("source") if isinstance(b, dict) else None
    return str(source) if source else "embedded"


def model_column(name: str, e: Evaluation) -> dict:
    """One model's figures, as its evaluation gives them (None where the evaluation has none)."""
    macro = e.macro_auroc
    values = _get(e.grounding or {}, "questions", "values") or {}
    free = _get(e.grounding or {}, "questions", "free_text", "lm") or {}
    latency = e.latency or {}
    imp = e.impression
    return {
        "name": name,
        "model_id": e.model.get("id"),
        "backbone": _backbone(e.model),
        "parameters": e.model.get("parameters"),
        "macro_auroc": macro.value,
        "macro_auroc_low": macro.low,
        "macro_auroc_high": macro.high,
        "subsets": e.subset_auroc,
        "names_true_top": imp.names_true_top if imp else None,
        "names_all_true": imp.names_all_true if imp else None,
        "contradicts_none": imp.contradicts_none if imp else None,
        "raw_names_true_top": _get(e.document, "impression", "raw", "names_true_top"),
        "raw_contradicted": _get(e.grounding or {}, "impressions", "raw", "with_contradicted_claim"),
        "grounded_contradicted": _get(e.grounding or {}, "impressions", "grounded", "with_contradicted_claim"),
        "value_questions": values.get("questions"),
        "value_with_reading": values.get("with_reading"),
        "quotes_value": values.get("quotes_value"),
        "wrong_number": values.get("wrong_number"),
        "declines": values.get("declines"),
        "free_text_contradicted": free.get("with_contradicted_claim"),
        "latency_median_seconds": latency.get("median_seconds"),
        "latency_device": latency.get("device"),
        "latency_threads": latency.get("threads"),
    }


def compare_evaluations(folders: Sequence[str | Path], names: Sequence[str] | None = None) -> dict:
    """The side-by-side document of two or more evaluations of the same test split."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise EvaluationError("give at least two evaluation folders to compare", where="compare")
    names = list(names) if names else [f.parent.name if f.name == "evaluation" else f.name for f in folders]
    if len(names) != len(folders):
        raise EvaluationError(f"{len(names)} name(s) for {len(folders)} evaluation(s)", where="compare")
    docs = [load_evaluation(f) for f in folders]
    first = _same_test_split(docs[0].cohort)
    for folder, doc in zip(folders[1:], docs[1:]):
        mine = _same_test_split(doc.cohort)
        if mine != first:
            differ = sorted(k for k in first if first[k] != mine.get(k))
            raise EvaluationError(f"not the same test split as {folders[0]} ({', '.join(differ)} differ)", path=folder)
    columns = [model_column(n, d) for n, d in zip(names, docs)]
    subsets = list(dict.fromkeys(s for c in columns for s in c["subsets"]))
    return {
        "format": "medmm-side-by-side/1",
        "cohort": first,
        "evaluations": [str(f) for f in folders],
        "models": columns,
        "subsets": subsets,
        "note": "figures as each evaluation.json gives them (test split); intervals are each model's own patient bootstrap",
    }


def side_by_side_figure(doc: dict):
    """Bars per model: macro AUROC per modality subset, and the text figures (impression, values) as shares."""
    import numpy as np

    from medmm.evaluate.plots import _new_figure

    fig = _new_figure((9.0, 4.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    models = doc["models"]
    width = 0.8 / len(models)
    subsets = doc["subsets"] or ["all"]
    x = np.arange(len(subsets))
    for i, m in enumerate(models):
        left.bar(x + i * width, [m["subsets"].get(s, np.nan) for s in subsets], width, label=m["name"])
    left.set_xticks(x + width * (len(models) - 1) / 2, subsets, rotation=45, ha="right", fontsize=8)
    left.set_ylim(0.5, 1.0)
    left.set_ylabel("test macro AUROC")
    left.legend(fontsize=8)
    texts = [
        ("names true top", "names_true_top"),
        ("contradicts none", "contradicts_none"),
        ("quotes value", "quotes_value"),
    ]
    x = np.arange(len(texts))
    for i, m in enumerate(models):
        right.bar(x + i * width, [m[k] if m[k] is not None else np.nan for _, k in texts], width, label=m["name"])
    right.set_xticks(x + width * (len(models) - 1) / 2, [t for t, _ in texts], fontsize=8)
    right.set_ylim(0.0, 1.0)
    right.set_ylabel("share of test cases / questions")
    return fig
