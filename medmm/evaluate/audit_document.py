"""audit.json as a typed record: what the group card, the reports and the governance documents read.

`medmm audit` (medmm.evaluate.pipeline) writes the AuditResult of `audit_subgroups` together with
what it was run on: the model, cohort and split, the calibration applied and where the thresholds
came from, the plots drawn, and when and by which medmm version (an AuditContext here).
`AuditResult.from_json` (`audit_from_json`) reads that document back into the same typed records
(GroupResult, GroupMetric, Flag, the settings) and `AuditResult.to_json` (`audit_to_json`) writes
it again, key for key, so a report rendered from the record shows exactly what the file holds.

What the readers need is checked and a missing or malformed field is named (EvaluationError with
the file and the field's path, e.g. groups[3].metrics[0].ci): each group's attribute, group, size
and status, each metric's name, each flag's group, metric and reason, the audited attributes and
the minimum group size. A figure an audit does not record (one written by hand, or before a field
existed) reads as NaN and a count as 0, as in evaluation.json's reader; context it does not record
is None, and `to_json` leaves it out again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, overload

from medmm.evaluate.arrays import EvaluationError, json_safe
from medmm.evaluate.document import read_json_document
from medmm.evaluate.fairness import AuditResult, Flag, GroupMetric, GroupResult
from medmm.records import Issue

AUDIT_FILE = "audit.json"
STATUSES = ("reference", "scored", "too small")
# Keys the audit itself fills (the AuditResult); every other key is context.
RESULT_KEYS = ("settings", "attributes", "references", "thresholds", "groups", "flags", "issues", "summary")
_TEXT_CONTEXT = ("format", "disclaimer", "medmm_version", "created")
_OTHER_CONTEXT = ("model", "cohort", "split", "temperature", "calibrated", "thresholds_from", "plots", "seconds")
_MISSING = object()


@dataclass(frozen=True)
class AuditContext:
    """What audit.json records around the audit: its provenance, the model, cohort and split audited, the calibration applied.

    A field is None (`extra` empty) when the document does not record it.
    """

    format: str | None = None
    disclaimer: str | None = None
    medmm_version: str | None = None
    created: str | None = None
    model: Mapping[str, Any] | None = None  # the audited model as the evaluation describes it (id, strata, labels, ...)
    cohort: Mapping[str, Any] | None = None  # the cohort's description (name, patients, splits, ...)
    split: Mapping[str, Any] | None = None  # counts of the audited split (split, cases, patients, positives, groups)
    temperature: float | None = None  # applied to the logits before the thresholds
    calibrated: bool | None = None  # False: the model had no fitted temperature
    thresholds_from: str | None = None  # "validation split" | "saved calibration"
    plots: Mapping[str, str] | None = None  # "metric:attribute" -> PNG path relative to the audit folder
    seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other key the writer's context added, as written

    @property
    def model_id(self) -> str | None:
        """The audited model's id (the first 16 hex digits of its checksums' SHA-256), when recorded."""
        return (self.model or {}).get("id")

    @property
    def strata_attributes(self) -> tuple[str, ...]:
        """The single attributes the model's task audits by (empty when the audit does not say)."""
        return tuple(self._strata().get("attributes") or ())

    @property
    def age_bands(self) -> tuple[float, ...]:
        """The lower bounds of the task's age bands (empty when the audit does not say)."""
        return tuple(float(b) for b in self._strata().get("age_bands") or ())

    @property
    def cohort_name(self) -> str | None:
        return (self.cohort or {}).get("name")

    @property
    def split_name(self) -> str | None:
        """The audited split ("test", or "all" for a cohort without one), when recorded."""
        return (self.split or {}).get("split")

    def _strata(self) -> Mapping[str, Any]:
        return (self.model or {}).get("strata") or {}


def _where(at: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else key


def _check(value: Any, where: str, kind: type | tuple[type, ...], what: str, default: Any = _MISSING) -> Any:
    """`value` when it is `kind` (a bool only where asked for); `default` when it is null or absent, named when required."""
    if value is None:
        if default is _MISSING:
            raise EvaluationError(f"missing (expected {what})", where=where)
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise EvaluationError(f"expected {what}", where=where)
    return value


def _text(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> Any:
    return _check(d.get(key), _where(at, key), str, "text", default)


def _count(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> Any:
    return _check(d.get(key), _where(at, key), int, "a whole number", default)


def _figure(value: Any, where: str) -> float:
    """A figure; NaN when null or absent (the writer records an undefined figure as null)."""
    return float(_check(value, where, (int, float), "a number", math.nan))


def _number(d: Mapping[str, Any], key: str, at: str) -> float:
    return _figure(d.get(key), _where(at, key))


def _switch(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> Any:
    return _check(d.get(key), _where(at, key), bool, "true or false", default)


def _object(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> Any:
    return _check(d.get(key), _where(at, key), Mapping, "an object", default)


def _list(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> list[tuple[str, Any]]:
    """(path, element) of each element of the list d[key]."""
    where = _where(at, key)
    return [(_where(where, i), v) for i, v in enumerate(_check(d.get(key), where, list, "a list", default))]


def _entries(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> list[tuple[str, Mapping[str, Any]]]:
    """(path, entry) of each object in the list d[key]; an entry that is not an object is named."""
    return [(where, _check(v, where, Mapping, "an object")) for where, v in _list(d, key, at, default)]


def _texts(d: Mapping[str, Any], key: str, at: str, default: Any = _MISSING) -> tuple[str, ...]:
    return tuple(_check(v, where, str, "text") for where, v in _list(d, key, at, default))


def _pair(d: Mapping[str, Any], key: str, at: str) -> tuple[float, float]:
    """An interval [low, high]; (NaN, NaN) when null or absent, a null bound NaN."""
    where = _where(at, key)
    value = _check(d.get(key), where, list, "a [low, high] pair", [None, None])
    if len(value) != 2:
        raise EvaluationError("expected a [low, high] pair", where=where)
    return (_figure(value[0], _where(where, 0)), _figure(value[1], _where(where, 1)))


def _metric(d: Mapping[str, Any], at: str) -> GroupMetric:
    return GroupMetric(
        metric=_text(d, "metric", at),
        value=_number(d, "value", at),
        ci=_pair(d, "ci", at),
        reference_value=_number(d, "reference_value", at),
        ratio=_number(d, "ratio", at),
        ratio_ci=_pair(d, "ratio_ci", at),
        difference=_number(d, "difference", at),
        difference_ci=_pair(d, "difference_ci", at),
        skipped_resamples=_count(d, "skipped_resamples", at, 0),
        events=_count(d, "events", at, None),
    )


def _group(d: Mapping[str, Any], at: str) -> GroupResult:
    attribute, group, n = _text(d, "attribute", at), _text(d, "group", at), _count(d, "n", at)
    status = _text(d, "status", at)
    if status not in STATUSES:
        raise EvaluationError(f"expected one of {', '.join(STATUSES)}", where=f"{at}.status")
    return GroupResult(
        attribute=attribute,
        group=group,
        n=n,
        n_patients=_count(d, "n_patients", at, n),
        status=status,
        metrics=tuple(_metric(m, where) for where, m in _entries(d, "metrics", at, [])),
    )


def _flag(d: Mapping[str, Any], at: str) -> Flag:
    return Flag(
        attribute=_text(d, "attribute", at),
        group=_text(d, "group", at),
        metric=_text(d, "metric", at),
        value=_number(d, "value", at),
        ci=_pair(d, "interval", at),
        reference_group=_text(d, "reference_group", at, None),
        reference_value=_number(d, "reference_value", at),
        ratio=_number(d, "ratio", at),
        ratio_ci=_pair(d, "ratio_interval", at),
        difference=_number(d, "difference", at),
        difference_ci=_pair(d, "difference_interval", at),
        reason=_text(d, "reason", at),
    )


def _issue(d: Mapping[str, Any], at: str) -> Issue:
    return Issue(
        _text(d, "source", at), _text(d, "where", at, ""), _text(d, "message", at), _text(d, "kind", at, "warning")
    )


def _context(doc: Mapping[str, Any]) -> AuditContext | None:
    """The context keys of the document, checked where a reader relies on their kind; None when it has none."""
    extra = {k: v for k, v in doc.items() if k not in RESULT_KEYS + _TEXT_CONTEXT + _OTHER_CONTEXT}
    if not extra and not any(k in doc for k in _TEXT_CONTEXT + _OTHER_CONTEXT):
        return None
    model = _object(doc, "model", "", None)
    if model is not None:
        _text(model, "id", "model", None)
        strata = _object(model, "strata", "model", None) or {}
        _texts(strata, "attributes", "model.strata", [])
        for where, band in _list(strata, "age_bands", "model.strata", []):
            _figure(band, where)
    cohort = _object(doc, "cohort", "", None)
    if cohort is not None:
        _text(cohort, "name", "cohort", None)
    split = _object(doc, "split", "", None)
    if split is not None:
        _text(split, "split", "split", None)
    plots = _object(doc, "plots", "", None)
    for key in plots or {}:
        _text(plots, key, "plots")
    return AuditContext(
        **{k: None if doc.get(k) is None else str(doc[k]) for k in _TEXT_CONTEXT},  # provenance, kept as text
        model=model,
        cohort=cohort,
        split=split,
        temperature=_number(doc, "temperature", "") if "temperature" in doc else None,
        calibrated=_switch(doc, "calibrated", "", None),
        thresholds_from=_text(doc, "thresholds_from", "", None),
        plots=plots,
        seconds=_number(doc, "seconds", "") if "seconds" in doc else None,
        extra=extra,
    )


def audit_from_json(data: Mapping[str, Any], path: str | Path | None = None) -> AuditResult:
    """The AuditResult of an audit.json document (`path`: the file, named in errors; by default audit.json)."""
    where_file = path if path is not None else AUDIT_FILE
    if not isinstance(data, Mapping):
        raise EvaluationError("expected a JSON object", path=where_file)
    try:
        attributes = _texts(data, "attributes", "")
        settings = _object(data, "settings", "")
        thresholds = _object(data, "thresholds", "", {})
        return AuditResult(
            groups=tuple(_group(g, where) for where, g in _entries(data, "groups", "")),
            flags=tuple(_flag(f, where) for where, f in _entries(data, "flags", "")),
            attributes=attributes,
            names=tuple(str(k) for k in thresholds),
            thresholds=tuple(_number(thresholds, k, "thresholds") for k in thresholds),
            min_group_size=_count(settings, "min_group_size", "settings"),
            bound_difference=_number(settings, "bound_difference", "settings"),
            ratio_band=_pair(settings, "ratio_band", "settings"),
            n_boot=_count(settings, "n_boot", "settings", 0),
            seed=_count(settings, "seed", "settings", 0),
            confidence=_number(settings, "confidence", "settings"),
            n_bins=_count(settings, "n_bins", "settings", 0),
            issues=tuple(_issue(i, where) for where, i in _entries(data, "issues", "", [])),
            intersections=_switch(settings, "intersections", "settings", any(" x " in a for a in attributes)),
            context=_context(data),
        )
    except EvaluationError as err:
        raise EvaluationError(err.detail, path=where_file, where=err.where) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationError(f"{AUDIT_FILE} has a malformed section ({type(exc).__name__})", path=where_file) from exc


def audit_to_json(result: AuditResult) -> dict[str, Any]:
    """The audit.json document of `result`, as medmm.evaluate.pipeline writes it (NaN as null); context only where recorded."""
    c = result.context
    doc: dict[str, Any] = {}
    if c is not None:
        doc.update({k: getattr(c, k) for k in _TEXT_CONTEXT if getattr(c, k) is not None})
        doc.update({k: getattr(c, k) for k in ("model", "cohort") if getattr(c, k) is not None})
        doc.update(c.extra)
        doc.update(
            {
                k: getattr(c, k)
                for k in ("split", "temperature", "calibrated", "thresholds_from")
                if getattr(c, k) is not None
            }
        )
    doc["settings"] = {
        "min_group_size": result.min_group_size,
        "bound_difference": result.bound_difference,
        "ratio_band": list(result.ratio_band),
        "n_boot": result.n_boot,
        "seed": result.seed,
        "confidence": result.confidence,
        "n_bins": result.n_bins,
        "intersections": result.intersections,
    }
    doc["attributes"] = list(result.attributes)
    doc["references"] = {a: result.reference(a) for a in result.attributes}
    doc["thresholds"] = dict(zip(result.names, result.thresholds))
    doc["groups"] = [asdict(g) for g in result.groups]
    doc["flags"] = [
        {
            "attribute": f.attribute,
            "group": f.group,
            "metric": f.metric,
            "value": f.value,
            "interval": list(f.ci),
            "reference_group": f.reference_group,
            "reference_value": f.reference_value,
            "ratio": f.ratio,
            "ratio_interval": list(f.ratio_ci),
            "difference": f.difference,
            "difference_interval": list(f.difference_ci),
            "reason": f.reason,
        }
        for f in result.flags
    ]
    if c is not None and c.plots is not None:
        doc["plots"] = dict(c.plots)
    doc["issues"] = [
        {"source": i.source, "where": i.where, "message": i.message, "kind": i.kind} for i in result.issues
    ]
    doc["summary"] = {
        "flags": len(result.flags),
        "flagged_groups": list(result.flagged_groups),
        "groups_scored": result.groups_scored,
        "groups_too_small": result.groups_too_small,
    }
    if c is not None and c.seconds is not None:
        doc["seconds"] = c.seconds
    return json_safe(doc)  # type: ignore[return-value]


def load_audit(folder: str | Path) -> AuditResult:
    """The AuditResult in `folder` (or the audit.json file given); EvaluationError names the file and what is wrong."""
    path, doc = read_json_document(folder, AUDIT_FILE, "medmm audit", what="audit file")
    return audit_from_json(doc, path)


@overload
def audit_record(audit: None) -> None: ...
@overload
def audit_record(audit: AuditResult | Mapping[str, Any]) -> AuditResult: ...
def audit_record(audit: AuditResult | Mapping[str, Any] | None) -> AuditResult | None:
    """An audit however it is handed over: the record itself, or an audit.json document read into one; None stays None."""
    if audit is None or isinstance(audit, AuditResult):
        return audit
    return audit_from_json(audit)
