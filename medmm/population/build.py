"""Building a cohort from a population: one folder per sample in medmm's cohort layout.

`build_cohort` reads each source (a FHIR Bulk Data export or a folder of per-patient Bundles)
one patient at a time, draws the task's samples from that patient, and writes each sample as
a folder that :class:`medmm.io.cohort.Cohort` and :func:`medmm.io.study.load_study` read as
they read any patient folder:

- ``record.json``: an R4 collection Bundle with the Patient, the sample's notes (the task's
  notes window, deduplicated) as DocumentReferences with a base64 text/plain attachment and
  the note's date, and the Conditions that made the sample's labels, coded as in the source;
- ``vitals.csv``: the readings the sample's vital-sign grid is made of, long format
  (time, code, value, unit, and for a per-encounter grid the step: the reading's encounter
  start), in canonical units; absent when there are none;
- ``images/``: the studies joined to the sample from an image source (a DICOM folder or a
  DICOMweb server: by ImagingStudy UID, accession or PatientID and time; see
  :mod:`medmm.population.imaging`), one ``study-NNN/`` sub-folder each; absent when none joins.

A folder's name is a hash of the patient id and the index time (no identifier in a path). The
cohort root holds ``manifest.csv`` (one row per sample), ``task.yaml`` (a copy of the task),
``cohort_report.json`` and ``cohort_report.md`` (what was built, what was left out and why,
and what is needed to repeat the build: task and source hashes, version, seed, splits) and
``build.json`` (when it was built: the one file that differs between two identical builds).

Splits are by patient. Patients are put in two strata (any positive label in any of their
samples, or none); within a stratum they are ordered by SHA-256 of the seed and the patient
id (a seeded shuffle that does not depend on the order the sources list them), and cut at the
cumulative split fractions (rounded). The same sources, task and seed give the same splits.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import medmm
from medmm.errors import CohortError, ConfigError, FhirError
from medmm.population.bulk import NDJSON_SUFFIXES, export_files, iter_bulk_export
from medmm.population.bundles import bundle_files, iter_bundle_folder
from medmm.population.folder import grid_readings, write_sample
from medmm.population.hygiene import Reading, clean_patient
from medmm.population.imaging import copy_studies, join_images, open_images
from medmm.population.record import PatientRecord, PopulationReport
from medmm.population.samples import Sample, _sample, index_times
from medmm.tasks import Task, load_task

MANIFEST = "manifest.csv"
REPORT_JSON = "cohort_report.json"
REPORT_MD = "cohort_report.md"
TASK_COPY = "task.yaml"
BUILD_INFO = "build.json"
REPORT_FORMAT = "medmm-cohort-build/1"
SPLIT_NAMES = ("train", "val", "test")
MANIFEST_COLUMNS = (
    "patient_id",
    "folder",
    "sample_id",
    "split",
    "study_time",
    "sex",
    "age_years",
    "race",
    "ethnicity",
    "birth_sex",
    "labels",
    "has_image",
    "has_notes",
    "has_vitals",
)
_FOLDER_HEX = 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CohortBuild:
    """What a build wrote: where, how many patients and samples, and the report it wrote."""

    out: Path
    patients: int
    samples: int
    per_split: Mapping[str, int]  # samples per split
    report: Mapping[str, Any]  # the content of cohort_report.json


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "bulk" | "bundles"
    files: tuple[Path, ...]


# ---------------------------------------------------------------------------------------------
# public entry point


class _SampleRows:
    """The manifest rows of a build, kept on disk (SQLite in a temporary folder) rather than in memory,
    so a build's memory does not grow with its number of samples; read back sorted for the manifest."""

    def __init__(self, folder: Path):
        self._db = sqlite3.connect(folder / "rows.sqlite")
        self._db.execute(
            "CREATE TABLE rows (folder TEXT PRIMARY KEY, patient_id TEXT, study_time TEXT, sample_id TEXT, row TEXT)"
        )
        self.count = 0

    def has_folder(self, folder: str) -> bool:
        return self._db.execute("SELECT 1 FROM rows WHERE folder = ?", (folder,)).fetchone() is not None

    def add(self, row: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
            (row["folder"], row["patient_id"], row["study_time"], row["sample_id"], json.dumps(row)),
        )
        self.count += 1

    def sorted_rows(self) -> Iterator[dict[str, Any]]:
        """Every row, by patient, index time and sample id."""
        cursor = self._db.execute("SELECT row FROM rows ORDER BY patient_id, study_time, sample_id")
        for (text,) in cursor:
            yield json.loads(text)

    def close(self) -> None:
        self._db.close()


class _Tally:
    """What the report counts over the manifest rows, gathered in one pass as they are written."""

    def __init__(self):
        self.samples = 0
        self.positives: Counter[str] = Counter()
        self.without_positive = 0
        self.coverage: Counter[str] = Counter()
        self.samples_by_split: Counter[str] = Counter()
        self.patients_with_samples: set[str] = set()

    def add(self, row: Mapping[str, Any]) -> None:
        self.samples += 1
        names = [name for name in row["labels"].split(";") if name]
        self.positives.update(names)
        self.without_positive += not names
        for key in ("has_notes", "has_vitals", "has_image"):
            self.coverage[key] += int(row[key])
        self.samples_by_split[row["split"]] += 1
        self.patients_with_samples.add(row["patient_id"])


def build_cohort(
    sources: Sequence[str | Path],
    task: Task | str | Path,
    out: str | Path,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    progress: bool = True,
    index_table: str | Path | None = None,
    images: str | Path | None = None,
) -> CohortBuild:
    """Build a cohort in `out` from `sources` under `task` (see the module docstring).

    `index_table` is a CSV with a `patient_id` column and the column a `manifest_column` task
    takes its index times from. `images` is a DICOM folder or a DICOMweb URL whose studies are
    joined to the samples (medmm.population.imaging). `out` must be absent, empty or a previous
    build (replaced).
    """
    task = task if isinstance(task, Task) else load_task(task)
    task_text = _task_text(task)
    fractions = _fractions(splits)
    found = [detect_source(p) for p in sources]
    if not found:
        raise ConfigError("no source given (expected a Bulk Data export or a folder of Bundles)", where="--source")
    table = _read_index_table(index_table) if index_table is not None else None
    if task.index.kind == "manifest_column" and table is None:
        raise ConfigError(
            f"task {task.name!r} takes its index times from column {task.index.column!r}: give an index table",
            where="--index-table",
        )
    root = Path(out)
    _prepare(root)

    report = PopulationReport()
    seen_patients: set[str] = set()  # ids only: what the patient-level splits need
    positive_patients: set[str] = set()
    warnings: Counter[str] = Counter()
    images_in_window = 0
    with tempfile.TemporaryDirectory(prefix="medmm-build-") as scratch:
        rows = _SampleRows(Path(scratch))
        source = None if images is None or task.images.days is None else open_images(images, scratch, report)
        try:
            for n, record in enumerate(_records(found, report), start=1):
                if record.patient_id in seen_patients:
                    report.add(
                        "exclusion: patient already read from an earlier source; later copy skipped", record.source
                    )
                    continue
                seen_patients.add(record.patient_id)
                patient = clean_patient(record, task.channels, report)
                row_in = (table or {}).get(record.patient_id)
                if table is not None and row_in is None and task.index.kind == "manifest_column":
                    report.add(
                        "exclusion: patient not in the index table", record.source, f"Patient/{record.patient_id}"
                    )
                    continue
                for when, where in index_times(task, patient, report, row_in):
                    sample = _sample(task, patient, when, where, report)
                    key = f"{sample.patient_id}|{sample.index_time.isoformat()}"
                    sample_id = sample.sample_id
                    if rows.has_folder(_folder_name(key)):  # two index resources at the same time
                        key, sample_id = f"{key}|{where}", f"{sample_id}#{where}"
                        report.add(
                            "index: more than one index at the same time; each kept as its own sample",
                            record.source,
                            where,
                        )
                    folder = _folder_name(key)
                    readings = grid_readings(task, patient, when)
                    write_sample(root / folder, record, sample, readings, task.channels)
                    row = _row(sample, sample_id, folder, readings)
                    joined = [] if source is None else join_images(source, task, patient, when, sample.images, report)
                    row["has_image"] = int(copy_studies(joined, root / folder) > 0)
                    rows.add(row)
                    if any(sample.labels.values()):
                        positive_patients.add(sample.patient_id)
                    warnings.update(w.message for w in sample.warnings)
                    wanted = {s.study_uid or s.id for s in sample.images}
                    images_in_window += bool(wanted - {j.study_uid for j in joined})
                if progress and n % 100 == 0:
                    print(f"  {n} patients read, {rows.count} samples", file=sys.stderr)

            split_of = assign_splits(sorted(seen_patients), positive_patients, fractions, seed)
            tally = _Tally()
            with (root / MANIFEST).open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(MANIFEST_COLUMNS)
                for row in rows.sorted_rows():
                    row["split"] = split_of[row["patient_id"]]
                    writer.writerow([row[c] for c in MANIFEST_COLUMNS])
                    tally.add(row)
        finally:
            rows.close()
            if source is not None:
                source.close()
    (root / TASK_COPY).write_bytes(task_text)
    result = _report(
        task,
        task_text,
        found,
        table_hash=_table_hash(index_table),
        tally=tally,
        patients=seen_patients,
        split_of=split_of,
        fractions=fractions,
        seed=seed,
        population=report,
        warnings=warnings,
        images_in_window=images_in_window,
    )
    (root / REPORT_JSON).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (root / REPORT_MD).write_text(render_report(result), encoding="utf-8")
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    (root / BUILD_INFO).write_text(json.dumps({"created": created, "format": REPORT_FORMAT}) + "\n", encoding="utf-8")
    if progress:
        print(f"  {len(seen_patients)} patients, {tally.samples} samples written to {root}", file=sys.stderr)
    per_split = {s: tally.samples_by_split[s] for s in SPLIT_NAMES}
    return CohortBuild(out=root, patients=len(seen_patients), samples=tally.samples, per_split=per_split, report=result)


def record_samples(
    path: str | Path, task: Task | str | Path, out: str | Path, *, latest: bool = True
) -> list[tuple[Sample, Path]]:
    """A raw record's samples under `task`, each written to a folder under `out` (the cohort layout),
    with the folder: what `medmm predict --task` reads. `path` is a Bundle file, a folder of Bundles
    or a Bulk Data export; with `latest`, only each patient's latest sample. A task whose index is a
    manifest column has no index in a raw record (ConfigError)."""
    task = task if isinstance(task, Task) else load_task(task)
    if task.index.kind == "manifest_column":
        raise ConfigError(
            f"task {task.name!r} takes its index times from a manifest column, which a raw record has none of",
            where="--task",
        )
    root, out = Path(path), Path(out)
    with tempfile.TemporaryDirectory(prefix="medmm-record-") as scratch:
        if root.is_file():  # one Bundle: a folder of one
            shutil.copyfile(root, Path(scratch) / (root.stem + ".json"))
            root = Path(scratch)
        report = PopulationReport()
        found: list[tuple[Sample, Path]] = []
        for record in _records([detect_source(root)], report):
            patient = clean_patient(record, task.channels, report)
            times = index_times(task, patient, report)
            for when, where in times[-1:] if latest else times:
                sample = _sample(task, patient, when, where, report)
                folder = out / _folder_name(f"{sample.patient_id}|{sample.index_time.isoformat()}|{where}")
                write_sample(folder, record, sample, grid_readings(task, patient, when), task.channels)
                found.append((sample, folder))
    return found


# ---------------------------------------------------------------------------------------------
# sources


def detect_source(path: str | Path) -> Source:
    """A Bulk Data export (any .ndjson file under it) or a folder of Bundles (.json files in it).

    Anything else is a FhirError naming the path.
    """
    root = Path(path)
    if not root.is_dir():
        raise FhirError(
            "source not found or not a folder (expected a Bulk Data export or a folder of Bundles)", path=root
        )
    if any(p.is_file() and p.name.lower().endswith(NDJSON_SUFFIXES) for p in root.rglob("*")):
        return Source(root, "bulk", tuple(export_files(root)))
    if any(p.is_file() and p.name.lower().endswith(".json") for p in root.iterdir()):
        return Source(root, "bundles", tuple(bundle_files(root)))
    raise FhirError("source holds neither .ndjson files (a Bulk Data export) nor .json Bundles", path=root)


def _records(sources: Sequence[Source], report: PopulationReport) -> Iterator[PatientRecord]:
    for source in sources:
        if source.kind == "bulk":
            yield from iter_bulk_export(source.path, report)
        else:
            yield from iter_bundle_folder(source.path, report)


def source_hash(source: Source) -> str:
    """SHA-256 over the source's files: each relative path, size and full content, streamed."""
    h = hashlib.sha256()
    for f in source.files:
        h.update(f.relative_to(source.path).as_posix().encode("utf-8") + b"\0")
        h.update(str(f.stat().st_size).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


def _read_index_table(path: str | Path) -> dict[str, dict[str, str]]:
    table = Path(path)
    if not table.is_file():
        raise ConfigError("index table not found", path=table)
    with table.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if "patient_id" not in (reader.fieldnames or []):
            raise ConfigError("index table lacks column patient_id", path=table)
        return {row["patient_id"]: row for row in reader}


def _table_hash(path: str | Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _task_text(task: Task) -> bytes:
    if not task.source or not Path(task.source).is_file():
        raise ConfigError("task has no YAML file to copy into the cohort (load it with load_task)", where=task.name)
    return Path(task.source).read_bytes()


def _fractions(splits: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(x) for x in splits)
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError("expected three non-negative fractions (train, val, test) summing to 1", where="--splits")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# the output folder


def _prepare(root: Path) -> None:
    """Create `root`, or clear a previous build in it; refuse any other non-empty folder."""
    if root.exists() and not root.is_dir():
        raise CohortError("output path exists and is not a folder", path=root)
    if not root.exists():
        root.mkdir(parents=True)
        return
    children = list(root.iterdir())
    if not children:
        return
    previous = _previous_build(root)
    if previous is None:
        raise CohortError(
            f"folder is not empty and holds no previous cohort build (no {REPORT_JSON} of format {REPORT_FORMAT}); "
            "choose an empty folder",
            path=root,
        )
    for name in previous:  # only what the previous build wrote; anything else stays
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
    for name in (MANIFEST, REPORT_JSON, REPORT_MD, TASK_COPY, BUILD_INFO):
        (root / name).unlink(missing_ok=True)


def _previous_build(root: Path) -> list[str] | None:
    """The sample folders of a previous build in `root`, or None when `root` holds none."""
    try:
        report = json.loads((root / REPORT_JSON).read_text(encoding="utf-8"))
        with (root / MANIFEST).open(newline="", encoding="utf-8") as fh:
            folders = [row["folder"] for row in csv.DictReader(fh)]
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        return None
    return [f for f in folders if len(f) == _FOLDER_HEX and all(c in "0123456789abcdef" for c in f)]


def _folder_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:_FOLDER_HEX]


# ---------------------------------------------------------------------------------------------
# one sample


def _row(sample: Sample, sample_id: str, folder: str, readings: Sequence[Reading]) -> dict[str, Any]:
    d = sample.demographics
    return {
        "patient_id": sample.patient_id,
        "folder": folder,
        "sample_id": sample_id,
        "split": "",
        "study_time": sample.index_time.isoformat(),
        "sex": d.sex or "",
        "age_years": "" if d.age_years is None else f"{d.age_years:.2f}",
        "race": d.race or "",
        "ethnicity": d.ethnicity or "",
        "birth_sex": d.birth_sex or "",
        "labels": ";".join(name for name, positive in sample.labels.items() if positive),
        "has_image": 0,
        "has_notes": int(bool(sample.notes)),
        "has_vitals": int(bool(readings)),
    }


# ---------------------------------------------------------------------------------------------
# splits


def assign_splits(patients: Sequence[str], positive: set[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Patient -> split: stratified by 'any positive label', seeded, order-independent (module docstring)."""
    out: dict[str, str] = {}
    for stratum in (sorted(p for p in patients if p in positive), sorted(p for p in patients if p not in positive)):
        order = sorted(stratum, key=lambda p: hashlib.sha256(f"{seed}|{p}".encode("utf-8")).hexdigest())
        n = len(order)
        bounds = [round(n * sum(fractions[: i + 1])) for i in range(len(SPLIT_NAMES))]
        bounds[-1] = n
        start = 0
        for name, end in zip(SPLIT_NAMES, bounds):
            for p in order[start:end]:
                out[p] = name
            start = max(start, end)
    return out


# ---------------------------------------------------------------------------------------------
# the report


def _share(count: int, total: int) -> dict[str, Any]:
    return {"count": count, "percent": round(100.0 * count / total, 2) if total else 0.0}


def _report(
    task: Task,
    task_text: bytes,
    sources: Sequence[Source],
    *,
    table_hash: str | None,
    tally: _Tally,
    patients: set[str],
    split_of: Mapping[str, str],
    fractions: Sequence[float],
    seed: int,
    population: PopulationReport,
    warnings: Counter[str],
    images_in_window: int,
) -> dict[str, Any]:
    n = tally.samples
    sample_patients = tally.patients_with_samples
    return {
        "format": REPORT_FORMAT,
        "medmm_version": medmm.__version__,
        "task": {"name": task.name, "sha256": hashlib.sha256(task_text).hexdigest(), "file": TASK_COPY},
        "sources": [
            {"path": str(s.path), "kind": s.kind, "files": len(s.files), "sha256": source_hash(s)} for s in sources
        ],
        "index_table_sha256": table_hash,
        "seed": seed,
        "splits": dict(zip(SPLIT_NAMES, fractions)),
        "patients": len(patients),
        "patients_with_samples": len(sample_patients),
        "samples": n,
        "patients_by_split": {s: sum(1 for p in sample_patients if split_of[p] == s) for s in SPLIT_NAMES},
        "samples_by_split": {s: tally.samples_by_split[s] for s in SPLIT_NAMES},
        "labels": {name: _share(tally.positives[name], n) for name in task.label_names},
        "samples_without_positive_label": _share(tally.without_positive, n),
        "coverage": {
            "notes": _share(tally.coverage["has_notes"], n),
            "vitals": _share(tally.coverage["has_vitals"], n),
            "images": _share(tally.coverage["has_image"], n),
            "imaging_studies_in_window_not_joined": _share(images_in_window, n),
        },
        "exclusions": [
            {"reason": k, "count": c} for k, c in sorted(population.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "sample_warnings": [
            {"reason": k, "count": c} for k, c in sorted(warnings.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


def render_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown, for people."""
    lines = [
        f"# Cohort build: {report['task']['name']}",
        "",
        f"- medmm {report['medmm_version']}, seed {report['seed']}, splits "
        + ", ".join(f"{k} {v:g}" for k, v in report["splits"].items()),
        f"- task SHA-256 `{report['task']['sha256']}` (copied as `{report['task']['file']}`)",
    ]
    for s in report["sources"]:
        lines.append(f"- source `{s['path']}` ({s['kind']}, {s['files']} files), SHA-256 `{s['sha256']}`")
    if report["index_table_sha256"]:
        lines.append(f"- index table SHA-256 `{report['index_table_sha256']}`")
    lines += [
        "",
        f"**{report['patients']}** patients read, **{report['patients_with_samples']}** with samples, "
        f"**{report['samples']}** samples.",
        "",
        "| split | patients | samples |",
        "|---|---:|---:|",
    ]
    for s in SPLIT_NAMES:
        lines.append(f"| {s} | {report['patients_by_split'][s]} | {report['samples_by_split'][s]} |")
    lines += ["", "## Labels", "", "| label | positive samples | % |", "|---|---:|---:|"]
    for name, share in report["labels"].items():
        lines.append(f"| {name} | {share['count']} | {share['percent']:.2f} |")
    none = report["samples_without_positive_label"]
    lines.append(f"| (none) | {none['count']} | {none['percent']:.2f} |")
    lines += ["", "## Coverage", "", "| modality | samples | % |", "|---|---:|---:|"]
    for name, share in report["coverage"].items():
        lines.append(f"| {name.replace('_', ' ')} | {share['count']} | {share['percent']:.2f} |")
    lines += ["", "## Exclusions and counts", "", "| count | reason |", "|---:|---|"]
    lines += [f"| {e['count']} | {_md(e['reason'])} |" for e in report["exclusions"]] or ["| 0 | (none) |"]
    lines += ["", "## Sample warnings", "", "| count | warning |", "|---:|---|"]
    lines += [f"| {e['count']} | {_md(e['reason'])} |" for e in report["sample_warnings"]] or ["| 0 | (none) |"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
