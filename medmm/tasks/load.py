"""Reading a Task from YAML, with every field checked.

A mistake is a ConfigError naming the file and the field (`labels[2].icd10`, `vitals.hours`)
and saying what was expected; unknown keys are mistakes too, so that a typo never silently
falls back to a default. YAML is read with yaml.safe_load.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from medmm.codes import VITAL_SIGNS, VitalSign
from medmm.errors import ConfigError
from medmm.io.units import canonical_unit
from medmm.tasks.task import (
    AUDIT_ATTRIBUTES,
    INACTIVE_RULES,
    INDEX_KINDS,
    Horizon,
    ImagesWindow,
    IndexRule,
    LabelSpec,
    LabelWords,
    NotesWindow,
    Task,
    VitalsWindow,
    Vocabulary,
)

TASK_DIR = Path(__file__).parent
DEFAULT_TASK = "synthetic-cxr"  # the task of `medmm synth` cohorts, and of checkpoints that predate stored tasks
DEFAULT_AUDIT = ("sex", "age_band", "race", "ethnicity")
DEFAULT_AGE_BANDS = (18.0, 40.0, 65.0, 80.0)  # 0-17, 18-39, 40-64, 65-79, 80+
_TOP_KEYS = {
    "name",
    "description",
    "index",
    "notes",
    "vitals",
    "images",
    "labels",
    "horizon",
    "inactive_conditions",
    "channels",
    "audit_attributes",
    "age_bands",
}


def shipped_tasks() -> tuple[str, ...]:
    """Short names of the tasks shipped with medmm."""
    return tuple(sorted(p.stem for p in TASK_DIR.glob("*.yaml")))


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """The shipped default task's labels and their words: what text functions use when given no task's."""
    return load_task(DEFAULT_TASK).displays


def load_task(path_or_name: str | Path) -> Task:
    """A Task from a YAML file, or a shipped task by short name (`synthetic-cxr`)."""
    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        path = TASK_DIR / f"{path_or_name}.yaml"
        if not path.is_file():
            known = ", ".join(shipped_tasks())
            raise ConfigError(f"no shipped task of this name (known: {known})", where=str(path_or_name))
    if not path.is_file():
        raise ConfigError("task file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML ({type(exc).__name__})", path=path) from None
    return task_from_dict(data, source=str(path))


def cohort_task(root: str | Path) -> Task:
    """The task a cohort was built for (its task.yaml, written by `medmm cohort build`), else the default task."""
    path = Path(root) / "task.yaml"
    return load_task(path) if path.is_file() else load_task(DEFAULT_TASK)


def task_from_dict(data: Any, source: str = "") -> Task:
    """A Task from the mapping a YAML file holds; ConfigErrors name `source` and the field."""
    r = _Reader(source)
    top = r.mapping(data, "", _TOP_KEYS)
    name = r.text(top.get("name"), "name")
    channels = _channels(r, top.get("channels"))
    labels = tuple(_label(r, item, f"labels[{i}]") for i, item in enumerate(r.items(top.get("labels"), "labels")))
    if not labels:
        raise r.error("labels", "expected at least one label")
    r.unique([spec.name for spec in labels], "labels", "label name")
    audit = tuple(
        r.choice(a, f"audit_attributes[{i}]", AUDIT_ATTRIBUTES)
        for i, a in enumerate(r.items(top.get("audit_attributes", list(DEFAULT_AUDIT)), "audit_attributes"))
    )
    bands = tuple(
        r.number(b, f"age_bands[{i}]", low=0.0)
        for i, b in enumerate(r.items(top.get("age_bands", list(DEFAULT_AGE_BANDS)), "age_bands"))
    )
    if list(bands) != sorted(set(bands)) or any(b <= 0 for b in bands):
        raise r.error("age_bands", "expected increasing positive ages in years")
    return Task(
        name=name,
        description=r.text(top.get("description", ""), "description", empty=True),
        index=_index(r, top.get("index")),
        notes=_notes(r, top.get("notes")),
        vitals=_vitals(r, top.get("vitals")),
        images=_images(r, top.get("images")),
        labels=labels,
        horizon=_horizon(r, top.get("horizon")),
        inactive_conditions=r.choice(top.get("inactive_conditions", "count"), "inactive_conditions", INACTIVE_RULES),
        channels=channels,
        audit_attributes=audit,
        age_bands=bands,
        source=source,
    )


def task_to_dict(task: Task) -> dict[str, Any]:
    """The mapping `task_from_dict` reads back as an equal Task (what checkpoints and cohorts store)."""

    def present(values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    index: dict[str, Any] = {"kind": task.index.kind}
    if task.index.kind in ("encounter", "last_encounter"):
        index.update(classes=list(task.index.classes), types=list(task.index.types))
    if task.index.column is not None:
        index["column"] = task.index.column
    v = task.vitals
    if v.per_encounter:
        vitals: dict[str, Any] | None = {"per_encounter": True, "days": v.days, "include_index": v.include_index}
    elif v.hours is not None:
        vitals = {"hours": v.hours, "step_minutes": v.step_minutes, "include_index": v.include_index}
    else:
        vitals = None
    h = task.horizon
    return present(
        {
            "name": task.name,
            "description": task.description,
            "index": index,
            "notes": {"days": task.notes.days, "include_index": task.notes.include_index}
            if task.notes.days is not None
            else None,
            "vitals": vitals,
            "images": {"days": task.images.days, "include_index": task.images.include_index}
            if task.images.days is not None
            else None,
            "labels": [
                present(
                    {
                        "name": s.name,
                        "display": s.display,
                        "snomed": list(s.snomed),
                        "icd10": list(s.icd10),
                        "words": _words_dict(s.words),
                    }
                )
                for s in task.labels
            ],
            "horizon": present(
                {
                    "before_days": h.before_days,
                    "after_days": h.after_days,
                    "calendar_days": h.calendar_days,
                    "encounter_diagnosis": h.encounter_diagnosis,
                }
            ),
            "inactive_conditions": task.inactive_conditions,
            "channels": [
                {
                    "name": c.name,
                    "display": c.display,
                    "loinc": list(c.loinc),
                    "unit": c.unit,
                    "low": c.low,
                    "high": c.high,
                }
                for c in task.channels
            ],
            "audit_attributes": list(task.audit_attributes),
            "age_bands": list(task.age_bands),
        }
    )


class _Reader:
    """Typed access to YAML values; every failure names the file and the field."""

    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.source or None, where=where or "task")

    def mapping(self, value: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(where, f"expected a mapping, found {_kind(value)}")
        unknown = sorted(str(k) for k in value if k not in keys)
        if unknown:
            raise self.error(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(keys))})")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(where, f"expected a list, found {_kind(value)}")
        return value

    def text(self, value: Any, where: str, empty: bool = False) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # codes such as 2708 read as numbers
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.error(where, f"expected a non-empty text, found {_kind(value)}")
        return value.strip()

    def texts(self, value: Any, where: str) -> tuple[str, ...]:
        return tuple(self.text(v, f"{where}[{i}]") for i, v in enumerate(self.items(value, where)))

    def number(self, value: Any, where: str, low: float = 0.0, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(where, f"expected a number, found {_kind(value)}")
        if value < low or (positive and value <= 0):
            raise self.error(where, f"expected a number {'above' if positive else 'at least'} {low:g}")
        return float(value)

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, f"expected true or false, found {_kind(value)}")
        return value

    def choice(self, value: Any, where: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.error(where, f"expected one of {', '.join(allowed)}")
        return value

    def unique(self, names: list[str], where: str, what: str) -> None:
        if len(set(names)) != len(names):
            raise self.error(where, f"a {what} appears more than once")


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _index(r: _Reader, value: Any) -> IndexRule:
    m = r.mapping(value, "index", {"kind", "classes", "types", "column"})
    kind = r.choice(m.get("kind"), "index.kind", INDEX_KINDS)
    column = r.text(m["column"], "index.column") if "column" in m else None
    if kind == "manifest_column" and column is None:
        raise r.error("index.column", "expected the manifest column that holds the index date")
    if kind != "manifest_column" and column is not None:
        raise r.error("index.column", f"only index kind manifest_column reads a column (kind is {kind})")
    classes = r.texts(m.get("classes", []), "index.classes")
    types = r.texts(m.get("types", []), "index.types")
    if (classes or types) and kind not in ("encounter", "last_encounter"):
        raise r.error("index", f"classes and types select Encounters; index kind {kind} has none")
    return IndexRule(kind=kind, classes=classes, types=types, column=column)


def _notes(r: _Reader, value: Any) -> NotesWindow:
    if value is None:
        return NotesWindow()
    m = r.mapping(value, "notes", {"days", "include_index"})
    return NotesWindow(
        days=r.number(m.get("days"), "notes.days", positive=True),
        include_index=r.flag(m.get("include_index", False), "notes.include_index"),
    )


def _vitals(r: _Reader, value: Any) -> VitalsWindow:
    if value is None:
        return VitalsWindow()
    m = r.mapping(value, "vitals", {"hours", "step_minutes", "per_encounter", "days", "include_index"})
    include = r.flag(m.get("include_index", False), "vitals.include_index")
    if r.flag(m.get("per_encounter", False), "vitals.per_encounter"):
        if "hours" in m or "step_minutes" in m:
            raise r.error("vitals", "per_encounter takes days, not hours or step_minutes")
        days = r.number(m.get("days"), "vitals.days", positive=True)
        return VitalsWindow(per_encounter=True, days=days, include_index=include)
    if "days" in m:
        raise r.error("vitals.days", "days goes with per_encounter: true; a regular grid takes hours")
    hours = r.number(m.get("hours"), "vitals.hours", positive=True)
    step = r.number(m.get("step_minutes"), "vitals.step_minutes", positive=True)
    if round(hours * 60 * 1e6) % round(step * 1e6):
        raise r.error("vitals.step_minutes", "expected a step that divides the window evenly")
    return VitalsWindow(hours=hours, step_minutes=step, include_index=include)


def _images(r: _Reader, value: Any) -> ImagesWindow:
    if value is None:
        return ImagesWindow()
    m = r.mapping(value, "images", {"days", "include_index"})
    return ImagesWindow(
        days=r.number(m.get("days"), "images.days"),
        include_index=r.flag(m.get("include_index", True), "images.include_index"),
    )


def _label(r: _Reader, value: Any, where: str) -> LabelSpec:
    m = r.mapping(value, where, {"name", "display", "snomed", "icd10", "words"})
    name = r.text(m.get("name"), f"{where}.name")
    if not name.replace("_", "").isalnum():
        raise r.error(f"{where}.name", "expected letters, digits and underscores (it names output columns)")
    snomed = r.texts(m.get("snomed", []), f"{where}.snomed")
    icd10 = r.texts(m.get("icd10", []), f"{where}.icd10")
    for i, code in enumerate(snomed):
        if not code.isdigit():
            raise r.error(f"{where}.snomed[{i}]", "expected a SNOMED CT concept id (digits)")
    for i, code in enumerate(icd10):
        key = code.upper().replace(".", "")
        if len(key) < 3 or not (key[0].isalpha() and key[1:3].isalnum()):
            raise r.error(f"{where}.icd10[{i}]", "expected an ICD-10-CM code or category (e.g. J18 or J18.9)")
    if not snomed and not icd10:
        raise r.error(where, "expected at least one code in snomed or icd10")
    display = r.text(m.get("display", name), f"{where}.display")
    return LabelSpec(
        name=name, display=display, snomed=snomed, icd10=icd10, words=_words(r, m.get("words"), f"{where}.words")
    )


def _words_dict(words: LabelWords) -> dict[str, Any] | None:
    """A label's words as task_to_dict writes them (None when it has none)."""
    out = {k: list(getattr(words, k)) for k in ("synonyms", "image_findings", "image_terms") if getattr(words, k)}
    if words.evidence:
        out["evidence"] = dict(words.evidence)
    return out or None


def _words(r: _Reader, value: Any, where: str) -> LabelWords:
    if value is None:
        return LabelWords()
    m = r.mapping(value, where, {"synonyms", "evidence", "image_findings", "image_terms"})
    evidence = r.mapping(m.get("evidence", {}), f"{where}.evidence", {"image", "vitals", "notes"})
    lists = {
        k: tuple(t.lower() for t in r.texts(m.get(k, []), f"{where}.{k}"))
        for k in ("synonyms", "image_findings", "image_terms")
    }
    pairs = tuple(
        (mod, r.text(evidence[mod], f"{where}.evidence.{mod}"))
        for mod in ("image", "vitals", "notes")
        if mod in evidence
    )
    return LabelWords(
        synonyms=lists["synonyms"],
        evidence=pairs,
        image_findings=lists["image_findings"],
        image_terms=lists["image_terms"],
    )


def _horizon(r: _Reader, value: Any) -> Horizon:
    if value is None:
        return Horizon()
    m = r.mapping(value, "horizon", {"before_days", "after_days", "calendar_days", "encounter_diagnosis"})
    before = r.number(m["before_days"], "horizon.before_days") if m.get("before_days") is not None else None
    after = r.number(m["after_days"], "horizon.after_days") if m.get("after_days") is not None else None
    return Horizon(
        before_days=before,
        after_days=after,
        calendar_days=r.flag(m.get("calendar_days", False), "horizon.calendar_days"),
        encounter_diagnosis=r.flag(m.get("encounter_diagnosis", False), "horizon.encounter_diagnosis"),
    )


# UCUM's printable characters (no spaces); a unit medmm has no conversions for is the channel's own, and
# values are read only when they come in exactly that unit.
_UCUM_TEXT = re.compile(r"[A-Za-z0-9.%/\[\]{}()*^+\-_']{1,64}")


def _channels(r: _Reader, value: Any) -> tuple[VitalSign, ...]:
    """The vital-sign channels; absent means medmm's default seven (medmm.codes.VITAL_SIGNS). A channel's
    unit is UCUM: a unit medmm converts from other spellings (/min, %, Cel, mm[Hg], kg) in its UCUM
    spelling, any other as the exact unit its values must come in."""
    if value is None:
        return VITAL_SIGNS
    signs = []
    for i, item in enumerate(r.items(value, "channels")):
        where = f"channels[{i}]"
        m = r.mapping(item, where, {"name", "display", "loinc", "unit", "low", "high"})
        unit = r.text(m.get("unit"), f"{where}.unit")
        known = canonical_unit(unit)
        if known is not None and known != unit:
            raise r.error(f"{where}.unit", f"expected the UCUM spelling {known!r}")
        if known is None and not _UCUM_TEXT.fullmatch(unit):
            raise r.error(
                f"{where}.unit", "expected a UCUM unit (e.g. /min, %, Cel, mm[Hg], kg, mg/dL, {score}), without spaces"
            )
        low = r.number(m.get("low"), f"{where}.low", low=-math.inf)
        high = r.number(m.get("high"), f"{where}.high", low=-math.inf)
        if not low < high:
            raise r.error(f"{where}.high", "expected high above low")
        loinc = r.texts(m.get("loinc"), f"{where}.loinc")
        if not loinc:
            raise r.error(f"{where}.loinc", "expected at least one LOINC code")
        name = r.text(m.get("name"), f"{where}.name")
        display = r.text(m.get("display", name), f"{where}.display")
        signs.append(VitalSign(name, display, loinc, unit, low, high))
    if not signs:
        raise r.error("channels", "expected at least one channel (or leave channels out for the default seven)")
    r.unique([s.name for s in signs], "channels", "channel name")
    r.unique([c for s in signs for c in s.loinc], "channels", "LOINC code")
    return tuple(signs)
