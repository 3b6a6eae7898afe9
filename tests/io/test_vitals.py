"""Vital-sign tables and the regular grid (medmm.io.vitals): by-hand grids, files, properties."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medmm.codes import VITAL_NAMES, VITAL_SIGNS, vital_for_code
from medmm.errors import ConfigError, MedmmError, VitalsError
from medmm.io.vitals import (
    ChannelSummary,
    _wide_header,
    build_encounter_grid,
    build_grid,
    read_vitals_table,
    readings_frame,
    summary_rows,
)
from medmm.records import DroppedValue, VitalReading
from tests.io.scaling import LINEAR_BOUND, growth

UTC = timezone.utc
END = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))


def hr(time: datetime, value: float, channel: str = "heart_rate") -> VitalReading:
    return VitalReading(time, channel, value, vital_for_code(channel).unit)


def at(hour: int, minute: int = 0, second: int = 0, tz: timezone = UTC) -> datetime:
    return datetime(2024, 3, 1, hour, minute, second, tzinfo=tz)


def grid3(readings, **kw):
    """A 3 h hourly grid ending at 12:00 UTC: steps start 09:00, 10:00, 11:00."""
    return build_grid(readings, end=END, window_hours=3, step_minutes=60, **kw)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- the grid, by hand ----------------------------------------------------------------------


def test_three_readings_in_one_hour_are_averaged() -> None:
    series = grid3([hr(at(10, 5), 80.0), hr(at(10, 20), 90.0), hr(at(10, 59, 59), 100.0)])
    assert series.start == at(9) and series.step_seconds == 3600.0
    assert series.channels == VITAL_NAMES and series.units == tuple(v.unit for v in VITAL_SIGNS)
    assert series.values.shape == (3, len(VITAL_NAMES)) and series.values.dtype == np.float32
    assert series.mask.dtype == np.bool_
    expected_mask = np.zeros((3, len(VITAL_NAMES)), dtype=bool)
    expected_mask[1, 0] = True
    np.testing.assert_array_equal(series.mask, expected_mask)
    assert series.values[1, 0] == 90.0
    assert np.isnan(series.values[~expected_mask]).all()
    np.testing.assert_array_equal(series.hours, [0.0, 1.0, 2.0])


def test_step_edges_window_start_included_end_excluded() -> None:
    readings = [hr(at(10), 70.0), hr(at(9), 60.0), hr(at(12), 200.0), hr(at(8, 59, 59), 200.0)]
    series = grid3(readings, channels=("heart_rate",))
    np.testing.assert_array_equal(series.mask[:, 0], [True, True, False])
    assert series.values[0, 0] == 60.0  # 09:00 is the window's first instant
    assert series.values[1, 0] == 70.0  # 10:00 is the left edge of step 1, not the end of step 0
    assert series.dropped == ()  # outside the window is not "dropped"


def test_offset_time_lands_in_its_utc_step() -> None:
    # 12:30+02:00 is 10:30 UTC: step 1, not step 3 (which does not exist) nor step 0
    readings = [hr(at(12, 30, tz=CEST), 75.0), hr(datetime(2024, 3, 1, 9, 15), 65.0)]  # the naive one is UTC
    series = grid3(readings, channels=("heart_rate",))
    np.testing.assert_array_equal(series.values[:, 0], np.array([65.0, 75.0, np.nan], dtype=np.float32))
    end_cest = END.astimezone(CEST)  # the same instant given in another zone gives the same grid
    same = build_grid([hr(at(12, 30, tz=CEST), 75.0)], end=end_cest, window_hours=3, channels=("heart_rate",))
    assert same.start == at(9) and same.start.utcoffset() == timedelta(0)
    assert same.values[1, 0] == 75.0


def test_exact_duplicates_count_once() -> None:
    readings = [hr(at(10, 10), 80.0), hr(at(10, 10), 80.0), hr(at(10, 20), 110.0)]
    assert grid3(readings).values[1, 0] == 95.0  # (80 + 110) / 2, not (80 + 80 + 110) / 3
    # same time, different values: both are real readings
    assert grid3([hr(at(10, 10), 80.0), hr(at(10, 10), 100.0)]).values[1, 0] == 90.0
    # the same instant written in two zones is the same reading
    same_instant = [hr(at(10, 10), 80.0), hr(at(12, 10, tz=CEST), 80.0), hr(at(10, 30), 86.0)]
    assert grid3(same_instant).values[1, 0] == 83.0


def test_unsorted_input_gives_the_same_grid() -> None:
    rng = random.Random(7)
    times = [at(9) + timedelta(minutes=rng.randrange(180)) for _ in range(60)]
    readings = [hr(t, float(rng.randrange(50, 150))) for t in times]
    ordered = grid3(sorted(readings, key=lambda r: r.time))
    shuffled = list(readings)
    rng.shuffle(shuffled)
    np.testing.assert_array_equal(grid3(shuffled).values, ordered.values)
    np.testing.assert_array_equal(grid3(shuffled).mask, ordered.mask)


def test_implausible_values_dropped_with_reasons() -> None:
    readings = [
        hr(at(10, 5), 900.0),
        hr(at(10, 10), 130.0, "spo2"),
        hr(at(10, 15), 96.0, "spo2"),
        hr(at(10, 20), 88.0),
        hr(at(5), 900.0),  # outside the window: neither used nor dropped
    ]
    series = grid3(readings)
    hr_col, spo2_col = VITAL_NAMES.index("heart_rate"), VITAL_NAMES.index("spo2")
    assert series.values[1, hr_col] == 88.0 and series.values[1, spo2_col] == 96.0
    assert series.dropped == (
        DroppedValue("heart_rate", at(10, 5), "implausible: above 300 /min"),
        DroppedValue("spo2", at(10, 10), "implausible: above 100 %"),
    )


def test_readings_in_other_units_are_converted_or_dropped() -> None:
    readings = [
        VitalReading(at(10, 5), "temperature", 98.6, "[degF]", source="f.csv: row 1"),
        VitalReading(at(10, 6), "temperature", 37.4, "Cel"),
        VitalReading(at(10, 7), "weight", 154.0, "lb"),
        VitalReading(at(10, 8), "heart_rate", 70.0, "beats per hour", source="f.csv: row 4"),
    ]
    series = grid3(readings, channels=("temperature", "weight", "heart_rate"))
    assert series.values[1, 0] == pytest.approx((37.0 + 37.4) / 2)
    assert series.values[1, 1] == pytest.approx(69.85322498)
    assert not series.mask[:, 2].any()
    (drop,) = series.dropped
    assert (drop.channel, drop.time, drop.source) == ("heart_rate", at(10, 8), "f.csv: row 4")
    assert drop.reason.startswith("unknown unit")


def test_channels_subset_order_and_passed_through_drops() -> None:
    earlier = DroppedValue("spo2", at(10), "value is not a number", "f.csv: row 2, column 'value'")
    readings = [hr(at(11), 40.0, "resp_rate"), hr(at(11), 70.0), hr(at(11), 95.0, "spo2")]
    series = grid3(readings, channels=("resp_rate", "heart_rate"), dropped=[earlier])
    assert series.channels == ("resp_rate", "heart_rate") and series.units == ("/min", "/min")
    np.testing.assert_array_equal(series.values[2], [40.0, 70.0])
    assert series.dropped == (earlier,)


def test_grid_arguments_are_checked() -> None:
    with pytest.raises(VitalsError, match="end: .*no UTC offset"):
        build_grid([], end=datetime(2024, 3, 1, 12))
    with pytest.raises(ConfigError, match="not a whole number"):
        build_grid([], end=END, window_hours=1, step_minutes=25)
    with pytest.raises(ConfigError, match="positive"):
        build_grid([], end=END, step_minutes=0)
    with pytest.raises(ConfigError, match="unknown vital-sign channel"):
        build_grid([], end=END, channels=("heart_rate", "glucose"))
    with pytest.raises(ConfigError, match="repeat"):
        build_grid([], end=END, channels=("heart_rate", "heart_rate"))


def test_default_grid_is_hourly_over_48_hours() -> None:
    series = build_grid([hr(END - timedelta(minutes=1), 72.0)], end=END)
    assert series.values.shape == (48, len(VITAL_NAMES)) and series.start == END - timedelta(hours=48)
    assert series.mask.sum() == 1 and series.values[47, 0] == 72.0
    fine = build_grid([], end=END, window_hours=1.5, step_minutes=7.5)
    assert fine.values.shape == (12, len(VITAL_NAMES)) and fine.step_seconds == 450.0


def test_readings_frame_and_summary_rows() -> None:
    readings = [hr(at(9, 10), 60.0), hr(at(9, 40), 80.0), hr(at(11, 5), 100.0), hr(at(11, 6), 999.0)]
    series = grid3(readings, channels=("heart_rate", "spo2"))
    frame = readings_frame(series)
    assert list(frame.columns) == ["step", "time", "channel", "unit", "value", "observed"]
    assert len(frame) == 6
    assert frame["step"].tolist() == [0, 0, 1, 1, 2, 2]
    assert frame["channel"].tolist() == ["heart_rate", "spo2"] * 3
    assert frame["unit"].tolist() == ["/min", "%"] * 3
    assert [t.to_pydatetime() for t in frame["time"]] == [at(9), at(9), at(10), at(10), at(11), at(11)]
    assert frame["observed"].tolist() == [True, False, False, False, True, False]
    np.testing.assert_array_equal(frame["value"], [70.0, np.nan, np.nan, np.nan, 100.0, np.nan])
    heart, spo2 = summary_rows(series)
    assert heart == ChannelSummary("heart_rate", "/min", 2, 3, 70.0, 85.0, 100.0, 1)
    assert spo2 == ChannelSummary("spo2", "%", 0, 3, None, None, None, 0)


# ---- tables ---------------------------------------------------------------------------------

LONG_CSV = """time,code,value,unit
2024-03-01T10:05:00+00:00,8867-4,80,/min
2024-03-01T12:20:00+02:00,heart_rate,100,{beats}/min
2024-03-01T10:30:00Z,8310-5,98.6,[degF]
2024-03-01T10:40:00Z,29463-7,154,lb
2024-03-01T10:45:00Z,59408-5,97,%
"""


def test_long_csv_converts_units_and_times(tmp_path: Path) -> None:
    table = read_vitals_table(write(tmp_path, "vitals.csv", LONG_CSV))
    assert table.dropped == () and table.issues == ()
    got = [(r.time, r.channel, r.value, r.unit) for r in table.readings]
    assert got[0] == (at(10, 5), "heart_rate", 80.0, "/min")
    assert got[1] == (at(10, 20), "heart_rate", 100.0, "/min")
    assert got[2] == (at(10, 30), "temperature", pytest.approx(37.0), "Cel")
    assert got[3][1:] == ("weight", pytest.approx(154 * 0.45359237), "kg")
    assert got[4] == (at(10, 45), "spo2", 97.0, "%")
    assert table.readings[1].source.endswith("vitals.csv: row 2")


def test_bad_rows_are_reported_and_good_rows_kept(tmp_path: Path) -> None:
    text = (
        "time,code,value,unit\n"
        "2024-03-01T10:00:00Z,8867-4,72,/min\n"
        "2024-03-01T10:05:00Z,8867-4,Smith,/min\n"  # a string value
        "2024-03-01T10:10:00Z,8867-4,,/min\n"  # missing value
        "yesterday,8867-4,75,/min\n"  # unparseable time
        "2024-03-01T10:15:00Z,1234-5,75,/min\n"  # unknown code
        "2024-03-01T10:20:00Z,8867-4,75,beats per hour\n"  # unknown unit
        "2024-03-01T10:25:00Z,8867-4,75,%\n"  # known unit of another dimension
        "2024-03-01T10:30:00Z,85354-9,120,mm[Hg]\n"  # a panel has no single value
        "2024-03-01T10:35:00Z,8867-4,NaN,/min\n"
        "2024-03-01T10:40:00Z,8867-4,inf,/min\n"
        "2024-03-01T10:45:00Z,8867-4,78,/min\n"
    )
    path = write(tmp_path, "v.csv", text)
    table = read_vitals_table(path)
    assert [(r.time, r.value) for r in table.readings] == [(at(10), 72.0), (at(10, 45), 78.0)]
    drops = [(d.source, d.time, d.reason.split(" (")[0]) for d in table.dropped]
    assert drops == [
        (f"{path}: row 2, column 'value'", at(10, 5), "value is not a number"),
        (f"{path}: row 3, column 'value'", at(10, 10), "value is missing"),
        (f"{path}: row 6, column 'value'", at(10, 20), "unknown unit for heart_rate"),
        (f"{path}: row 7, column 'value'", at(10, 25), "unit % cannot be converted to /min for heart_rate"),
        (f"{path}: row 9, column 'value'", at(10, 35), "value is missing"),
        (f"{path}: row 10, column 'value'", at(10, 40), "value is not a finite number"),
    ]
    assert all(d.channel == "heart_rate" for d in table.dropped)
    assert [(i.where, i.kind) for i in table.issues] == [
        ("row 4, column 'time'", "skipped"),
        ("row 5, column 'code'", "skipped"),
        ("row 8, column 'code'", "skipped"),
    ]
    assert "unknown vital-sign code" in table.issues[1].message and "panel" in table.issues[2].message
    messages = " ".join([str(i) for i in table.issues] + [d.reason for d in table.dropped])
    assert "Smith" not in messages and "yesterday" not in messages and "1234-5" not in messages


def test_naive_times_are_utc_and_reported_once(tmp_path: Path) -> None:
    text = "Time,Channel,Value,Unit\n2024-03-01 10:00,heart_rate,70,/min\n2024-03-01 11:00,spo2,95,%\n"
    table = read_vitals_table(write(tmp_path, "v.csv", text))
    assert [r.time for r in table.readings] == [at(10), at(11)]
    (issue,) = table.issues
    assert issue.kind == "warning" and issue.where == "column 'Time'" and "2 time(s)" in issue.message
    assert "taken as UTC" in issue.message


def test_parquet_round_trip(tmp_path: Path) -> None:
    csv_table = read_vitals_table(write(tmp_path, "v.csv", LONG_CSV))
    frame = pd.read_csv(tmp_path / "v.csv")
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame.to_parquet(tmp_path / "v.parquet")
    pq_table = read_vitals_table(tmp_path / "v.parquet")
    assert pq_table.issues == () and pq_table.dropped == ()
    strip = lambda t: [(r.time, r.channel, r.value, r.unit) for r in t.readings]  # noqa: E731
    assert strip(pq_table) == strip(csv_table)
    # naive timestamps in Parquet are taken as UTC too, and said so
    frame["time"] = frame["time"].dt.tz_localize(None)
    frame.to_parquet(tmp_path / "naive.parquet")
    naive = read_vitals_table(tmp_path / "naive.parquet")
    assert strip(naive) == strip(csv_table) and naive.issues[0].kind == "warning"


def test_wide_format(tmp_path: Path) -> None:
    text = (
        "time,heart_rate [/min],8310-5 [[degF]],sbp [mm[Hg]],spo2,glucose [mg/dL],resp_rate [furlongs]\n"
        "2024-03-01T10:00:00Z,80,98.6,120,97,5,12\n"
        "2024-03-01T11:00:00+01:00,,100.4,,96,,\n"  # 10:00 UTC again; empty cells are not measured
        "2024-03-01T10:30:00Z,abc,,,,,\n"
        "not a time,90,,,,,\n"
    )
    path = write(tmp_path, "wide.csv", text)
    table = read_vitals_table(path)
    got = [(r.time, r.channel, round(r.value, 6)) for r in table.readings]
    assert got == [
        (at(10), "heart_rate", 80.0),
        (at(10), "temperature", 37.0),
        (at(10), "sbp", 120.0),
        (at(10), "temperature", 38.0),
    ]
    (drop,) = table.dropped
    assert (drop.source, drop.reason) == (f"{path}: row 3, column 'heart_rate [/min]'", "value is not a number")
    skipped = {i.where: i.message for i in table.issues}
    assert set(skipped) == {
        "column 'spo2'",
        "column 'glucose [mg/dL]'",
        "column 'resp_rate [furlongs]'",
        "row 4, column 'time'",
    }
    assert "no unit in the header" in skipped["column 'spo2'"]
    assert "unknown vital-sign code" in skipped["column 'glucose [mg/dL]'"]
    assert "unknown unit for resp_rate" in skipped["column 'resp_rate [furlongs]'"]
    # wide Parquet with float columns: NaN cells are "not measured"
    times = pd.to_datetime(["2024-03-01T10:00Z", "2024-03-01T11:00Z"])
    frame = pd.DataFrame({"time": times, "spo2 [%]": [95.0, np.nan]})
    frame.to_parquet(tmp_path / "wide.parquet")
    wide_pq = read_vitals_table(tmp_path / "wide.parquet")
    assert [(r.time, r.channel, r.value) for r in wide_pq.readings] == [(at(10), "spo2", 95.0)]
    assert wide_pq.dropped == () and wide_pq.issues == ()
    frame.set_index("time").to_parquet(tmp_path / "indexed.parquet")  # times kept as the index
    indexed = read_vitals_table(tmp_path / "indexed.parquet")
    assert [(r.time, r.channel, r.value) for r in indexed.readings] == [(at(10), "spo2", 95.0)]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("v.csv", "", "file is empty"),
        ("v.csv", "code,value,unit\n8867-4,70,/min\n", "missing column 'time'"),
        ("v.csv", "time,code,value,unit\n", "no data rows"),
        ("v.csv", "time,code,value\n2024-03-01T10:00Z,8867-4,70\n", "lacks column\\(s\\) 'unit'"),
        ("v.csv", "time\n2024-03-01T10:00Z\n", "no vital-sign columns"),
        ("v.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00", "not a readable CSV|column 'time'"),
        ("v.parquet", b"time,code\n", "not a readable Parquet"),
        ("v.json", "{}", "unsupported file type"),
    ],
)
def test_unreadable_files_raise_vitals_error(tmp_path: Path, name: str, content, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(VitalsError, match=expected) as info:
        read_vitals_table(path)
    assert str(path) in str(info.value) and isinstance(info.value, MedmmError)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(VitalsError, match="file not found"):
        read_vitals_table(tmp_path / "absent.csv")


def test_table_to_grid_end_to_end(tmp_path: Path) -> None:
    text = LONG_CSV + "2024-03-01T10:50:00Z,8867-4,900,/min\n2024-03-01T10:55:00Z,8867-4,x,/min\n"
    table = read_vitals_table(write(tmp_path, "v.csv", text))
    series = grid3(table.readings, channels=("heart_rate", "temperature"), dropped=table.dropped)
    np.testing.assert_allclose(series.values[1], [90.0, 37.0], rtol=1e-6)
    assert [d.reason for d in series.dropped] == ["value is not a number", "implausible: above 300 /min"]


# ---- properties -----------------------------------------------------------------------------

STEP_MINUTES = st.sampled_from([1.0, 5.0, 7.5, 15.0, 30.0, 60.0, 90.0, 120.0])
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def grids(draw):
    """A random grid and readings around it, some implausible, some duplicated, in random zones."""
    step_minutes = draw(STEP_MINUTES)
    n_steps = draw(st.integers(min_value=1, max_value=30))
    end = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**8)))
    end = end.astimezone(draw(OFFSETS))
    channels = draw(st.lists(st.sampled_from(VITAL_NAMES), min_size=1, max_size=7, unique=True))
    step_us = int(step_minutes * 60 * 1_000_000)
    window_us = n_steps * step_us
    start = end.astimezone(UTC) - timedelta(microseconds=window_us)
    raw = []
    for _ in range(draw(st.integers(0, 40))):
        sign = vital_for_code(draw(st.sampled_from(VITAL_NAMES)))
        span = sign.high - sign.low
        value = draw(st.floats(sign.low - span / 2, sign.high + span / 2, allow_nan=False))
        edge = st.integers(-1, n_steps + 1).map(lambda k: k * step_us)  # step edges, window start and end
        anywhere = st.integers(-step_us, window_us + step_us)
        offset = draw(st.one_of(anywhere, edge, edge.map(lambda e: e - 1)))  # microseconds after the start
        raw.append((sign.name, offset, value))
    raw += draw(st.lists(st.sampled_from(raw), max_size=5)) if raw else []
    readings = [
        VitalReading(start + timedelta(microseconds=off), name, value, vital_for_code(name).unit)
        for name, off, value in raw
    ]
    readings = [
        r if i % 2 else VitalReading(r.time.astimezone(draw(OFFSETS)), r.channel, r.value, r.unit)
        for i, r in enumerate(readings)
    ]
    order = draw(st.permutations(range(len(readings))))
    return dict(
        end=end,
        step_minutes=step_minutes,
        n_steps=n_steps,
        channels=tuple(channels),
        step_us=step_us,
        raw=raw,
        readings=[readings[i] for i in order],
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids())
def test_grid_cells_are_means_of_their_plausible_readings(case) -> None:
    n_steps, step_us, channels = case["n_steps"], case["step_us"], case["channels"]
    series = build_grid(
        case["readings"],
        end=case["end"],
        window_hours=n_steps * case["step_minutes"] / 60,
        step_minutes=case["step_minutes"],
        channels=channels,
    )
    # independent expectation in plain Python
    cells: dict[tuple[int, int], list[float]] = {}
    implausible = 0
    for name, offset, value in set(case["raw"]):
        if name not in channels or not 0 <= offset < n_steps * step_us:
            continue
        sign = vital_for_code(name)
        if not sign.low <= value <= sign.high:
            implausible += 1
            continue
        cells.setdefault((offset // step_us, channels.index(name)), []).append(value)

    assert series.values.shape == (n_steps, len(channels))
    assert series.start + timedelta(microseconds=n_steps * step_us) == case["end"]
    assert set(zip(*np.nonzero(series.mask))) == set(cells)  # no plausible reading lost, none invented
    for (t, c), values in cells.items():
        assert series.values[t, c] == pytest.approx(math.fsum(values) / len(values), rel=1e-6)
    assert np.isnan(series.values[~series.mask]).all()
    assert len(series.dropped) == implausible
    assert all(d.reason.startswith("implausible") for d in series.dropped)


# ---- regressions found by the ingest fuzzer (tests/fuzz) -----------------------------------------


def test_times_whose_offset_leaves_years_1_to_9999_are_skipped(tmp_path: Path) -> None:
    text = (
        "time,code,value,unit\n"
        "0001-01-01T00:00:00+14:00,8867-4,70,/min\n"  # 13 December of year 0 in UTC
        "9999-12-31T23:59:59-12:00,8867-4,71,/min\n"  # year 10000 in UTC
        "2024-03-01T10:00:00Z,8867-4,72,/min\n"
    )
    table = read_vitals_table(write(tmp_path, "v.csv", text))
    assert [(r.time, r.value) for r in table.readings] == [(at(10), 72.0)]
    assert [(i.where, i.kind) for i in table.issues] == [
        ("row 1, column 'time'", "skipped"),
        ("row 2, column 'time'", "skipped"),
    ]


def test_parquet_timestamps_before_year_1_are_skipped(tmp_path: Path) -> None:
    times = np.array(["0000-06-01T00:00:00", "2024-03-01T10:00:00"], dtype="datetime64[s]")
    frame = pd.DataFrame(
        {
            "time": pd.Series(times).dt.tz_localize("UTC"),
            "code": ["8867-4"] * 2,
            "value": [70.0, 72.0],
            "unit": ["/min"] * 2,
        }
    )
    frame.to_parquet(tmp_path / "v.parquet")
    table = read_vitals_table(tmp_path / "v.parquet")
    assert [(r.time, r.value) for r in table.readings] == [(at(10), 72.0)]
    assert [(i.where, i.kind) for i in table.issues] == [("row 1, column 'time'", "skipped")]


def test_parquet_with_invalid_utf8_text_is_a_vitals_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"time": ["2024-03-01T10:00:00Z"], "code": ["8867-4"], "value": ["72"], "unit": ["/min"]})
    frame.to_parquet(tmp_path / "v.parquet", compression=None)
    data = (tmp_path / "v.parquet").read_bytes()
    assert data.count(b"8867-4") >= 1
    (tmp_path / "v.parquet").write_bytes(data.replace(b"8867-4", b"8867\xff4"))  # a byte that is no UTF-8
    with pytest.raises(VitalsError, match="not a readable Parquet table") as err:
        read_vitals_table(tmp_path / "v.parquet")
    assert err.value.path == str(tmp_path / "v.parquet")


def test_grid_ending_within_its_window_of_year_1_is_a_vitals_error() -> None:
    with pytest.raises(VitalsError, match="before year 1"):
        build_grid([], end=datetime(1, 1, 1, 12, 0, tzinfo=UTC))


def test_a_huge_wide_header_reads_in_linear_time_and_its_column_is_skipped(tmp_path: Path) -> None:
    # a regex with a lazy name and trailing spaces took time quadratic in a header of spaces
    path = tmp_path / "wide.csv"

    def read(n: int):
        path.write_text(f"time,heart_rate{' ' * n}x,spo2 [%]\n2024-03-01T10:00:00Z,80,97\n")
        return read_vitals_table(path)

    assert growth(read) < LINEAR_BOUND
    table = read(1_000_000)
    assert [(r.channel, r.value) for r in table.readings] == [("spo2", 97.0)]
    (issue,) = table.issues
    assert issue.source == str(path) and issue.where.startswith("column 'heart_rate  ")
    assert issue.message == "no unit in the header (expected 'name [unit]'); column skipped"


@pytest.mark.parametrize(
    "header, expected",
    [
        ("heart_rate [/min]", ("heart_rate", "/min")),
        ("  8310-5 [[degF]] ", ("8310-5", "[degF]")),
        ("sbp[mm[Hg]]", ("sbp", "mm[Hg]")),
        ("x []", ("x", "")),
        ("[/min]", None),
        ("spo2", None),
        ("a] [b]", None),
        ("hr [/min", None),
        ("hr [/\nmin]", None),
    ],
)
def test_wide_header_split(header: str, expected) -> None:
    assert _wide_header(header) == expected


def test_parquet_with_corrupt_pandas_metadata_is_read_by_its_columns(tmp_path: Path) -> None:
    # found by the ingest fuzzer: a flipped byte in the "pandas" schema metadata made pandas raise KeyError
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"time": ["2024-01-01T10:00:00Z"], "code": ["8867-4"], "value": ["72"], "unit": ["/min"]})
    meta = {"index_columns": [], "column_indexes": [], "columns": [{"qame": "unit", "field_name": "unit"}]}  # no "name"
    table = table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    path = tmp_path / "v.parquet"
    pq.write_table(table, path)
    readings = read_vitals_table(path).readings
    assert [(r.channel, r.value) for r in readings] == [("heart_rate", 72.0)]


# ---- one step per encounter ------------------------------------------------------------------


def visit(day: int, hour: int = 9) -> datetime:
    return datetime(2024, 2, day, hour, 0, tzinfo=UTC)


def test_encounter_grid_groups_by_step_keeps_the_latest_and_the_window() -> None:
    readings = [
        VitalReading(visit(1, 9), "heart_rate", 80.0, "/min", step=visit(1)),
        VitalReading(visit(1, 10), "heart_rate", 90.0, "/min", step=visit(1)),  # same encounter, an hour later
        VitalReading(visit(1, 10), "spo2", 97.0, "%", step=visit(1)),
        VitalReading(visit(5), "heart_rate", 100.0, "/min", step=visit(5)),
        VitalReading(visit(9, 14), "resp_rate", 20.0, "/min"),  # no step: its own time is its step
        VitalReading(visit(20), "heart_rate", 70.0, "/min", step=visit(20)),
        VitalReading(END, "heart_rate", 60.0, "/min", step=END),  # at the study time: outside [end - window, end)
        VitalReading(visit(1) - timedelta(days=60), "heart_rate", 50.0, "/min"),  # before the window
        VitalReading(visit(22), "heart_rate", 999.0, "/min", step=visit(22)),  # implausible: dropped with its reason
    ]
    grid = build_encounter_grid(readings, end=END, window_hours=30 * 24, max_steps=3)
    assert grid.per_encounter and grid.step_seconds == 0.0
    assert grid.times == (visit(5), visit(9, 14), visit(20))  # the latest 3 of 4 encounters, oldest first
    hr_, rr = grid.channels.index("heart_rate"), grid.channels.index("resp_rate")
    np.testing.assert_array_equal(grid.mask.sum(axis=1), [1, 1, 1])
    assert (grid.values[0, hr_], grid.values[1, rr], grid.values[2, hr_]) == (100.0, 20.0, 70.0)
    assert [d.channel for d in grid.dropped] == ["heart_rate"] and "implausible" in grid.dropped[0].reason
    wide = build_encounter_grid(readings, end=END, window_hours=30 * 24, max_steps=16)
    assert (
        wide.times[0] == visit(1)
        and wide.values[0, hr_] == 85.0
        and wide.values[0, grid.channels.index("spo2")] == 97.0
    )
    np.testing.assert_allclose(wide.hours, [(w - visit(1)).total_seconds() / 3600 for w in wide.times])
    empty = build_encounter_grid([], end=END, window_hours=24, max_steps=4)
    assert empty.values.shape == (0, len(VITAL_NAMES)) and empty.times == ()
    with pytest.raises(ConfigError):
        build_encounter_grid(readings, end=END, window_hours=24, max_steps=0)


def test_long_table_step_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "v.csv",
        "time,code,value,unit,step\n"
        "2024-02-01T09:30:00Z,8867-4,80,/min,2024-02-01T09:00:00Z\n"
        "2024-02-01T09:40:00Z,8867-4,90,/min,not a time\n"
        "2024-02-01T09:50:00Z,8867-4,70,/min,\n",
    )
    table = read_vitals_table(path)
    assert [r.step for r in table.readings] == [visit(1), None, None]
    assert len(table.issues) == 1 and "row 2" in table.issues[0].where and "step" in table.issues[0].message
