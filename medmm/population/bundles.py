"""Reading a folder of per-patient FHIR Bundles (Synthea's `output/fhir/*.json`), one file at a time.

Transaction, batch and collection Bundles are read alike. Synthea's `hospitalInformation*` and
`practitionerInformation*` Bundles hold organisations and clinicians, no patient: they are
skipped and counted. A file that is not JSON or not a Bundle is counted and skipped; the other
files are read. Only one file is held in memory at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from medmm.errors import FhirError
from medmm.population.record import (
    PATIENT_TYPES,
    PatientRecord,
    PopulationReport,
    build_record,
    normalise_references,
    patient_reference,
    validated,
)

SHARED_BUNDLE_PREFIXES = ("hospitalInformation", "practitionerInformation")
BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset", "document", "transaction-response", "batch-response")


def bundle_files(folder: str | Path) -> list[Path]:
    """The .json files of a folder (not recursive), sorted by name; FhirError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise FhirError("bundle folder not found", path=root)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(".json"))
    if not files:
        raise FhirError("folder holds no .json Bundle", path=root)
    return files


def iter_bundle_folder(folder: str | Path, report: PopulationReport | None = None) -> Iterator[PatientRecord]:
    """Yield one PatientRecord per patient of each per-patient Bundle in `folder`."""
    report = report if report is not None else PopulationReport()
    for path in bundle_files(folder):
        if path.name.startswith(SHARED_BUNDLE_PREFIXES):
            report.add("bundle: shared organisations/clinicians bundle skipped (no patient)", str(path))
            continue
        resources = _bundle_resources(path, report)
        if resources is not None:
            yield from records_from_resources(resources, str(path), report)


def _bundle_resources(path: Path, report: PopulationReport) -> list[dict[str, Any]] | None:
    """The entries' resources of one Bundle file, references normalised; None (counted) if unreadable."""
    try:
        bundle = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        report.add("bundle: file is not readable JSON; skipped", str(path))
        return None
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or not isinstance(bundle.get("entry"), list)
    ):
        report.add("bundle: file is not a FHIR Bundle with a list of entries; skipped", str(path))
        return None
    if bundle.get("type") not in BUNDLE_TYPES:
        report.add("bundle: unexpected Bundle.type; entries read anyway", str(path), "Bundle.type")
    url_map: dict[str, str] = {}
    found = []
    for i, item in enumerate(bundle["entry"]):
        res = item.get("resource") if isinstance(item, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            report.add("bundle: entry without a resource; skipped", str(path), f"entry {i}")
            continue
        rid = res.get("id")
        if isinstance(rid, str) and rid and isinstance(item.get("fullUrl"), str):
            url_map[item["fullUrl"].strip()] = f"{res['resourceType']}/{rid}"
        found.append((i, res))
    return [_with_place(normalise_references(res, url_map), f"entry {i}") for i, res in found]


def _with_place(resource: dict[str, Any], where: str) -> dict[str, Any]:
    resource["_where"] = where  # removed again by records_from_resources
    return resource


def records_from_resources(
    resources: list[dict[str, Any]], source: str, report: PopulationReport
) -> Iterator[PatientRecord]:
    """Group one file's resources by their Patient and yield a PatientRecord for each Patient."""
    patients: dict[str, Mapping[str, Any]] = {}
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for res in resources:
        where = res.pop("_where", "")
        rtype = res["resourceType"]
        if rtype not in PATIENT_TYPES:
            report.add(f"resource: {rtype} not read")
            continue
        owner = patient_reference(res)
        if owner is None:
            report.add(f"resource: {rtype} without a Patient reference; skipped", source, where)
            continue
        if not _valid(res, source, where, report):
            continue
        if rtype == "Patient":
            patients[owner] = res
        else:
            by_patient.setdefault(owner, []).append(res)
    for owner, patient in patients.items():
        yield build_record(patient, iter(by_patient.pop(owner, [])), source)
    for owner, items in by_patient.items():
        report.add("resource: about a Patient not in the input; skipped", source, owner, n=len(items))


def _valid(res: Mapping[str, Any], source: str, where: str, report: PopulationReport) -> bool:
    """Patients and Conditions must pass the R4B models (see medmm.population.record)."""
    if res["resourceType"] not in ("Patient", "Condition"):
        return True
    model, field = validated(res)
    if model is None:
        report.add(f"resource: invalid {res['resourceType']} ({field}); skipped", source, where)
        return False
    return True
