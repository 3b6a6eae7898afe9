"""Vital signs: read a long or wide table (CSV / Parquet) and place readings on a regular grid.

Table layouts:

- long: columns ``time, code, value, unit`` (``channel`` is accepted for ``code``), one reading
  per row; ``code`` is a LOINC code or a channel name (medmm.codes.VITAL_SIGNS, or the
  channels of a task passed as `vital_signs`); an
  optional ``step`` column holds the start of the encounter a reading belongs to (what a grid of
  one step per encounter, :func:`build_encounter_grid`, groups by);
- wide: a ``time`` column plus one column per channel whose header carries the unit in
  brackets, ``heart_rate [/min]`` or ``8867-4 [/min]``; an empty cell means "not measured".

Times are ISO 8601; a time without a UTC offset is taken as UTC, reported once per file.
Rows are numbered from 1 over the data rows (the header is not counted). What cannot be used
is reported and the good rows are kept: a row or column that names no known channel, or has
no usable time, becomes an Issue; a value of a known channel that is missing, not a number or
in a unit medmm does not know (never guessed) becomes a DroppedValue.

The grid (:func:`build_grid`) has T steps covering [end - window, end); step t is
[start + t*step, start + (t+1)*step) and holds the mean of the readings that fall in it.
:func:`build_encounter_grid` has one step per encounter instead (the latest ones in the window).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medmm.codes import BP_PANEL_LOINC, VITAL_NAMES, VitalSign, vital_for_code
from medmm.errors import ConfigError, VitalsError
from medmm.io.units import implausible_reason, to_canonical
from medmm.records import DroppedValue, Issue, VitalReading, VitalSeries

_US_PER_SECOND = 1_000_000
_MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none"})
_LONG_CODE_COLUMNS = ("code", "channel")
_MISSING = "value is missing"  # in a wide table: not measured, so not reported


@dataclass(frozen=True)
class VitalsTable:
    """Readings of one vitals file in canonical units, with what was dropped or skipped and why."""

    readings: tuple[VitalReading, ...]
    dropped: tuple[DroppedValue, ...]
    issues: tuple[Issue, ...]


@dataclass(frozen=True)
class ChannelSummary:
    """One channel of a grid at a glance (for ``medmm inspect``): figures over observed steps."""

    channel: str
    unit: str
    observed_steps: int
    total_steps: int
    min: float | None  # None when no step is observed
    mean: float | None  # mean of the step means
    max: float | None
    dropped: int  # DroppedValue records of this channel in the series


def read_vitals_table(path: str | Path, vital_signs: Sequence[VitalSign] | None = None) -> VitalsTable:
    """Read a long or wide vitals table (.csv or .parquet) into canonical-unit readings of the
    `vital_signs` channels (default medmm's seven; a task's own channels by their LOINC codes or names).

    Raises VitalsError when the file cannot be read at all (missing, not a table, empty, no
    `time` column); problems of single rows or columns are reported in the result instead.
    """
    path = Path(path)
    frame = _read_frame(path)
    if str(frame.index.name).strip().lower() == "time":  # Parquet written with the times as index
        frame = frame.reset_index()
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if "time" not in columns:
        raise VitalsError("missing column 'time' (expected an ISO 8601 time column)", path=path)
    if len(frame) == 0:
        raise VitalsError("no data rows (expected a header and at least one row)", path=path)
    out = _Collector(str(path), str(columns["time"]), vital_signs)
    if any(name in columns for name in (*_LONG_CODE_COLUMNS, "value", "unit")):
        _read_long(frame, columns, out)
    else:
        _read_wide(frame, columns, out)
    return out.table()


def build_grid(
    readings: Iterable[VitalReading],
    *,
    end: datetime,
    window_hours: float = 48.0,
    step_minutes: float = 60.0,
    channels: Sequence[str | VitalSign] = VITAL_NAMES,
    dropped: Iterable[DroppedValue] = (),
) -> VitalSeries:
    """Average readings onto a regular grid over [end - window, end), with an observation mask.

    `channels`: the grid's columns, names of medmm's seven or VitalSign definitions (a task's).
    Exact duplicates (channel, time, value) count once; readings outside the window or of other
    channels are ignored; implausible values inside the window are dropped and recorded with
    their reason, after `dropped` (passed through, e.g. from a table). Naive times are UTC.
    """
    if end.utcoffset() is None:
        raise VitalsError("grid end time has no UTC offset (expected an aware datetime)", where="end")
    step_us, n_steps = _grid_shape(window_hours, step_minutes)
    signs = _channel_signs(channels)
    column = {sign.name: c for c, sign in enumerate(signs)}
    window_us = n_steps * step_us
    try:
        start = end.astimezone(timezone.utc) - timedelta(microseconds=window_us)
    except OverflowError:
        raise VitalsError("grid window starts before year 1 (expected a later end time)", where="end") from None

    sums = np.zeros((n_steps, len(signs)), dtype=np.float64)  # (T, C)
    counts = np.zeros((n_steps, len(signs)), dtype=np.int64)  # (T, C)
    drops = list(dropped)
    implausible: list[DroppedValue] = []

    def inside(time: datetime, reading: VitalReading) -> bool:
        return 0 <= _micros(time - start) < window_us

    for c, time, value, _ in _accepted(readings, signs, inside, drops, implausible):
        step = _micros(time - start) // step_us
        sums[step, c] += value
        counts[step, c] += 1
    mask, values = _means(sums, counts)
    implausible.sort(key=lambda d: (d.time, column[d.channel], d.source))
    return VitalSeries(
        start=start,
        step_seconds=step_us / _US_PER_SECOND,
        channels=tuple(sign.name for sign in signs),
        units=tuple(sign.unit for sign in signs),
        values=values,
        mask=mask,
        dropped=tuple(drops + implausible),
    )


def build_encounter_grid(
    readings: Iterable[VitalReading],
    *,
    end: datetime,
    window_hours: float,
    max_steps: int,
    channels: Sequence[str | VitalSign] = VITAL_NAMES,
    dropped: Iterable[DroppedValue] = (),
) -> VitalSeries:
    """One step per encounter: readings grouped by `VitalReading.step` (their encounter's start; a
    reading without one is its own step), the latest `max_steps` steps in [end - window, end),
    each the mean of its readings per channel, oldest first. Readings (and steps) outside the
    window, and older steps beyond `max_steps`, are left out; implausible values are dropped and
    recorded as on the regular grid."""
    if end.utcoffset() is None:
        raise VitalsError("grid end time has no UTC offset (expected an aware datetime)", where="end")
    if max_steps < 1:
        raise ConfigError(f"expected at least one step, got max_steps={max_steps}", where="max_steps")
    signs = _channel_signs(channels)
    column = {sign.name: c for c, sign in enumerate(signs)}
    end = end.astimezone(timezone.utc)
    try:
        window_start = end - timedelta(hours=window_hours)
    except OverflowError:
        raise VitalsError("grid window starts before year 1 (expected a later end time)", where="end") from None
    drops = list(dropped)
    implausible: list[DroppedValue] = []
    found: dict[datetime, list[tuple[int, float]]] = {}

    def inside(time: datetime, reading: VitalReading) -> bool:
        step = _utc(reading.step) if reading.step is not None else time
        return window_start <= time < end and window_start <= step < end

    for c, time, value, reading in _accepted(readings, signs, inside, drops, implausible):
        found.setdefault(_utc(reading.step) if reading.step is not None else time, []).append((c, value))
    kept = sorted(found)[-max_steps:]
    sums = np.zeros((len(kept), len(signs)), dtype=np.float64)  # (T, C)
    counts = np.zeros((len(kept), len(signs)), dtype=np.int64)
    for t, step in enumerate(kept):
        for c, value in found[step]:
            sums[t, c] += value
            counts[t, c] += 1
    mask, values = _means(sums, counts)
    implausible.sort(key=lambda d: (d.time, column[d.channel], d.source))
    return VitalSeries(
        start=kept[0] if kept else window_start,
        step_seconds=0.0,
        channels=tuple(sign.name for sign in signs),
        units=tuple(sign.unit for sign in signs),
        values=values,
        mask=mask,
        dropped=tuple(drops + implausible),
        step_times=tuple(kept),
    )


def _accepted(readings, signs, inside, drops: list[DroppedValue], implausible: list[DroppedValue]):
    """(column, UTC time, canonical value, reading) of each reading of the grid's channels that `inside(time, reading)`
    admits; a unit that cannot be converted goes to `drops`, an implausible value to `implausible`
    (each with its reason), and an exact duplicate (channel, time, value) counts once."""
    column = {sign.name: c for c, sign in enumerate(signs)}
    seen: set[tuple[int, datetime, float]] = set()
    for reading in readings:
        c = column.get(reading.channel)
        if c is None:
            continue
        time = _utc(reading.time)
        if not inside(time, reading):
            continue
        sign = signs[c]
        value = float(reading.value)
        if reading.unit != sign.unit:
            try:
                value = to_canonical(value, reading.unit, sign, source=reading.source)
            except VitalsError as exc:
                drops.append(DroppedValue(sign.name, time, exc.detail, reading.source))
                continue
        if (c, time, value) in seen:
            continue
        seen.add((c, time, value))
        reason = implausible_reason(value, sign)
        if reason is not None:
            implausible.append(DroppedValue(sign.name, time, reason, reading.source))
            continue
        yield c, time, value, reading


def _means(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, values) of a grid: observed where a step has a reading, the mean of its readings there (NaN elsewhere)."""
    mask = counts > 0
    values = np.full(sums.shape, np.nan, dtype=np.float32)
    values[mask] = (sums[mask] / counts[mask]).astype(np.float32)
    return mask, values


def readings_frame(series: VitalSeries) -> pd.DataFrame:
    """The grid as a tidy table, one row per (step, channel): step, time, channel, unit, value, observed."""
    n_steps, n_channels = series.values.shape
    steps = np.repeat(np.arange(n_steps), n_channels)  # (T*C,)
    chans = np.tile(np.arange(n_channels), n_steps)  # (T*C,)
    step_times = (
        pd.DatetimeIndex([pd.Timestamp(t).tz_convert("UTC") for t in series.times])
        if n_steps
        else pd.DatetimeIndex([], tz="UTC")
    )
    times = step_times[steps] if n_steps else step_times
    return pd.DataFrame(
        {
            "step": steps,
            "time": times,
            "channel": [series.channels[c] for c in chans],
            "unit": [series.units[c] for c in chans],
            "value": series.values.reshape(-1).astype(np.float64),
            "observed": series.mask.reshape(-1),
        }
    )


def summary_rows(series: VitalSeries) -> tuple[ChannelSummary, ...]:
    """Per channel: observed steps, min / mean / max of the step means, unit and dropped count."""
    rows = []
    for c, (name, unit) in enumerate(zip(series.channels, series.units)):
        observed = series.values[series.mask[:, c], c].astype(np.float64)  # (n_observed,)
        has = observed.size > 0
        rows.append(
            ChannelSummary(
                channel=name,
                unit=unit,
                observed_steps=int(observed.size),
                total_steps=int(series.values.shape[0]),
                min=float(observed.min()) if has else None,
                mean=float(observed.mean()) if has else None,
                max=float(observed.max()) if has else None,
                dropped=sum(1 for d in series.dropped if d.channel == name),
            )
        )
    return tuple(rows)


# ---------------------------------------------------------------------------------------------
# reading tables


@dataclass
class _Collector:
    """What one file yields while it is read: readings, drops, issues, count of naive times."""

    source: str
    time_header: str
    signs: Sequence[VitalSign] | None = None  # the channels read (None: medmm's seven)
    readings: list[VitalReading] = field(default_factory=list)
    dropped: list[DroppedValue] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    naive_times: int = 0

    def skip(self, where: str, message: str) -> None:
        self.issues.append(Issue(self.source, where, message, kind="skipped"))

    def drop(self, sign: VitalSign, time: datetime, where: str, reason: str) -> None:
        self.dropped.append(DroppedValue(sign.name, time, reason, source=f"{self.source}: {where}"))

    def time(self, cell: object, row: int) -> datetime | None:
        """The row's time in UTC, or None after reporting the row as skipped."""
        time, naive = _parse_time(cell)
        if time is None:
            where = f"row {row}, column '{self.time_header}'"
            self.skip(where, "time is not an ISO 8601 date-time; row skipped")
        self.naive_times += naive
        return time

    def add(
        self,
        sign: VitalSign,
        time: datetime,
        cell: object,
        unit: str | None,
        row: int,
        col: str,
        step: datetime | None = None,
    ) -> None:
        """Convert one value cell to a reading, or record why it was dropped."""
        where = f"row {row}, column '{col}'"
        value, problem = _parse_value(cell)
        if problem is not None:
            self.drop(sign, time, where, problem)
            return
        try:
            canonical = to_canonical(value, unit, sign, source=self.source, where=where)
        except VitalsError as exc:
            self.drop(sign, time, where, exc.detail)
            return
        source = f"{self.source}: row {row}"
        self.readings.append(VitalReading(time, sign.name, canonical, sign.unit, source=source, step=step))

    def table(self) -> VitalsTable:
        issues = list(self.issues)
        if self.naive_times:
            message = f"{self.naive_times} time(s) without a UTC offset taken as UTC"
            issues.insert(0, Issue(self.source, f"column '{self.time_header}'", message, kind="warning"))
        return VitalsTable(tuple(self.readings), tuple(self.dropped), tuple(issues))


def _read_frame(path: Path) -> pd.DataFrame:
    """The file as a DataFrame (CSV cells as text), or VitalsError naming the file."""
    name = path.name.lower()
    is_parquet = name.endswith((".parquet", ".pq"))
    if not is_parquet and not name.endswith((".csv", ".csv.gz")):
        raise VitalsError("unsupported file type (expected .csv or .parquet)", path=path)
    if not path.is_file():
        raise VitalsError("file not found (expected a .csv or .parquet vitals table)", path=path)
    try:
        if is_parquet:
            table = pq.read_table(path)
            table.validate(full=True)  # bad UTF-8 in a text column would otherwise fail later, when cells are read
            return table.to_pandas(
                ignore_metadata=True
            )  # the columns alone: pandas' index metadata is not needed and may be corrupt
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise VitalsError("file is empty (expected a header row with a 'time' column)", path=path) from None
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError, pa.ArrowException) as exc:
        kind = "Parquet" if is_parquet else "CSV"
        raise VitalsError(f"not a readable {kind} table ({type(exc).__name__})", path=path) from exc


def _read_long(frame: pd.DataFrame, columns: dict[str, object], out: _Collector) -> None:
    """One reading per row: time, code (or channel), value, unit."""
    code_key = next((k for k in _LONG_CODE_COLUMNS if k in columns), None)
    missing = ([] if code_key else ["code"]) + [k for k in ("value", "unit") if k not in columns]
    if missing:
        wanted = ", ".join(f"'{k}'" for k in missing)
        message = f"long table lacks column(s) {wanted} (expected time, code, value, unit)"
        raise VitalsError(message, path=out.source)
    headers = {k: str(columns[k]) for k in ("time", code_key, "value", "unit")}
    cells = zip(*(frame[columns[k]].tolist() for k in ("time", code_key, "value", "unit")))
    steps = frame[columns["step"]].tolist() if "step" in columns else [None] * len(frame)
    for row, ((time_cell, code_cell, value_cell, unit_cell), step_cell) in enumerate(zip(cells, steps), start=1):
        code = code_cell.strip() if isinstance(code_cell, str) else ""
        sign = _vital(code, out.signs)
        if sign is None:
            where = f"row {row}, column '{headers[code_key]}'"
            out.skip(where, _unknown_code_message(code) + "; row skipped")
            continue
        time = out.time(time_cell, row)
        if time is None:
            continue
        unit = unit_cell.strip() if isinstance(unit_cell, str) else None
        step = None
        if step_cell is not None and str(step_cell).strip():
            step, _ = _parse_time(step_cell)
            if step is None:
                out.skip(
                    f"row {row}, column '{columns['step']}'",
                    "step is not an ISO 8601 date-time; the reading keeps its own time as its step",
                )
        out.add(sign, time, value_cell, unit, row, headers["value"], step)


def _read_wide(frame: pd.DataFrame, columns: dict[str, object], out: _Collector) -> None:
    """A time column plus one column per channel, the unit in the header: ``heart_rate [/min]``."""
    time_header = columns["time"]
    usable: list[tuple[object, VitalSign, str]] = []
    for header in frame.columns:
        if header == time_header:
            continue
        where = f"column '{header}'"
        split = _wide_header(str(header))
        if split is None:
            out.skip(where, "no unit in the header (expected 'name [unit]'); column skipped")
            continue
        code, unit = split
        sign = _vital(code, out.signs)
        if sign is None:
            out.skip(where, _unknown_code_message(code) + "; column skipped")
            continue
        try:
            to_canonical(0.0, unit, sign, source=out.source, where=where)
        except VitalsError as exc:
            out.skip(where, exc.detail + "; column skipped")
            continue
        usable.append((header, sign, unit))
    if not usable and not out.issues:
        message = "no vital-sign columns (expected long columns code, value, unit or wide 'name [unit]')"
        raise VitalsError(message, path=out.source)
    times = frame[time_header].tolist()
    values = [frame[header].tolist() for header, _, _ in usable]
    for i, time_cell in enumerate(times):
        present = [(u, cells[i]) for u, cells in zip(usable, values) if _parse_value(cells[i])[1] != _MISSING]
        if not present:
            continue
        time = out.time(time_cell, i + 1)
        if time is None:
            continue
        for (header, sign, unit), cell in present:
            out.add(sign, time, cell, unit, i + 1, str(header))


def _wide_header(header: str) -> tuple[str, str] | None:
    """'heart_rate [/min]' -> ('heart_rate', '/min'): the name before the first '[', the unit up to
    the final ']'; None when the header has no such form. String methods, so linear in its length."""
    text = header.strip()
    bracket = text.find("[")
    code, unit = text[:bracket].rstrip(), text[bracket + 1 : -1]
    if bracket < 1 or not text.endswith("]") or "]" in code or "\n" in unit:
        return None
    return code, unit


def _vital(code: str, signs: Sequence[VitalSign] | None = None) -> VitalSign | None:
    code = code.strip()
    return vital_for_code(code, signs) or vital_for_code(code.lower(), signs) if code else None


def _unknown_code_message(code: str) -> str:
    if not code.strip():
        return "vital-sign code is missing (expected a LOINC code or medmm channel name)"
    if code.strip() == BP_PANEL_LOINC:
        return "blood-pressure panel code carries no single value (expected its systolic and diastolic codes)"
    return "unknown vital-sign code (expected a LOINC code or channel name of the vital signs read)"


def _parse_time(cell: object) -> tuple[datetime | None, bool]:
    """(time in UTC, whether it was naive) from an ISO 8601 text or timestamp cell; None if neither."""
    if cell is None or cell is pd.NaT:
        return None, False
    if isinstance(cell, pd.Timestamp):  # Parquet timestamp columns
        try:
            time = cell.to_pydatetime(warn=False)
        except ValueError:  # years outside 1-9999, which Timestamp can hold and datetime cannot
            return None, False
    elif isinstance(cell, datetime):
        time = cell
    elif isinstance(cell, str):
        try:
            time = datetime.fromisoformat(cell.strip())
        except ValueError:
            return None, False
    else:
        return None, False
    try:
        return _utc(time), time.utcoffset() is None
    except OverflowError:  # an offset that moves the time past year 1 or 9999
        return None, False


def _parse_value(cell: object) -> tuple[float, str | None]:
    """(value, None) for a finite number, else (NaN, why it cannot be used)."""
    if isinstance(cell, (bool, np.bool_)):
        return math.nan, "value is not a number"
    if isinstance(cell, str):
        text = cell.strip()
        if text.lower() in _MISSING_TEXT:
            return math.nan, _MISSING
        try:
            value = float(text)
        except ValueError:
            return math.nan, "value is not a number"
    elif isinstance(cell, (int, float, np.integer, np.floating)):
        value = float(cell)
        if math.isnan(value):
            return math.nan, _MISSING
    elif cell is None:
        return math.nan, _MISSING
    else:
        return math.nan, "value is not a number"
    if not math.isfinite(value):
        return math.nan, "value is not a finite number"
    return value, None


# ---------------------------------------------------------------------------------------------
# grid helpers


def _utc(time: datetime) -> datetime:
    """`time` in UTC; a naive time is taken as UTC (medmm's convention)."""
    if time.utcoffset() is None:
        return time.replace(tzinfo=timezone.utc)
    return time.astimezone(timezone.utc)


def _micros(delta: timedelta) -> int:
    """A timedelta as an exact number of microseconds (no float rounding at step edges)."""
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def _grid_shape(window_hours: float, step_minutes: float) -> tuple[int, int]:
    """(step in microseconds, number of steps); the window must be a whole number of steps."""
    if not (math.isfinite(window_hours) and math.isfinite(step_minutes)):
        raise ConfigError("vitals window and step must be finite numbers", where="window_hours/step_minutes")
    step_us = round(step_minutes * 60 * _US_PER_SECOND)
    window_us = round(window_hours * 3600 * _US_PER_SECOND)
    if step_us <= 0 or window_us <= 0:
        raise ConfigError(
            f"vitals window ({window_hours:g} h) and step ({step_minutes:g} min) must be positive",
            where="window_hours/step_minutes",
        )
    if window_us % step_us:
        raise ConfigError(
            f"vitals window of {window_hours:g} h is not a whole number of {step_minutes:g} min steps",
            where="window_hours/step_minutes",
        )
    return step_us, window_us // step_us


def _channel_signs(channels: Sequence[str | VitalSign]) -> tuple[VitalSign, ...]:
    """The VitalSign of each grid channel (a definition as given, a name among medmm's seven), in order;
    unknown or repeated names are a ConfigError."""
    if isinstance(channels, str) or not channels:
        raise ConfigError("vitals channels must be a non-empty sequence of channel names", where="channels")
    signs = []
    for name in channels:
        if isinstance(name, VitalSign):
            signs.append(name)
            continue
        sign = vital_for_code(name)
        if sign is None or sign.name != name:
            message = f"unknown vital-sign channel {name!r} (expected one of {', '.join(VITAL_NAMES)})"
            raise ConfigError(message, where="channels")
        signs.append(sign)
    if len({s.name for s in signs}) != len(signs):
        raise ConfigError("vitals channels repeat a name (expected each channel once)", where="channels")
    return tuple(signs)
