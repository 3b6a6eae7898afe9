"""De-identify tables: a patient's vital-sign table and the cohort manifest.

Only the columns medmm reads are kept (a column it does not know may hold anything, an MRN
or a comment); times are shifted by the patient's offset so that they stay where they were
relative to the study time; patient ids and folders become pseudonyms.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from medmm.deid.dates import shift_iso_datetime
from medmm.records import Issue

MANIFEST_KEEP = (
    "patient_id",
    "folder",
    "split",
    "study_time",
    "sex",
    "age_years",
    "race",
    "ethnicity",
    "labels",
    "has_image",
    "has_notes",
    "has_vitals",
)
"""Manifest columns written out (the documented cohort layout); any other column is dropped."""

_LONG_COLUMNS = ("time", "code", "channel", "value", "unit")
_WIDE_HEADER = re.compile(r"^\s*[^\[\]]+?\s*\[.*\]\s*$")


@dataclass
class TableOutcome:
    """What happened to one table: written, or refused with a reason."""

    refused: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    issues: list[Issue] = field(default_factory=list)


@dataclass(frozen=True)
class ManifestRow:
    """The replacement of one manifest row's identifying cells."""

    pseudonym: str
    folder: str  # relative to the output cohort root
    offset_days: int


def _read(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if name.endswith(".tsv") else ",")


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, lineterminator="\n", sep="\t" if name.endswith(".tsv") else ",")


def _shift_column(column: pd.Series, days: int, name: str, source: str, out: TableOutcome) -> pd.Series:
    """Shift a column of ISO texts or timestamps; cells that are not times are emptied (and reported)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        out.counts["time shifted"] += int(column.notna().sum())
        return column + pd.Timedelta(days=days)
    shifted, bad = [], 0
    for cell in column.tolist():
        text = "" if cell is None or (isinstance(cell, float) and pd.isna(cell)) else str(cell)
        if not text.strip():
            shifted.append(text)
            continue
        try:
            shifted.append(shift_iso_datetime(text, days))
        except ValueError:
            shifted.append("")
            bad += 1
    out.counts["time shifted"] += len(shifted) - bad
    if bad:
        why = f"{bad} cell(s) not ISO 8601 times; emptied instead of shifted"
        out.issues.append(Issue(source, f"column '{name}'", why, "dropped"))
    return pd.Series(shifted, index=column.index, dtype=object)


def deidentify_vitals(src: Path, dst: Path, offset_days: int) -> TableOutcome:
    """A vital-sign table (long or wide) with times shifted and unknown columns dropped."""
    out = TableOutcome()
    try:
        frame = _read(src)
    except Exception as exc:  # pandas raises many kinds for malformed tables
        out.refused = f"not a readable table ({type(exc).__name__})"
        return out
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if "time" not in columns:
        out.refused = "no 'time' column: not a vital-sign table this tool can de-identify"
        return out
    keep = [c for c in frame.columns if str(c).strip().lower() in _LONG_COLUMNS or _WIDE_HEADER.match(str(c))]
    dropped = [str(c) for c in frame.columns if c not in keep]
    if dropped:
        out.counts["column removed"] += len(dropped)
        why = f"{len(dropped)} column(s) that are not vital signs removed"
        out.issues.append(Issue(str(src), "columns", why, "dropped"))
    frame = frame[keep].copy()
    frame[columns["time"]] = _shift_column(frame[columns["time"]], offset_days, str(columns["time"]), str(src), out)
    _write(frame, dst)
    return out


def read_manifest_ids(path: Path) -> list[tuple[str, str]]:
    """(patient_id, folder) of every manifest row; ValueError when the columns are missing."""
    frame = _read(path)
    if "patient_id" not in frame.columns or "folder" not in frame.columns:
        raise ValueError("manifest lacks patient_id or folder")
    return [(str(p), str(f)) for p, f in zip(frame["patient_id"], frame["folder"])]


def rewrite_manifest(src: Path, dst: Path, rows: Mapping[str, ManifestRow]) -> TableOutcome:
    """The manifest with pseudonyms, new folders and shifted study times; rows not de-identified dropped."""
    out = TableOutcome()
    frame = _read(src)
    extra = [c for c in frame.columns if c not in MANIFEST_KEEP]
    if extra:
        out.counts["column removed"] += len(extra)
        why = f"{len(extra)} column(s) outside the documented layout removed"
        out.issues.append(Issue(str(src), "columns", why, "dropped"))
    frame = frame[[c for c in frame.columns if c in MANIFEST_KEEP]].copy()
    known = [str(p) in rows for p in frame["patient_id"]]
    for i, ok in enumerate(known):
        if not ok:
            why = "patient not de-identified (folder missing or refused); row removed"
            out.issues.append(Issue(str(src), f"row {i + 2}", why, "dropped"))
    frame = frame[known].reset_index(drop=True)
    entries = [rows[str(p)] for p in frame["patient_id"]]
    if "study_time" in frame.columns:
        times = []
        for entry, cell in zip(entries, frame["study_time"].tolist()):
            single = _shift_column(pd.Series([cell], dtype=object), entry.offset_days, "study_time", str(src), out)
            times.append(single.iloc[0])
        frame["study_time"] = pd.Series(times, dtype=object)
    frame["patient_id"] = [e.pseudonym for e in entries]
    frame["folder"] = [e.folder for e in entries]
    out.counts["row rewritten"] += len(frame)
    _write(frame, dst)
    return out
