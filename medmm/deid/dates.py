"""Shift dates by a whole number of days, in the forms DICOM, FHIR, tables and free text use.

A whole-day shift moves every instant by exactly N x 24 h whatever its UTC offset, so a date
and its separate time of day stay a pair (the time is never touched), and intervals between
any two shifted times are kept. Partial dates (a year, a year and month) shift their first
day and keep their precision.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_DICOM_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")
_FHIR_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"  # date, month and day optional
    r"((?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)$"  # time and offset, kept as written
)
_DT_REST = re.compile(r"^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_TEXT_ISO = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d])")
_TEXT_US = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4})(?![\d/])")


def _first_day(year: str, month: str | None, day: str | None) -> date:
    return date(int(year), int(month or 1), int(day or 1))


def _shifted(year: str, month: str | None, day: str | None, days: int) -> tuple[date, int]:
    """(shifted first day, precision: 1 year, 2 month, 3 day); ValueError when not a date."""
    start = _first_day(year, month, day)
    return start + timedelta(days=days), 1 + (month is not None) + (day is not None)


def shift_dicom_date(value: str, days: int) -> str:
    """A DICOM DA value (YYYYMMDD; the old YYYY.MM.DD too) shifted; ValueError when not a date."""
    text = value.strip().replace(".", "")
    if not re.fullmatch(r"\d{8}", text):
        raise ValueError("not a DA value")
    return (_first_day(text[:4], text[4:6], text[6:8]) + timedelta(days=days)).strftime("%Y%m%d")


def shift_dicom_datetime(value: str, days: int) -> str:
    """A DICOM DT value (YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]) with its date part shifted."""
    text = value.strip()
    m = _DICOM_DT.match(text)
    if m is None or not _DT_REST.match(m[4] or "") or (m[4] and not m[3] and not m[4].startswith(("+", "-"))):
        raise ValueError("not a DT value")
    new, precision = _shifted(m[1], m[2], m[3], days)
    return new.strftime(("%Y", "%Y%m", "%Y%m%d")[precision - 1]) + (m[4] or "")


def shift_fhir_date(value: str, days: int) -> str:
    """A FHIR date, dateTime or instant shifted (time of day and offset kept); ValueError otherwise."""
    m = _FHIR_DATE.match(value.strip())
    if m is None or (m[4] and not m[3]):
        raise ValueError("not a FHIR date")
    new, precision = _shifted(m[1], m[2], m[3], days)
    return new.isoformat()[: (4, 7, 10)[precision - 1]] + m[4]


def is_full_datetime(value: str) -> bool:
    """True for a FHIR dateTime / instant with a time part (no key is needed to call it a date)."""
    m = _FHIR_DATE.match(value.strip())
    return bool(m and m[3] and m[4])


def shift_iso_datetime(value: str, days: int) -> str:
    """An ISO 8601 date or date-time (as in vitals tables) shifted, written back in ISO form."""
    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return shift_fhir_date(text, days)
    shifted = when + timedelta(days=days)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return shifted.date().isoformat()
    return shifted.isoformat().replace("+00:00", "Z") if text.endswith("Z") else shifted.isoformat()


def shift_dates_in_text(text: str, days: int) -> tuple[str, int]:
    """Free text with its ISO (YYYY-MM-DD) and US (MM/DD/YYYY) dates shifted, and how many were."""
    count = 0

    def iso(m: re.Match[str]) -> str:
        nonlocal count
        try:
            new = (_first_day(m[1], m[2], m[3]) + timedelta(days=days)).isoformat()
        except ValueError:
            return m[0]
        count += 1
        return new

    def us(m: re.Match[str]) -> str:
        nonlocal count
        try:
            new = _first_day(m[3], m[1], m[2]) + timedelta(days=days)
        except ValueError:
            return m[0]
        count += 1
        return f"{new.month:02d}/{new.day:02d}/{new.year:04d}"

    text = _TEXT_ISO.sub(iso, text)
    return _TEXT_US.sub(us, text), count
