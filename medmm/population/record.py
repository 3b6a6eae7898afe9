"""One patient of a population, and the running report of what reading a population skipped.

Population readers work on plain JSON, not fhir.resources models: a Synthea patient holds
thousands of resources and a population thousands of patients, and validating every
Observation with the models costs far more than reading it. The resources a sample is built
from are instead read through small accessors that check each field's type and report what is
malformed; the Patient and each Condition, whose content decides demographics and labels, are
validated with the R4B models (:func:`validated`), and an invalid one is reported and skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from medmm.io.fhir_models import r4b_validate
from medmm.records import Issue

# Resource types a sample is built from; a reader groups these by patient and counts the others.
PATIENT_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "DocumentReference",
    "DiagnosticReport",
    "ImagingStudy",
)
_EXAMPLES_PER_KIND = 20
_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
_PARTIAL_DATE = re.compile(r"(\d{4})(?:-(\d{2}))?")


@dataclass(frozen=True)
class PatientRecord:
    """One patient's resources grouped by type, references normalised to relative `Type/id`.

    `resources[type]` is sorted by resource id so that the same patient read from per-patient
    Bundles and from a Bulk Data export gives the same record.
    """

    patient_id: str
    patient: Mapping[str, Any]
    resources: Mapping[str, tuple[Mapping[str, Any], ...]]
    source: str

    def of(self, rtype: str) -> tuple[Mapping[str, Any], ...]:
        """The patient's resources of one type (empty when none)."""
        return self.resources.get(rtype, ())


@dataclass
class PopulationReport:
    """What reading and sampling a population counted, skipped or assumed (never silently).

    `counts` holds one number per kind ("observation: duplicate (same code, time and
    encounter)"); `examples` keeps the first few Issues of each kind, so memory stays bounded
    however large the population.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Issue]] = field(default_factory=dict)

    def add(self, kind: str, source: str = "", where: str = "", n: int = 1) -> None:
        """Count `n` occurrences of `kind`, keeping an example with its place."""
        self.counts[kind] += n
        shown = self.examples.setdefault(kind, [])
        if len(shown) < _EXAMPLES_PER_KIND and (source or where):
            shown.append(Issue(source=source, where=where, message=kind, kind="skipped"))

    def merge(self, other: "PopulationReport") -> None:
        for kind, n in other.counts.items():
            self.counts[kind] += n
            shown = self.examples.setdefault(kind, [])
            shown.extend(other.examples.get(kind, [])[: _EXAMPLES_PER_KIND - len(shown)])

    def lines(self) -> list[str]:
        """One line per kind, most frequent first."""
        return [f"{n:>8}  {kind}" for kind, n in self.counts.most_common()]


def type_id_of(reference: Any) -> str | None:
    """'Type/id' of a relative or absolute literal reference; None for urn: and other forms."""
    if not isinstance(reference, str):
        return None
    m = _TYPE_ID.search(reference.strip())
    return f"{m[1]}/{m[2]}" if m else None


def normalise_references(obj: Any, url_map: Mapping[str, str]) -> Any:
    """A copy of a resource whose `reference` strings are `Type/id` where they can be.

    `url_map` maps Bundle fullUrls (`urn:uuid:...`, absolute URLs) to `Type/id`; other literal
    references keep their trailing `Type/id`; conditional and contained references are kept as given.
    """
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "reference" and isinstance(value, str):
                out[key] = url_map.get(value.strip()) or (type_id_of(value) if "?" not in value else None) or value
            else:
                out[key] = normalise_references(value, url_map)
        return out
    if isinstance(obj, list):
        return [normalise_references(v, url_map) for v in obj]
    return obj


def patient_reference(resource: Mapping[str, Any]) -> str | None:
    """The `Type/id` of the Patient a resource is about (subject, else patient), or None."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) and rid else None
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            found = type_id_of(ref.get("reference"))
            if found and found.startswith("Patient/"):
                return found
    return None


def build_record(patient: Mapping[str, Any], resources: Iterator[Mapping[str, Any]], source: str) -> PatientRecord:
    """Group a patient's resources by type, each type sorted by id (see PatientRecord)."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for res in resources:
        grouped.setdefault(res["resourceType"], []).append(res)
    ordered = {t: tuple(sorted(v, key=lambda r: str(r.get("id", "")))) for t, v in sorted(grouped.items())}
    return PatientRecord(patient_id=str(patient["id"]), patient=patient, resources=ordered, source=source)


def validated(resource: Mapping[str, Any]) -> tuple[Any, str | None]:
    """(R4B model, None), or (None, the first failing field) when the models reject the resource."""
    model, fields = r4b_validate(resource)
    return (model, None) if model is not None else (None, fields[0])


def parse_time(value: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware UTC datetime (naive and date-only: UTC).

    Partial dates ("2020", "2020-03") give the first instant of the period; anything else None.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    m = _PARTIAL_DATE.fullmatch(text)
    if m:
        return datetime(int(m[1]), int(m[2] or 1), 1, tzinfo=timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        return None


def codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept given as JSON; malformed parts are left out."""
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [
        (c.get("system") if isinstance(c.get("system"), str) else "", c["code"].strip())
        for c in concept["coding"]
        if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"].strip()
    ]
