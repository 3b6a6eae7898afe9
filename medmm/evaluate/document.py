"""evaluation.json as a typed record: what the demo, the governance documents, the reports and the side-by-side read.

`Evaluation.from_dict` checks the sections every reader needs and names a missing or malformed
field (EvaluationError with the field's path); the optional sections (impression, grounding,
baselines, latency) are None when an evaluation has none. The whole document stays on the record
(`document`) for the HTML templates, which render every section as written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from medmm.evaluate.arrays import EvaluationError

EVALUATION_FILE = "evaluation.json"


def _field(doc: Any, path: str, kind: type | tuple[type, ...] = object) -> Any:
    value = doc
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise EvaluationError(f"{EVALUATION_FILE} has no {path}", where=path)
        value = value[key]
    if not isinstance(value, kind):
        raise EvaluationError(f"{EVALUATION_FILE}: {path} is not {getattr(kind, '__name__', kind)}", where=path)
    return value


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (NaN where undefined)."""

    value: float
    low: float
    high: float

    @classmethod
    def from_dict(cls, d: Mapping) -> Estimate:
        return cls(_number(d.get("value")), _number(d.get("low")), _number(d.get("high")))


@dataclass(frozen=True)
class SplitCounts:
    """One evaluated split: its cases and patients, what was left out, positives per label, audit groups."""

    split: str
    cases: int
    patients: int
    unreadable: int
    unlabelled: int
    positives: Mapping[str, int]
    no_diagnosis: int
    groups: Mapping[str, Mapping[str, int]]

    @classmethod
    def from_dict(cls, d: Mapping) -> SplitCounts:
        return cls(
            str(d.get("split", "")), int(d["cases"]), int(d.get("patients", d["cases"])), int(d.get("unreadable", 0)),
            int(d.get("unlabelled", 0)), dict(d.get("positives") or {}), int(d.get("no_diagnosis", 0)), dict(d.get("groups") or {}),
        )  # fmt: skip


@dataclass(frozen=True)
class AblationRow:
    """Macro AUROC with one subset of the inputs (the others masked)."""

    inputs: str
    macro_auroc: float
    auroc: Mapping[str, float]
    cases_with_input: int | None

    @classmethod
    def from_dict(cls, d: Mapping) -> AblationRow:
        auroc = {k: _number(v) for k, v in (d.get("auroc") or {}).items()}
        return cls(str(d["inputs"]), _number(d.get("macro_auroc")), auroc, d.get("cases_with_input"))


@dataclass(frozen=True)
class ImpressionQuality:
    """Of the grounded impressions as served: names the true top diagnosis, every true one, and none the case lacks."""

    cases: int
    positives: int
    names_true_top: float
    names_all_true: float
    contradicts_none: float

    @classmethod
    def from_dict(cls, d: Mapping) -> ImpressionQuality:
        return cls(
            int(d["cases"]), int(d["positives"]), _number(d.get("names_true_top")), _number(d.get("names_all_true")),
            _number(d.get("contradicts_none")),
        )  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """The typed sections of one evaluation.json, and the document itself."""

    document: Mapping[str, Any]
    model: Mapping[str, Any]
    cohort: Mapping[str, Any]
    summary: Mapping[str, Any]
    test: SplitCounts
    val: SplitCounts | None
    macro: Mapping[str, Estimate]  # metric -> estimate, pooled over the labels
    diagnoses: Mapping[str, Mapping[str, Estimate]]  # label -> metric -> estimate
    ablation: tuple[AblationRow, ...]
    impression: ImpressionQuality | None
    grounding: Mapping[str, Any] | None
    baselines: Mapping[str, Any] | None
    latency: Mapping[str, Any] | None

    @property
    def macro_auroc(self) -> Estimate:
        return self.macro.get("auroc", Estimate(math.nan, math.nan, math.nan))

    @property
    def subset_auroc(self) -> dict[str, float]:
        """Modality subset ("image", "image+notes", ..., "all") -> test macro AUROC."""
        return {r.inputs: r.macro_auroc for r in self.ablation}

    @property
    def label_names(self) -> list[str]:
        return list(self.model.get("diagnoses") or self.diagnoses)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Evaluation:
        _field(doc, "metrics", Mapping)  # the section, named when missing
        splits = _field(doc, "splits", Mapping)

        def estimates(entry: Mapping) -> dict[str, Estimate]:
            return {k: Estimate.from_dict(v) for k, v in entry.items() if isinstance(v, Mapping) and "value" in v}

        def optional(key: str) -> Mapping | None:
            value = doc.get(key)
            return value if isinstance(value, Mapping) else None

        impression = optional("impression")
        try:
            return cls(
                document=doc,
                model=doc.get("model") or {},
                cohort=doc.get("cohort") or {},
                summary=_field(doc, "summary", Mapping),
                test=SplitCounts.from_dict(_field(doc, "splits.test", Mapping)),
                val=SplitCounts.from_dict(splits["val"]) if isinstance(splits.get("val"), Mapping) else None,
                macro=estimates(_field(doc, "metrics.macro", Mapping)),
                diagnoses={str(d["name"]): estimates(d) for d in _field(doc, "metrics.diagnoses", list)},
                ablation=tuple(AblationRow.from_dict(r) for r in (doc.get("ablation") or {}).get("rows") or []),
                impression=ImpressionQuality.from_dict(impression) if impression is not None else None,
                grounding=optional("grounding"),
                baselines=optional("baselines"),
                latency=optional("latency"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"{EVALUATION_FILE} has a malformed section ({type(exc).__name__}: {exc})") from exc


def read_json_document(folder: str | Path, filename: str, made_by: str, what: str | None = None) -> tuple[Path, Any]:
    """(path, parsed JSON) of `filename` in `folder` (or the file given): what evaluation.json and audit.json
    share. EvaluationError names the file: missing (run `made_by` first), not JSON, or unreadable."""
    path = Path(folder)
    path = path / filename if path.is_dir() else path
    what = what or filename
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"no {filename} (run `{made_by}` first)", path=path) from None
    except ValueError as exc:
        raise EvaluationError(f"{what} is not JSON ({type(exc).__name__})", path=path) from exc
    except OSError as exc:
        raise EvaluationError(f"{what} is unreadable ({type(exc).__name__})", path=path) from exc


def load_evaluation(folder: str | Path) -> Evaluation:
    """The Evaluation in `folder` (or the evaluation.json file given); EvaluationError names what is missing."""
    path, doc = read_json_document(folder, EVALUATION_FILE, "medmm evaluate")
    if not isinstance(doc, Mapping):
        raise EvaluationError(f"{EVALUATION_FILE} is not a JSON object", path=path)
    try:
        return Evaluation.from_dict(doc)
    except EvaluationError as err:
        raise EvaluationError(err.detail, path=path, where=err.where) from None
