"""The DICOM header of a file as plain rows, with no patient identifier beyond ID, sex and age.

An element is kept only when the de-identification profile (PS3.15 Annex E, medmm.deid) keeps
it unchanged, or when it is one a result's patient header already shows (PatientID,
PatientSex, PatientAge). Names, dates, UIDs, addresses, free text and private elements are left
out, and the result says how many were. The file is read here, header only, and nothing but
strings leaves this module (the interface renders the rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medmm.deid.dicom import KEEP_TEXT, KEEP_UIDS, TEXT_VRS, read_dataset
from medmm.deid.profile import entry_for

SHOWN_IDENTIFIERS = frozenset({"PatientID", "PatientSex", "PatientAge"})  # what a result's patient header shows too
MAX_VALUE_CHARS = 120
MAX_ROWS = 400


@dataclass(frozen=True)
class HeaderRow:
    tag: str  # "(0008,0060)"
    keyword: str
    vr: str
    value: str
    depth: int = 0  # nesting inside sequences


@dataclass(frozen=True)
class DicomHeader:
    """The rows shown, how many elements were left out, and PatientOrientation for the viewer's markers."""

    source: str
    rows: tuple[HeaderRow, ...]
    hidden: int
    patient_orientation: tuple[str, ...] | None = None


def kept(elem) -> bool:
    """Whether the de-identification profile keeps this element as it is (see medmm.deid.dicom._rule for the unlisted)."""
    if elem.tag.is_private or elem.tag.element == 0:
        return False
    if elem.keyword in SHOWN_IDENTIFIERS:
        return True
    entry = entry_for(int(elem.tag))
    if entry is not None:
        return entry.action == "K"
    vr = elem.VR
    if not elem.keyword or vr in ("UN", "PN", "DA", "DT") or elem.tag.group == 0x0016:
        return False
    if vr == "UI":
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        return elem.keyword in KEEP_UIDS or all(str(v).startswith("1.2.840.10008.") for v in values)
    if vr in TEXT_VRS:
        return elem.keyword in KEEP_TEXT
    return True


def _value(elem) -> str:
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV"):
        return f"({len(elem.value or b'')} bytes)"
    text = "\\".join(str(v) for v in elem.value) if elem.VM > 1 else str(elem.value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "\u2026"


def _walk(dataset, depth: int, rows: list[HeaderRow]) -> int:
    hidden = 0
    for elem in dataset:
        if elem.keyword == "PixelData":
            continue
        if not kept(elem):
            hidden += 1
            continue
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            rows.append(HeaderRow(tag, elem.keyword, "SQ", f"{len(elem.value)} item(s)", depth))
            for item in elem.value:
                hidden += _walk(item, depth + 1, rows)
        else:
            rows.append(HeaderRow(tag, elem.keyword, str(elem.VR), _value(elem), depth))
    return hidden


def read_header(path: Path, shown_name: str) -> DicomHeader:
    """The kept rows of one file's header (file meta included); raises OSError or ValueError-like errors when unreadable."""
    ds = read_dataset(path, header_only=True)
    rows: list[HeaderRow] = []
    hidden = _walk(ds.file_meta, 0, rows) if getattr(ds, "file_meta", None) is not None else 0
    hidden += _walk(ds, 0, rows)
    orientation = ds.get("PatientOrientation")
    po = tuple(str(v) for v in orientation) if orientation is not None and not isinstance(orientation, str) else None
    return DicomHeader(shown_name, tuple(rows[:MAX_ROWS]), hidden + max(len(rows) - MAX_ROWS, 0), po)
