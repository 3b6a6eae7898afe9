"""Cohorts: a folder of patients plus a manifest, read lazily.

On-disk layout (what `medmm synth` writes and what `--cohort DIR` accepts everywhere)::

    <cohort>/manifest.csv            one row per patient (or manifest.parquet)
    <cohort>/<patient_id>/images/    DICOM Part-10 files, any names and depth (zips allowed)
    <cohort>/<patient_id>/record.json   FHIR R4/R4B/R5 Bundle (or *.ndjson Bulk Data files)
    <cohort>/<patient_id>/vitals.csv    optional: long (time,code,value,unit) or wide table
    <cohort>/<patient_id>/truth.json    ground truth, synthetic cohorts only

Manifest columns: ``patient_id`` and ``folder`` (relative to the cohort root) are required;
``split`` (train|val|test), ``study_time`` (ISO 8601), ``sex``, ``age_years``, ``race``,
``ethnicity``, ``labels`` (diagnosis names joined by ';') and ``has_image``/``has_notes``/
``has_vitals`` are optional. A built cohort (``medmm cohort build``) has one row per sample
(patient and index time) and a ``sample_id`` column: a patient may then have several rows,
each sample once. A folder without a manifest is read as one patient per
sub-folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd

from medmm.errors import CohortError, MedmmError
from medmm.records import Study

REQUIRED_COLUMNS = ("patient_id", "folder")


@dataclass(frozen=True)
class CohortEntry:
    """One manifest row."""

    patient_id: str
    folder: Path
    split: str | None = None
    study_time: datetime | None = None
    sample_id: str | None = None  # a built cohort's sample (one of several of a patient); None: one row per patient

    @property
    def key(self) -> str:
        """What names this row uniquely: the sample id, else the patient id."""
        return self.sample_id if self.sample_id is not None else self.patient_id


class Cohort:
    """A lazily read cohort: iterating yields one Study at a time."""

    def __init__(self, root: str | Path, entries: list[CohortEntry], manifest: pd.DataFrame):
        self.root = Path(root)
        self.entries = entries
        self.manifest = manifest

    @classmethod
    def open(cls, root: str | Path) -> "Cohort":
        """Read the manifest. A built cohort may hold several samples of one patient: every reader
        keys its rows by `CohortEntry.key` (the sample id) and groups by patient where it must
        (splits, bootstraps)."""
        root = Path(root)
        if not root.is_dir():
            raise CohortError("cohort folder not found", path=root)
        manifest = _read_manifest(root)
        has_samples = "sample_id" in manifest.columns
        entries = []
        for i, row in manifest.iterrows():
            folder = root / str(row["folder"])
            study_time = _parse_time(row.get("study_time"), root, i)
            split = row.get("split")
            split = None if split is None or (isinstance(split, float) and pd.isna(split)) else str(split)
            sample = str(row["sample_id"]) if has_samples else None
            entries.append(CohortEntry(str(row["patient_id"]), folder, split, study_time, sample))
        # One row per patient, or, with a sample_id column (a built cohort), one row per sample.
        key = "sample_id" if "sample_id" in manifest.columns else "patient_id"
        ids = [str(v) for v in manifest[key]]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise CohortError(
                f"{key} appears more than once (first repeat at row {ids.index(dup, ids.index(dup) + 1) + 2})",
                path=root / "manifest.csv",
            )
        return cls(root, entries, manifest.reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def patient_ids(self) -> list[str]:
        return [e.patient_id for e in self.entries]

    def split(self, *names: str) -> "Cohort":
        """The sub-cohort of the given splits (e.g. ``cohort.split("test")``)."""
        keep = [i for i, e in enumerate(self.entries) if e.split in names]
        return Cohort(self.root, [self.entries[i] for i in keep], self.manifest.iloc[keep].reset_index(drop=True))

    def select(self, patient_ids) -> "Cohort":
        wanted = set(patient_ids)
        keep = [i for i, e in enumerate(self.entries) if e.patient_id in wanted]
        return Cohort(self.root, [self.entries[i] for i in keep], self.manifest.iloc[keep].reset_index(drop=True))

    def load(self, index: int, **kwargs) -> Study:
        """Read patient `index` (raises that patient's MedmmError when unreadable)."""
        from medmm.io.study import load_study

        entry = self.entries[index]
        if not entry.folder.exists():
            raise CohortError("patient folder listed in the manifest does not exist", path=entry.folder)
        source = "cohort manifest" if entry.study_time is not None else "given"
        return load_study(
            entry.folder, study_time=entry.study_time, time_source=source, patient_id=entry.patient_id, **kwargs
        )

    def __iter__(self) -> Iterator[Study]:
        for i in range(len(self)):
            yield self.load(i)

    def iter_safe(self) -> Iterator[tuple[CohortEntry, Study | None, MedmmError | None]]:
        """Yield (entry, study, None) or (entry, None, error): one bad patient never stops the rest."""
        for i, entry in enumerate(self.entries):
            try:
                yield entry, self.load(i), None
            except MedmmError as err:
                yield entry, None, err


def _read_manifest(root: Path) -> pd.DataFrame:
    csv, parquet = root / "manifest.csv", root / "manifest.parquet"
    if csv.exists() or parquet.exists():
        path = csv if csv.exists() else parquet
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False) if path == csv else pd.read_parquet(path)
        except Exception as exc:  # pandas raises many types for malformed tables
            raise CohortError(f"manifest cannot be read ({type(exc).__name__})", path=path) from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise CohortError(f"manifest lacks column(s) {', '.join(missing)}", path=path)
        return df
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CohortError("no manifest.csv and no patient sub-folders", path=root)
    return pd.DataFrame({"patient_id": [p.name for p in folders], "folder": [p.name for p in folders]})


def _parse_time(value, root: Path, row: int) -> datetime | None:
    if value is None or value == "" or (isinstance(value, float) and pd.isna(value)):
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise CohortError("study_time is not ISO 8601", path=root / "manifest.csv", where=f"row {row + 2}") from exc
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
