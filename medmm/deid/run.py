"""`deidentify`: a file, a patient folder or a cohort folder de-identified into a new folder.

How the input is read: a folder holding manifest.csv (or manifest.parquet) is a cohort whose
rows name the patient folders; a folder holding input files itself (or an images/ folder)
is one patient; any other folder is a cohort with one patient per sub-folder, as
medmm.io.cohort reads it; a file is one patient. Each patient gets one pseudonym and one
date offset, used by every file of theirs. The output keeps the relative layout, with the
patient folders named by pseudonyms and any file or folder name that held an identifier or
a UID replaced. Files that cannot be de-identified are never written to the output: they are
reported with the reason (and copied to `quarantine` when one is given). Files that are not
model input (ground truth of synthetic cohorts, unknown files) are reported and not copied.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from medmm.deid import dicom as deid_dicom
from medmm.deid import fhir as deid_fhir
from medmm.deid.mapping import (
    Keys,
    PatientContext,
    PatientEntry,
    load_mapping,
    merge,
    new_secret,
    save_mapping,
)
from medmm.deid.profile import OPTIONS
from medmm.deid.tables import ManifestRow, deidentify_vitals, read_manifest_ids, rewrite_manifest
from medmm.deid.text import Identifiers, Scrubber
from medmm.errors import ConfigError, InputError
from medmm.records import Issue

MARKER = ".medmm-deid.json"
"""Written at the output root: what was applied (no patient data); lets a later run write there again."""

_MANIFESTS = ("manifest.csv", "manifest.parquet")
_INPUT_SUFFIXES = {".dcm", ".dicom", ".ima", ".json", ".ndjson", ".csv", ".tsv", ".parquet"}
_UID_NAME = re.compile(r"^\d+(?:\.\d+){3,}$")


@dataclass(frozen=True)
class RefusedFile:
    """A file not written to the output, and why (path relative to the input)."""

    source: str
    reason: str
    copied_to: str | None = None  # path relative to the quarantine folder, when copied there


@dataclass(frozen=True)
class DeidReport:
    """What a de-identification run did."""

    files_written: tuple[str, ...]  # relative to the output folder
    quarantined: tuple[RefusedFile, ...]  # could not be de-identified
    skipped: tuple[RefusedFile, ...]  # not model input: not copied
    patients: tuple[str, ...]  # pseudonyms
    attributes: Mapping[str, int] = field(default_factory=dict)  # "<kind>: <action>" -> count
    issues: tuple[Issue, ...] = ()

    def __str__(self) -> str:
        handled = sum(self.attributes.values())
        return (
            f"patients: {len(self.patients)}\nfiles written: {len(self.files_written)}\n"
            f"quarantined: {len(self.quarantined)}\nskipped: {len(self.skipped)}\n"
            f"attributes handled: {handled}\nissues: {len(self.issues)}"
        )


@dataclass(frozen=True)
class _Unit:
    """One patient's input: its original id, where its files are, and the output folder."""

    original_id: str | None  # None: read from the file itself (a single-file input)
    root: Path
    out: Path | None  # relative output folder; None: derived from the pseudonym


class _Run:
    """Accumulates the outputs of one call."""

    def __init__(self, src: Path, dst: Path, quarantine: Path | None, keys: Keys):
        self.src, self.dst, self.quarantine, self.keys = src, dst, quarantine, keys
        self.written: list[str] = []
        self.quarantined: list[RefusedFile] = []
        self.skipped: list[RefusedFile] = []
        self.counts: Counter[str] = Counter()
        self.issues: list[Issue] = []
        self.entries: list[PatientEntry] = []
        self.manifest_rows: dict[str, ManifestRow] = {}

    def rel(self, path: Path) -> str:
        return path.name if self.src.is_file() else str(path.relative_to(self.src))

    def refuse(self, path: Path, reason: str) -> None:
        copied = None
        if self.quarantine is not None:
            target = self.quarantine / self.rel(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied = str(target.relative_to(self.quarantine))
        self.quarantined.append(RefusedFile(self.rel(path), reason, copied))


def deidentify(
    src: str | Path,
    dst: str | Path,
    *,
    mapping_path: str | Path,
    secret: str | None = None,
    quarantine: str | Path | None = None,
) -> DeidReport:
    """De-identify `src` (a file, a patient folder or a cohort, recursively) into `dst`.

    DICOM: PS3.15 Annex E basic profile with the Retain Longitudinal Temporal Information
    (modified dates) and Retain Patient Characteristics options; FHIR, vitals and manifest:
    identifiers removed, pseudonyms and shifted dates. The mapping (pseudonyms, offsets, UID
    and id maps, secret) goes to `mapping_path`, which must lie outside `dst`. The same secret
    gives the same output; with none, the mapping's secret is reused or a new one is made.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    mapping_file = Path(mapping_path).resolve()
    quarantine_dir = Path(quarantine).resolve() if quarantine is not None else None
    _check_paths(src, dst, mapping_file, quarantine_dir)
    previous = load_mapping(mapping_file) if mapping_file.exists() else None
    if previous is not None and secret is not None and previous.secret != secret:
        raise ConfigError("mapping file was made with another secret; use a new mapping file", path=mapping_file)
    secret = secret if secret is not None else (previous.secret if previous else new_secret())
    run = _Run(src, dst, quarantine_dir, Keys(secret))
    save_mapping(mapping_file, merge(previous, secret, [], run.keys))  # the secret is safe before any output exists
    manifest = next((src / m for m in _MANIFESTS if src.is_dir() and (src / m).is_file()), None)
    for unit in _units(src, manifest, run):
        _patient(unit, run)
    if manifest is not None:
        out = rewrite_manifest(manifest, dst / manifest.name, run.manifest_rows)
        run.counts.update({f"table: {k}": v for k, v in out.counts.items()})
        run.issues.extend(out.issues)
        run.written.append(manifest.name)
    dst.mkdir(parents=True, exist_ok=True)
    marker = {"generator": "medmm deid", "profile": [{"code": c, "meaning": m} for c, m in OPTIONS]}
    (dst / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    save_mapping(mapping_file, merge(previous, secret, run.entries, run.keys))
    return DeidReport(
        files_written=tuple(sorted(run.written)),
        quarantined=tuple(run.quarantined),
        skipped=tuple(run.skipped),
        patients=tuple(sorted(e.pseudonym for e in run.entries)),
        attributes=dict(sorted(run.counts.items())),
        issues=tuple(run.issues),
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_paths(src: Path, dst: Path, mapping: Path, quarantine: Path | None) -> None:
    """Refuse layouts that would leak (mapping or quarantine in the output) or loop (output in input)."""
    if not src.exists():
        raise InputError("no such file or folder", path=src)
    if _inside(dst, src) or _inside(src, dst):
        raise ConfigError("output folder must lie outside the input (and not contain it)", path=dst)
    if _inside(mapping, dst):
        why = "mapping file must not lie inside the output folder (it re-identifies the data)"
        raise ConfigError(why, path=mapping)
    if src.is_dir() and _inside(mapping, src):
        raise ConfigError("mapping file must lie outside the input folder (it would be read as input)", path=mapping)
    if mapping.is_dir():
        raise ConfigError("mapping path is a folder; expected a file name", path=mapping)
    if quarantine is not None and (_inside(quarantine, dst) or _inside(dst, quarantine)):
        raise ConfigError("quarantine folder must lie outside the output folder", path=quarantine)
    if quarantine is not None and src.is_dir() and _inside(quarantine, src):
        raise ConfigError("quarantine folder must lie outside the input folder", path=quarantine)
    if dst.exists() and (not dst.is_dir() or (any(dst.iterdir()) and not (dst / MARKER).is_file())):
        why = f"output exists and is not an empty folder or an earlier output of this tool ({MARKER})"
        raise ConfigError(why, path=dst)


def _units(src: Path, manifest: Path | None, run: _Run) -> list[_Unit]:
    """The patients in `src`, and what at the top of a cohort is not part of any of them."""
    if src.is_file():
        return [_Unit(None, src, Path("."))]
    if manifest is not None:
        units, covered = [], {m for m in _MANIFESTS}
        try:
            rows = read_manifest_ids(manifest)
        except Exception as exc:  # pandas raises many kinds for malformed tables
            raise InputError(f"manifest cannot be read ({type(exc).__name__})", path=manifest) from None
        for i, (pid, folder) in enumerate(rows):
            root = (src / folder).resolve()
            if not _inside(root, src) or root == src or not root.is_dir():
                why = "folder missing or outside the cohort; patient skipped"
                run.issues.append(Issue(str(manifest), f"row {i + 2}", why, "skipped"))
                continue
            units.append(_Unit(pid, root, None))
            covered.add(root.relative_to(src).parts[0])
        for child in sorted(src.iterdir()):
            if child.name not in covered:
                _skip_tree(child, "not a patient folder of the manifest: not copied", run)
        return units
    if _is_patient_folder(src):
        return [_Unit(src.name, src, Path("."))]
    units = []
    for child in sorted(src.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            units.append(_Unit(child.name, child, None))
        else:
            _skip_tree(child, "not inside a patient folder: not copied", run)
    return units


def _is_patient_folder(folder: Path) -> bool:
    """A folder with input files of its own, or an images/ folder, is one patient."""
    from medmm.io.dicom import is_dicom_file

    for child in folder.iterdir():
        if child.is_dir() and child.name.lower() == "images":
            return True
        if child.is_file() and not child.name.startswith(".") and child.name.lower() not in _MANIFESTS:
            if child.suffix.lower() in _INPUT_SUFFIXES and not child.name.lower().startswith("truth"):
                return True
            if is_dicom_file(child):
                return True
    return False


def _skip_tree(path: Path, reason: str, run: _Run) -> None:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    run.skipped.extend(RefusedFile(run.rel(f), reason) for f in files)


def _patient(unit: _Unit, run: _Run) -> None:
    """De-identify one patient's files."""
    from medmm.io.study import classify_files

    files = classify_files(unit.root)
    found = Identifiers()
    fhir_ids: set[str] = set()
    unreadable_fhir: set[Path] = set()
    for f in files.fhir:
        try:
            fhir_ids |= deid_fhir.collect_identifiers(f, found)
        except (OSError, UnicodeDecodeError, ValueError):
            unreadable_fhir.add(f)
    dicom_ids = sorted({pid for f in files.dicom for pid in deid_dicom.collect_identifiers(f, found)})
    original = unit.original_id or (dicom_ids[0] if dicom_ids else None) or (sorted(fhir_ids)[0] if fhir_ids else None)
    original = original or unit.root.stem
    found.add_id(original)
    key = run.keys.patient(original)
    if any(e.pseudonym == key.pseudonym and e.original_id != original for e in run.entries):
        raise ConfigError("two patients received the same pseudonym; use another secret")
    ctx = PatientContext(run.keys, key, Scrubber(found, key.offset_days))
    out_root = run.dst / (unit.out if unit.out is not None else _patient_folder(unit, run, ctx))
    many_patients = len(fhir_ids) > 1

    def target(path: Path) -> Path:
        rel = Path(path.name) if unit.root.is_file() else path.relative_to(unit.root)
        return out_root / _safe_path(rel, ctx)

    for f in files.dicom:
        outcome = deid_dicom.deidentify_dicom(f, target(f), ctx)
        _record(f, target(f), outcome.refused, outcome.counts, outcome.issues, "dicom", run)
    for f in files.fhir:
        if f in unreadable_fhir or many_patients:
            many = f"holds {len(fhir_ids)} patients; split it per patient first"
            run.refuse(f, "not readable as FHIR JSON" if f in unreadable_fhir else many)
            continue
        outcome = deid_fhir.deidentify_fhir(f, target(f), ctx, fhir_ids)
        _record(f, target(f), outcome.refused, outcome.counts, outcome.issues, "fhir", run)
    for f in files.vitals:
        table = deidentify_vitals(f, target(f), key.offset_days)
        _record(f, target(f), table.refused, table.counts, table.issues, "table", run)
    for f in files.ignored:
        truth = f.name.lower().startswith("truth")
        run.skipped.append(
            RefusedFile(
                run.rel(f),
                "synthetic ground truth: not copied"
                if truth
                else "not a recognised input (DICOM, FHIR, vitals table): not copied",
            )
        )
    entry = PatientEntry(original, key.pseudonym, key.offset_days, tuple(dicom_ids), tuple(sorted(fhir_ids)))
    run.entries.append(entry)
    if unit.original_id is not None:
        folder = str(out_root.relative_to(run.dst))
        run.manifest_rows[unit.original_id] = ManifestRow(key.pseudonym, folder, key.offset_days)


def _patient_folder(unit: _Unit, run: _Run, ctx: PatientContext) -> Path:
    """The patient's output folder: the input's relative path, its last part the pseudonym."""
    rel = unit.root.relative_to(run.src)
    return Path(*(_safe_part(p, ctx) for p in rel.parts[:-1]), ctx.patient.pseudonym)


def _safe_path(rel: Path, ctx: PatientContext) -> Path:
    """A relative path with every part that held a UID or an identifier replaced (file suffixes kept)."""
    parts = [_safe_part(p, ctx) for p in rel.parts[:-1]]
    if rel.parts:
        name = Path(rel.parts[-1])
        parts.append(_safe_part(name.stem, ctx) + name.suffix)
    return Path(*parts) if parts else Path(".")


def _safe_part(part: str, ctx: PatientContext) -> str:
    if _UID_NAME.match(part):
        return ctx.keys.uid(part)
    if part == ctx.patient.original_id:
        return ctx.patient.pseudonym
    if ctx.scrubber.contains_identifier(part):
        return "f" + ctx.keys.token("name", part)
    return part


def _record(
    src: Path, out: Path, refused: str | None, counts: Counter[str], issues: list[Issue], kind: str, run: _Run
) -> None:
    """A handler's outcome into the run: refused (and quarantined), or written and counted."""
    if refused is not None:
        run.refuse(src, refused)
        return
    run.written.append(str(out.relative_to(run.dst)))
    run.counts.update({f"{kind}: {k}": v for k, v in counts.items()})
    run.issues.extend(issues)
