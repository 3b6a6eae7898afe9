"""Study protocol (YAML) and the cohort filter: which cases a batch study runs, in which batches.

A protocol names the model, the cohort, the filter (splits, demographics, study dates, the
modalities that must be present, explicit patients) and the outputs. Example::

    name: test-split-study
    model: medmm-demo/model
    cohort: medmm-demo/cohort
    filter:
      splits: [test]
      sex: [female, male]
      min_age: 18
      max_age: 90
      race: [2054-5, 2106-3]
      from_time: "2020-01-01T00:00:00Z"   # study time, inclusive
      to_time: "2030-01-01T00:00:00Z"     # study time, exclusive
      require: [image]                    # modalities that must be present
    outputs:
      impression: true
      max_new_tokens: 24
      fhir: true
      inputs: strict                      # strict: a case with an unreadable input file fails
    run:
      batch_size: 8
      part_size: 64

The selection keeps the cohort's manifest order; batches and parts are fixed slices of it, so
a resumed study, another engine or another worker count puts every case in the same batch
(and so computes exactly the same numbers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from medmm.config import from_dict, load_yaml
from medmm.errors import ConfigError
from medmm.io.cohort import Cohort
from medmm.records import MODALITIES

INPUT_POLICIES = ("strict", "lenient")


def _time(value: str | None, where: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError("expected an ISO 8601 date or time", where=where) from exc
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class CohortFilter:
    """Which manifest rows a study takes; an empty list means no restriction."""

    splits: tuple[str, ...] = ()  # train | val | test
    sex: tuple[str, ...] = ()  # female | male | other | unknown (manifest column sex)
    race: tuple[str, ...] = ()  # OMB race codes (manifest column race)
    ethnicity: tuple[str, ...] = ()  # OMB ethnicity codes (manifest column ethnicity)
    min_age: float | None = None  # age in years at the study time, inclusive
    max_age: float | None = None  # inclusive
    from_time: str | None = None  # study time, ISO 8601, inclusive (naive: UTC)
    to_time: str | None = None  # study time, exclusive
    require: tuple[str, ...] = ()  # modalities every case must have: image | notes | vitals
    patients: tuple[str, ...] = ()  # explicit patient ids
    limit: int | None = None  # at most this many cases (the first, in manifest order)

    def __post_init__(self) -> None:
        bad = [m for m in self.require if m not in MODALITIES]
        if bad:
            raise ConfigError(
                f"require names unknown modalities (expected {', '.join(MODALITIES)})", where="filter.require"
            )
        for name in ("min_age", "max_age"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigError("expected a non-negative number of years", where=f"filter.{name}")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ConfigError("min_age is above max_age", where="filter.min_age")
        start, end = _time(self.from_time, "filter.from_time"), _time(self.to_time, "filter.to_time")
        if start is not None and end is not None and start >= end:
            raise ConfigError("from_time must be before to_time", where="filter.from_time")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("expected a positive integer", where="filter.limit")

    @property
    def time_range(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        return _time(self.from_time, "filter.from_time"), _time(self.to_time, "filter.to_time")


@dataclass(frozen=True)
class Outputs:
    """What each case produces besides its row of probabilities."""

    impression: bool = True  # draft the impression (the slowest part of a prediction)
    max_new_tokens: int | None = None  # impression length in tokens; None: the model's default
    fhir: bool = True  # RiskAssessment, DiagnosticReport and Provenance NDJSON
    explanations: bool = False  # write the explanation views of each case's most probable diagnosis
    inputs: str = (
        "strict"  # strict: a case with an input file that cannot be read at all fails; lenient: it is a warning
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError("expected a positive integer", where="outputs.max_new_tokens")
        if self.inputs not in INPUT_POLICIES:
            raise ConfigError(f"expected one of {', '.join(INPUT_POLICIES)}", where="outputs.inputs")


@dataclass(frozen=True)
class RunOptions:
    """How the work is cut; part of the study, because batch composition can change the last bits of a float."""

    batch_size: int = 8  # cases per model call
    part_size: int = 64  # cases per result part (a multiple of batch_size): the unit of commit and resume
    torch_threads: int = 1  # intra-op threads of each model worker

    def __post_init__(self) -> None:
        for name in ("batch_size", "part_size", "torch_threads"):
            if getattr(self, name) < 1:
                raise ConfigError("expected a positive integer", where=f"run.{name}")
        if self.part_size % self.batch_size:
            raise ConfigError("part_size must be a multiple of batch_size", where="run.part_size")


@dataclass(frozen=True)
class StudyProtocol:
    """A batch study: model, cohort, filter, outputs and how the work is cut."""

    name: str = "study"
    model: str | None = None  # checkpoint folder (the command line's --model overrides it)
    model_id: str | None = None  # when set, the checkpoint must have this id (an exact rerun)
    cohort: str | None = None  # cohort folder (--cohort overrides it)
    filter: CohortFilter = field(default_factory=CohortFilter)
    outputs: Outputs = field(default_factory=Outputs)
    run: RunOptions = field(default_factory=RunOptions)


def _yaml_times(data: dict) -> dict:
    """YAML reads unquoted dates as date objects; the protocol keeps them as ISO text."""
    flt = data.get("filter")
    if isinstance(flt, dict):
        data = {
            **data,
            "filter": {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in flt.items()},
        }
    return data


def protocol_from_mapping(data: Mapping, *, source: str | Path | None = None) -> StudyProtocol:
    """Build a protocol from parsed YAML/JSON; unknown keys and wrong types are ConfigErrors naming the key."""
    data = dict(data)
    data.pop("resolved", None)  # what a previous run recorded; checked against the run, not configured
    try:
        return from_dict(StudyProtocol, _yaml_times(data))
    except ConfigError as err:
        raise ConfigError(err.detail, path=source, where=err.where) from err


def load_protocol(path: str | Path) -> StudyProtocol:
    """Read a protocol YAML file (safe loader)."""
    return protocol_from_mapping(load_yaml(path), source=path)


@dataclass(frozen=True)
class CaseTask:
    """One selected case: where its files are and what the manifest says about it."""

    patient_id: str
    folder: str
    split: str | None = None
    study_time: dt.datetime | None = None
    sample_id: str | None = None  # a built cohort's sample (one of several of a patient); None: one row per patient

    @property
    def key(self) -> str:
        """What names the case uniquely in the study: its sample id, else its patient id."""
        return self.sample_id if self.sample_id is not None else self.patient_id


@dataclass(frozen=True)
class PlannedBatch:
    """A fixed slice of the selection: one model call."""

    index: int
    cases: tuple[CaseTask, ...]


@dataclass(frozen=True)
class Selection:
    """The cases a study runs, in manifest order, and how many rows each criterion left out."""

    cases: tuple[CaseTask, ...]
    excluded: Mapping[str, int]  # criterion -> rows it excluded (the first criterion a row failed)

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _number(value) -> float | None:
    try:
        number = float(_text(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _listed(row: Mapping) -> tuple[str, ...] | None:
    flags = {m: _text(row.get(f"has_{m}")) for m in MODALITIES}
    if all(v == "" for v in flags.values()):
        return None
    return tuple(m for m, v in flags.items() if v in ("1", "true", "True", "1.0"))


def select_cases(cohort: Cohort, flt: CohortFilter, *, manifest_path: str | Path | None = None) -> Selection:
    """The cases of `cohort` that pass `flt`; a filter on a column the manifest lacks is a ConfigError."""
    manifest: pd.DataFrame = cohort.manifest
    where = manifest_path or cohort.root / "manifest.csv"
    needed = {
        "sex": flt.sex,
        "race": flt.race,
        "ethnicity": flt.ethnicity,
        "age_years": flt.min_age is not None or flt.max_age is not None,
    }
    for column, used in needed.items():
        if used and column not in manifest.columns:
            raise ConfigError(f"the filter uses column {column}, which the manifest lacks", path=where)
    start, end = flt.time_range
    wanted_patients = set(flt.patients)
    sexes = {s.lower() for s in flt.sex}
    excluded: dict[str, int] = {}
    cases: list[CaseTask] = []
    for i, entry in enumerate(cohort.entries):
        row = manifest.iloc[i]
        listed = _listed(row)
        reason = None
        if flt.patients and entry.patient_id not in wanted_patients:
            reason = "patients"
        elif flt.splits and entry.split not in flt.splits:
            reason = "splits"
        elif flt.sex and _text(row.get("sex")).lower() not in sexes:
            reason = "sex"
        elif flt.race and _text(row.get("race")) not in flt.race:
            reason = "race"
        elif flt.ethnicity and _text(row.get("ethnicity")) not in flt.ethnicity:
            reason = "ethnicity"
        elif not _age_ok(_number(row.get("age_years")), flt):
            reason = "age"
        elif (start or end) and (
            entry.study_time is None or (start and entry.study_time < start) or (end and entry.study_time >= end)
        ):
            reason = "study_time"
        elif flt.require and listed is not None and not set(flt.require) <= set(listed):
            reason = "require"
        elif flt.limit is not None and len(cases) >= flt.limit:
            reason = "limit"
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        folder = (
            entry.folder.relative_to(cohort.root).as_posix()
            if entry.folder.is_relative_to(cohort.root)
            else str(entry.folder)
        )
        cases.append(CaseTask(entry.patient_id, folder, entry.split, entry.study_time, entry.sample_id))
    if not cases:
        raise ConfigError("the cohort filter selects no case", path=where, where="filter")
    return Selection(tuple(cases), excluded)


def _age_ok(age: float | None, flt: CohortFilter) -> bool:
    if flt.min_age is None and flt.max_age is None:
        return True
    if age is None:
        return False
    return (flt.min_age is None or age >= flt.min_age) and (flt.max_age is None or age <= flt.max_age)


def plan_batches(cases: tuple[CaseTask, ...], batch_size: int) -> list[PlannedBatch]:
    """The selection cut into fixed batches of `batch_size` (the last may be shorter)."""
    return [PlannedBatch(i // batch_size, cases[i : i + batch_size]) for i in range(0, len(cases), batch_size)]


def with_overrides(protocol: StudyProtocol, *, model: str | Path | None, cohort: str | Path | None) -> StudyProtocol:
    """The protocol with the command line's model and cohort folders (absolute), which take precedence."""
    model = model if model is not None else protocol.model
    cohort = cohort if cohort is not None else protocol.cohort
    if model is None:
        raise ConfigError("no model: give --model or name it in the protocol", where="model")
    if cohort is None:
        raise ConfigError("no cohort: give --cohort or name it in the protocol", where="cohort")
    return dataclasses.replace(protocol, model=str(Path(model).resolve()), cohort=str(Path(cohort).resolve()))
