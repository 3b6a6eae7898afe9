"""The Task record: which samples a population yields, what each sample holds, and its labels.

A Task is the one place a diagnosis or a vital-sign channel is named. It says how index times
are chosen, which window before each index time each modality reads, which codes make a label
positive and over what horizon, which vital-sign channels go on the grid, and which demographic
attributes audits group by. Tasks are frozen: read one from YAML with
:func:`medmm.tasks.load_task`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from medmm.codes import VitalSign
from medmm.records import Label

INDEX_KINDS = ("encounter", "last_encounter", "imaging_study", "manifest_column")
INACTIVE_RULES = ("count", "ignore")  # how resolved / inactive / remission Conditions count
INACTIVE_STATUSES = frozenset({"inactive", "resolved", "remission"})
AUDIT_ATTRIBUTES = ("sex", "age_band", "race", "ethnicity", "birth_sex")


@dataclass(frozen=True)
class IndexRule:
    """How index times are chosen for one patient.

    `encounter`: the start of each Encounter whose class code is in `classes` and whose type
    codes meet `types` (an empty list puts no condition on that part); `last_encounter`: the
    start of the latest such Encounter; `imaging_study`: each ImagingStudy's `started`;
    `manifest_column`: the date in the manifest column `column`.
    """

    kind: str
    classes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    column: str | None = None


@dataclass(frozen=True)
class NotesWindow:
    """Notes dated within `days` before the index time (None: no notes are read)."""

    days: float | None = None
    include_index: bool = False


@dataclass(frozen=True)
class VitalsWindow:
    """The vital-sign grid: `hours` before the index in steps of `step_minutes`, or, with
    `per_encounter`, one step per Encounter starting within `days` before the index."""

    hours: float | None = None
    step_minutes: float | None = None
    per_encounter: bool = False
    days: float | None = None
    include_index: bool = False

    @property
    def span(self) -> timedelta:
        """How far before the index the grid reaches."""
        if self.per_encounter:
            return timedelta(days=self.days or 0.0)
        return timedelta(hours=self.hours or 0.0)


@dataclass(frozen=True)
class ImagesWindow:
    """Imaging studies started within `days` before the index (0: only a study at the index)."""

    days: float | None = None
    include_index: bool = True


@dataclass(frozen=True)
class Horizon:
    """When a Condition's onset makes a label positive, relative to the index time.

    Without `calendar_days`, onset must lie in [index - before_days, index + after_days]; with it,
    the onset's UTC date must lie within that many days of the index's UTC date (0 and 0: the
    same day). None on either side puts no bound there. With `encounter_diagnosis`, a Condition
    recorded at the index Encounter (Condition.encounter) counts whatever its onset.
    """

    before_days: float | None = None
    after_days: float | None = None
    calendar_days: bool = False
    encounter_diagnosis: bool = False

    def holds(self, onset: datetime, index: datetime) -> bool:
        """Whether an onset time falls within the horizon around `index` (both aware)."""
        if self.calendar_days:
            days = (onset.date() - index.date()).days
            return (self.before_days is None or days >= -self.before_days) and (
                self.after_days is None or days <= self.after_days
            )
        low_ok = self.before_days is None or onset >= index - timedelta(days=self.before_days)
        high_ok = self.after_days is None or onset <= index + timedelta(days=self.after_days)
        return low_ok and high_ok


@dataclass(frozen=True)
class LabelWords:
    """How text speaks of a label: what the language model and the grounding of its words know of it.

    `synonyms`: other words a question may name it by (its display always counts); `evidence`:
    per modality (image, vitals, notes), the words an impression gives as support; `image_findings`:
    radiograph findings an impression may state for it, each true only when the image branch's own
    score for the label reaches its threshold; `image_terms`: the words the independent verifier
    takes as a radiograph claim about it (a sentence containing one). All empty: the label is named
    by its display only and has no finding words.
    """

    synonyms: tuple[str, ...] = ()
    evidence: tuple[tuple[str, str], ...] = ()  # (modality, words)
    image_findings: tuple[str, ...] = ()
    image_terms: tuple[str, ...] = ()

    def evidence_for(self, modality: str) -> str | None:
        return dict(self.evidence).get(modality)


class Vocabulary(dict):
    """Label name -> display name, in label order (a plain dict to read), carrying how text speaks of
    the labels (their LabelWords): what prompts, grounding and the verifier take a task's words from."""

    def __init__(self, labels: Sequence[LabelSpec] = ()):
        super().__init__((spec.name, spec.display) for spec in labels)
        self.labels = tuple(labels)

    def __reduce__(self):
        return (Vocabulary, (self.labels,))

    @property
    def lower(self) -> dict[str, str]:
        """Label name -> display name in lower case (how impressions and answers write it)."""
        return {name: display.lower() for name, display in self.items()}

    @property
    def evidence(self) -> dict[str, dict[str, str]]:
        """Label name -> {modality: the words an impression gives as support}, for labels that have them."""
        return {spec.name: dict(spec.words.evidence) for spec in self.labels if spec.words.evidence}

    @property
    def question_words(self) -> dict[str, tuple[str, ...]]:
        """Label name -> the words a question may name it by (its display, lower-case, then its synonyms)."""
        return {spec.name: (spec.display.lower(), *spec.words.synonyms) for spec in self.labels}

    @property
    def image_words(self) -> dict[str, str]:
        """Radiograph finding words -> the label whose image score must reach its threshold for them to be stated."""
        return {phrase: spec.name for spec in self.labels for phrase in spec.words.image_findings}

    @property
    def image_terms(self) -> tuple[tuple[str, str], ...]:
        """(term, label) pairs the verifier reads radiograph claims by."""
        return tuple((term, spec.name) for spec in self.labels for term in spec.words.image_terms)


@dataclass(frozen=True)
class LabelSpec:
    """One label: positive when a Condition coded with one of these codes has onset in the horizon.

    SNOMED CT codes match exactly; ICD-10-CM codes match as categories: `J18` matches `J18`,
    `J18.9` and `J189` (compared upper-case, without dots).
    """

    name: str
    display: str
    snomed: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()
    words: LabelWords = None  # type: ignore[assignment]  # how text speaks of the label (set to LabelWords() when absent)

    def __post_init__(self) -> None:
        if self.words is None:
            object.__setattr__(self, "words", LabelWords())

    def matches(self, system: str, code: str) -> bool:
        """Whether a coding (system URL, code) is in this label's value sets."""
        system = system.lower()
        if "snomed" in system:
            return code.strip() in self.snomed
        if "icd-10" in system or "icd10" in system:
            given = icd_key(code)
            return any(given.startswith(icd_key(c)) for c in self.icd10)
        return False


def icd_key(code: str) -> str:
    """An ICD-10 code for prefix comparison: upper-case, without dots or spaces."""
    return code.strip().upper().replace(".", "").replace(" ", "")


@dataclass(frozen=True)
class Task:
    """Everything that turns a population into samples: see the module docstring."""

    name: str
    description: str
    index: IndexRule
    notes: NotesWindow
    vitals: VitalsWindow
    images: ImagesWindow
    labels: tuple[LabelSpec, ...]
    horizon: Horizon
    inactive_conditions: str  # "count" | "ignore"
    channels: tuple[VitalSign, ...]
    audit_attributes: tuple[str, ...]
    age_bands: tuple[float, ...]  # lower bounds (years) of the age bands after the first
    source: str = ""  # the file the task was read from

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.labels)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(sign.name for sign in self.channels)

    @property
    def displays(self) -> Vocabulary:
        """Label name -> display name, in label order; the mapping also carries the labels' words."""
        return Vocabulary(self.labels)

    def label(self, name: str) -> LabelSpec:
        """The label called `name` (KeyError when the task has none)."""
        for spec in self.labels:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def display(self, name: str) -> str:
        """A label's display name; the name itself for a name the task does not have."""
        try:
            return self.label(name).display
        except KeyError:
            return name

    def positives(self, labels: "tuple[Label, ...] | None") -> tuple[str, ...]:
        """The task's label names (in task order) that a study's known Conditions make positive.

        A Condition counts when any of its codings is in the label's value sets; with
        `inactive_conditions: ignore`, resolved, inactive and remission Conditions do not count
        (refuted and entered-in-error ones never reach a study's labels).
        """
        found = []
        for spec in self.labels:
            for lab in labels or ():
                if self.inactive_conditions == "ignore" and (lab.status or "") in INACTIVE_STATUSES:
                    continue
                codings = lab.codings or ((lab.system, lab.code),)
                if any(spec.matches(system, code) for system, code in codings):
                    found.append(spec.name)
                    break
        return tuple(found)

    def age_band(self, age_years: float | None) -> str | None:
        """The age band label ("18-39", "80+") an age falls in, or None when the age is unknown."""
        return age_band_label(age_years, self.age_bands)


def age_band_label(age_years: object, bands: Sequence[float]) -> str | None:
    """The label ("0-17", "18-39", "80+") of the band an age falls in, the bands starting at 0 and at
    each of `bands` (increasing); None when the age is missing, not a number, or negative."""
    try:
        age = float(age_years)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(age) or age < 0:
        return None
    edges = (0.0, *(float(b) for b in bands))
    for low, high in zip(edges, edges[1:]):
        if age < high:
            return f"{low:g}-{high - 1:g}"
    return f"{edges[-1]:g}+"
