"""Studies and PatientFacts built by hand for the grounding tests: every value is chosen here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from medmm.codes import VITAL_SIGNS
from medmm.grounding import PatientFacts
from medmm.grounding.notes import NoteText
from medmm.grounding.vitals import adult_thresholds_apply, summarise
from medmm.records import ClinicalNote, Demographics, Study, VitalSeries
from medmm.synth.diagnoses import DIAGNOSIS_NAMES

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)  # the grid's first step
CHANNELS = tuple(v.name for v in VITAL_SIGNS)
UNITS = tuple(v.unit for v in VITAL_SIGNS)


def grid(steps: int = 6, **columns) -> VitalSeries:
    """An hourly grid from T0; each keyword is a channel with one value per step (None: not observed)."""
    values = np.full((steps, len(CHANNELS)), np.nan, dtype=np.float32)
    for name, column in columns.items():
        for t, v in enumerate(column):
            if v is not None:
                values[t, CHANNELS.index(name)] = v
    return VitalSeries(
        start=T0, step_seconds=3600.0, channels=CHANNELS, units=UNITS, values=values, mask=~np.isnan(values)
    )


def study(
    *, age: float | None = 60.0, vitals: VitalSeries | None = None, notes: tuple[str, ...] = (), study_id: str = "s1"
) -> Study:
    records = tuple(
        ClinicalNote(text=t, time=T0 + timedelta(hours=k), type_code="11506-3", source_id=f"DocumentReference/n{k}")
        for k, t in enumerate(notes)
    )
    demographics = Demographics(patient_id="p1", age_years=age)
    return Study(
        study_id=study_id, demographics=demographics, notes=records, vitals=vitals, time=T0 + timedelta(hours=6)
    )


def facts(
    s: Study,
    probabilities: dict[str, float] | None = None,
    *,
    operating: float = 0.5,
    conformal_set: tuple[str, ...] = (),
    coverage: float | None = 0.9,
    image_scores: dict[str, float] | None = None,
    read_chars: int | None = None,
) -> PatientFacts:
    """PatientFacts of a hand-made study: every note read whole unless `read_chars` says how much."""
    p = {n: 0.01 for n in DIAGNOSIS_NAMES} | (probabilities or {})
    notes = tuple(
        NoteText(f"progress note {k}", n.text, len(n.text) if read_chars is None else read_chars, n.time)
        for k, n in enumerate(s.notes)
    )
    return PatientFacts(
        study=s,
        inputs=(),
        vitals=summarise(s.vitals),
        notes=notes,
        image_used=image_scores is not None,
        image_scores=image_scores or {},
        image_thresholds={n: 0.5 for n in DIAGNOSIS_NAMES},
        image_source="image-only head",
        probabilities=p,
        ranked=tuple(sorted(p, key=lambda n: -p[n])),
        operating={n: operating for n in DIAGNOSIS_NAMES},
        calibrated=True,
        conformal_set=conformal_set,
        coverage=coverage,
        adult=adult_thresholds_apply(s),
    )
