"""Seeded mutators for FHIR JSON / NDJSON and vitals tables (CSV, Parquet).

JSON mutators edit a copy of the parsed document (deleted keys, changed types, wrong codes,
huge numbers, NaN strings, deep nesting, bad references, bad base64, odd dates, repeated
entries, and the families of :mod:`tests.fuzz.mutators_odd`: codec charsets, huge literals,
wrong types at any path, long strings, dates at the calendar's edges); a byte-level pass may
then cut or corrupt the text. Table mutators edit the rows (bad times, values and units,
missing or renamed columns, ragged rows, a file blown up and cut short, long cells and headers,
times at the calendar's edges) before the text or Parquet bytes are written.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tests.fuzz.json_paths import set_random, slots
from tests.fuzz.mutators_odd import FHIR_FAMILIES, TABLE_FAMILIES, raw_text
from tests.fuzz.seeds import parquet_bytes, table_text

_NEST = "\x00nest\x00"  # placeholder replaced by deeply nested JSON text after serialising
ODD_VALUES: tuple[Any, ...] = (None, True, 0, -1, 1.5, "", "x", [], {}, [1, "a"], {"a": {}}, "\u00e9\u2028\U0001f600")
HUGE_NUMBERS: tuple[Any, ...] = (
    1e308,
    -1e308,
    10**30,
    2**64,
    -0.0,
    5e-324,
    float("inf"),
    float("-inf"),
    float("nan"),
    10**400,
)
NAN_STRINGS = ("NaN", "nan", "Infinity", "-Infinity", "1e999", "", " ", "0x1F", "1,5", "12abc")
BAD_CODES: tuple[Any, ...] = ("", "0000-0", " 8867-4", "85354-9", "8310-5", "2708-6", "UNK", 42, None, "\u00e9")
BAD_SYSTEMS = ("", "http://loinc.org/", "urn:oid:", "http://snomed.info/sct", "http://unitsofmeasure.org")
BAD_REFERENCES: tuple[Any, ...] = (
    "",
    "Patient/",
    "Patient/does-not-exist",
    "urn:uuid:00000000",
    "#missing",
    "Practitioner/1",
    "Patient/1/_history/x",
    "http://other.example/Patient/1",
    "Patient?identifier=|",
    "Patient/" + "9" * 300,
    7,
    None,
    {"reference": {}},
)
BAD_BASE64 = (
    "!!!!",
    "abc",
    "YQ",
    "====",
    "\u00fc\u00fc",
    "YWJj\nZGVm",
    "",
    base64.b64encode(b"\xff\xfe\x00\xc3(").decode(),
    base64.b64encode(b"x" * 300_000).decode(),
)
BAD_DATES = (
    "2024-13-45T25:61:00Z",
    "0000-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-12:00",
    "2024-02-30",
    "2024-03-10T08:00:00",
    "2024",
    "2024-03",
    "2024-03-10T08:00",
    "yesterday",
    "",
    "2024-03-10T08:00:00+25:00",
    "1900-01-01T00:00:00.123456789Z",
)
BAD_TIMES = (
    "",
    "yesterday",
    "2024-02-30T00:00:00Z",
    "9999-12-31T23:59:59",
    "0001-01-01T00:00:00+14:00",
    "1700000000",
    "2024-03-10T08:00:00+25:00",
    "2024-03-10 08:00",
    "NaT",
    "2024-W10",
    "T08:00",
    "2024-03-10T08:00:00.1234567Z",
    "\u0662\u0660\u0662\u0664-03-10",
)
BAD_VALUES = (
    "abc",
    "1,5",
    "1e999",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "0x10",
    "  ",
    "1_000",
    "1e-400",
    "-0",
    "+5",
    "9" * 400,
    "\u0661\u0662",
    "True",
)
BAD_UNITS = ("K", "mmHg2", "", "{x}", "{", "}{", "[degF", "kg{", "{beats}/min{", "/MIN", "\u00b0C", "%%", "1/s")
BAD_HEADERS = (
    "",
    "Time",
    " time ",
    "value",
    "code",
    "heart_rate [",
    "[/min]",
    "heart_rate [K]",
    "heart_rate [[/min]]",
    "x [/min]",
    "time.1",
    "\ufefftime",
)


def delete_key(doc: Any, rng: random.Random) -> None:
    dicts = [c for c, _ in slots(doc) if isinstance(c, dict) and c]
    if dicts:
        target = rng.choice(dicts)
        target.pop(rng.choice(sorted(target)), None)


def change_type(doc: Any, rng: random.Random) -> None:
    set_random(doc, rng, None, ODD_VALUES)


def wrong_code(doc: Any, rng: random.Random) -> None:
    if rng.random() < 0.7:
        set_random(doc, rng, "code", BAD_CODES)
    else:
        set_random(doc, rng, "system", BAD_SYSTEMS)


def huge_number(doc: Any, rng: random.Random) -> None:
    numbers = [(c, k) for c, k in slots(doc) if isinstance(c[k], (int, float)) and not isinstance(c[k], bool)]
    container, k = rng.choice(numbers) if numbers else rng.choice(slots(doc) or [({}, "x")])
    container[k] = rng.choice(HUGE_NUMBERS)


def nan_string(doc: Any, rng: random.Random) -> None:
    set_random(doc, rng, "value", NAN_STRINGS)


def deep_nesting(doc: Any, rng: random.Random) -> None:
    """Mark a value for replacement by nested arrays or extensions (see `_serialise`)."""
    set_random(doc, rng, rng.choice((None, "extension", "valueQuantity")), (_NEST,))


def bad_reference(doc: Any, rng: random.Random) -> None:
    set_random(doc, rng, "reference", BAD_REFERENCES)


def bad_base64(doc: Any, rng: random.Random) -> None:
    set_random(doc, rng, "data", BAD_BASE64)


def bad_date(doc: Any, rng: random.Random) -> None:
    dated = [(c, k) for c, k in slots(doc) if isinstance(c[k], str) and c[k][:2] in ("19", "20") and "-" in c[k]]
    if dated:
        container, k = rng.choice(dated)
        container[k] = rng.choice(BAD_DATES)


def repeat_entry(doc: Any, rng: random.Random) -> None:
    """Repeat an entry (or resource) up to 20 times, sometimes as a second Patient."""
    entries = doc.get("entry") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not entries:
        return
    item = copy.deepcopy(rng.choice(entries))
    resource = item.get("resource", item) if isinstance(item, dict) else None
    if isinstance(resource, dict) and resource.get("resourceType") == "Patient" and rng.random() < 0.5:
        resource["id"] = "other"
    entries.extend(copy.deepcopy(item) for _ in range(rng.randint(1, 20)))


def odd_resource_type(doc: Any, rng: random.Random) -> None:
    set_random(doc, rng, "resourceType", ("Bundle", "Patient", "Binary", "patient", "", "Foo", 3, None))


JSON_MUTATORS: tuple[Callable[[Any, random.Random], None], ...] = (
    delete_key,
    delete_key,
    change_type,
    change_type,
    wrong_code,
    huge_number,
    nan_string,
    deep_nesting,
    bad_reference,
    bad_base64,
    bad_date,
    repeat_entry,
    odd_resource_type,
    *FHIR_FAMILIES,
)


def _nest_text(rng: random.Random) -> str:
    depth = rng.choice((20, 200, 990, 5_000, 200_000))
    if rng.random() < 0.5:
        return "[" * depth + "1" + "]" * depth
    return '{"url":"x","extension":[' * depth + '{"url":"y","valueString":"z"}' + "]}" * depth


def _serialise(obj: Any, rng: random.Random) -> str:
    text = raw_text(json.dumps(obj))
    while json.dumps(_NEST) in text:
        text = text.replace(json.dumps(_NEST), _nest_text(rng), 1)
    return text


def corrupt_text(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A byte-level corruption of text: cut, flipped bytes, invalid UTF-8, NUL, BOM, CRLF."""
    choice = rng.randrange(3)
    if choice == 0 and data:
        return data[: rng.randrange(len(data))], "truncate"
    if choice == 1 and data:
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out), "flip_bytes"
    at = rng.randrange(len(data) + 1)
    insert = rng.choice((b"\xff\xfe\xc3(", b"\x00", b"\xef\xbb\xbf", b"\r\n", b'"'))
    return data[:at] + insert + data[at:], "insert_bytes"


def mutate_fhir(doc: Any, rng: random.Random) -> tuple[bytes, list[str]]:
    """One to four JSON mutations of a FHIR document, then sometimes a byte-level corruption."""
    doc = json.loads(json.dumps(doc))  # a copy, several times faster than deepcopy
    names = []
    for _ in range(rng.randint(1, 4)):
        mutator = rng.choice(JSON_MUTATORS)
        mutator(doc, rng)
        names.append(mutator.__name__)
    data = _serialise(doc, rng).encode("utf-8", "surrogatepass")
    if rng.random() < 0.25:
        data, name = corrupt_text(data, rng)
        names.append(name)
    return data, names


def mutate_ndjson(resources: list[Any], rng: random.Random) -> tuple[bytes, list[str]]:
    """Mutate the resources of an NDJSON export, then sometimes its lines (dropped, joined, junk)."""
    resources = json.loads(json.dumps(resources))
    names = []
    for _ in range(rng.randint(1, 3)):
        mutator = rng.choice(JSON_MUTATORS)
        if mutator is repeat_entry:
            repeat_entry(resources, rng)
        else:
            mutator(rng.choice(resources), rng)
        names.append(mutator.__name__)
    lines = [_serialise(r, rng) for r in resources]
    if rng.random() < 0.3:
        at = rng.randrange(len(lines))
        how = rng.choice(("drop", "join", "junk", "blank"))
        if how == "drop":
            del lines[at]
        elif how == "join" and at + 1 < len(lines):
            lines[at : at + 2] = [lines[at] + lines[at + 1]]
        elif how == "junk":
            lines.insert(at, rng.choice(("not json", "[]", "42", "{}", '{"resourceType": 1}')))
        else:
            lines.insert(at, "   ")
        names.append(f"line {how}")
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    if rng.random() < 0.2:
        data, name = corrupt_text(data, rng)
        names.append(name)
    return data, names


# ---------------------------------------------------------------------------------------------
# tables


def _cell(rows: list[list[str]], rng: random.Random, header: str | None) -> tuple[int, int] | None:
    """A random data cell, in the column named `header` when there is one."""
    if len(rows) < 2 or not rows[0]:
        return None
    columns = [j for j, h in enumerate(rows[0]) if header is None or h == header]
    j = rng.choice(columns) if columns else rng.randrange(len(rows[0]))
    i = rng.randrange(1, len(rows))
    return (i, j) if j < len(rows[i]) else None


def _set_cell(rows: list[list[str]], rng: random.Random, header: str | None, values: tuple[str, ...]) -> None:
    at = _cell(rows, rng, header)
    if at is not None:
        rows[at[0]][at[1]] = rng.choice(values)


def bad_time(rows: list[list[str]], rng: random.Random) -> None:
    _set_cell(rows, rng, "time", BAD_TIMES)


def bad_value(rows: list[list[str]], rng: random.Random) -> None:
    _set_cell(rows, rng, "value" if "value" in rows[0] else None, BAD_VALUES)


def bad_unit(rows: list[list[str]], rng: random.Random) -> None:
    _set_cell(rows, rng, "unit", BAD_UNITS)


def bad_code(rows: list[list[str]], rng: random.Random) -> None:
    _set_cell(rows, rng, "code", ("", "85354-9", "0000-0", "HEART_RATE", "heart rate", "8867", "\u00e9"))


def drop_column(rows: list[list[str]], rng: random.Random) -> None:
    if rows[0]:
        j = rng.randrange(len(rows[0]))
        for row in rows:
            if j < len(row):
                del row[j]


def rename_header(rows: list[list[str]], rng: random.Random) -> None:
    if rows[0]:
        rows[0][rng.randrange(len(rows[0]))] = rng.choice(BAD_HEADERS)


def ragged_row(rows: list[list[str]], rng: random.Random) -> None:
    row = rows[rng.randrange(len(rows))]
    if row and rng.random() < 0.5:
        row.pop()
    else:
        row.extend(rng.choice(("", "x", "1")) for _ in range(rng.randint(1, 3)))


def quote_cell(rows: list[list[str]], rng: random.Random) -> None:
    _set_cell(rows, rng, None, ('"', '"80', '"8"0"', "'", "8\n0", "80;81"))


def blow_up(rows: list[list[str]], rng: random.Random) -> None:
    """Repeat the data rows to a few thousand (a large export, later perhaps cut short), to at
    most about 4 MB (a row holding a long cell is repeated fewer times)."""
    body = rows[1:] or [[]]
    copies = rng.randint(100, 800) // len(body)
    size = sum(len(cell) + 1 for row in body for cell in row) or 1
    rows.extend(list(r) for r in body * min(copies, max(1, 4_000_000 // size)))


TABLE_MUTATORS: tuple[Callable[[list[list[str]], random.Random], None], ...] = (
    bad_time,
    bad_time,
    bad_value,
    bad_value,
    bad_unit,
    bad_code,
    drop_column,
    rename_header,
    ragged_row,
    quote_cell,
    blow_up,
    *TABLE_FAMILIES,
)


def _mutate_rows(rows: tuple[tuple[str, ...], ...], rng: random.Random) -> tuple[list[list[str]], list[str]]:
    table = [list(r) for r in rows]
    names = []
    for _ in range(rng.randint(1, 4)):
        mutator = rng.choice(TABLE_MUTATORS)
        mutator(table, rng)
        names.append(mutator.__name__)
    return table, names


def mutate_table(rows: tuple[tuple[str, ...], ...], rng: random.Random) -> tuple[bytes, list[str]]:
    """Row mutations written as CSV text, then sometimes a byte-level corruption."""
    table, names = _mutate_rows(rows, rng)
    data = table_text(table)
    if "blow_up" in names and rng.random() < 0.7:
        data = data[: rng.randrange(len(data) // 2, len(data))]
        names.append("cut")
    elif rng.random() < 0.25:
        data, name = corrupt_text(data, rng)
        names.append(name)
    return data, names


def _odd_types(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A Parquet table whose columns have unexpected types (epoch numbers, booleans, all-null, index)."""
    frame = pd.read_parquet(io.BytesIO(data))
    column = rng.choice(list(frame.columns)) if len(frame.columns) else None
    how = rng.choice(("int", "float", "bool", "null", "category", "index"))
    if column is None:
        return data, "no columns"
    if how == "int":
        frame[column] = np.arange(len(frame), dtype=np.int64) * 10**9
    elif how == "float":
        frame[column] = np.resize(np.array([-1e308, 0.0, 1e308, np.nan]), len(frame))
    elif how == "bool":
        frame[column] = np.arange(len(frame)) % 2 == 0
    elif how == "null":
        frame[column] = None
    elif how == "category":
        try:
            frame[column] = frame[column].astype(str).astype("category")
        except (ValueError, NotImplementedError):  # a timestamp outside years 1-9999 has no text form
            frame[column] = frame[column].astype("category")
    else:
        frame = frame.set_index(column)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue(), f"{how} column"


def mutate_parquet(rows: tuple[tuple[str, ...], ...], rng: random.Random) -> tuple[bytes, list[str]]:
    """Row mutations written as Parquet (typed or text), then odd column types or broken bytes."""
    table, names = _mutate_rows(rows, rng)
    header = table[0]
    table[0] = [h if h not in header[:j] else f"{h}.{j}" for j, h in enumerate(header)]  # Parquet needs unique names
    data = parquet_bytes(table, typed=rng.random() < 0.6)
    if rng.random() < 0.4:
        data, name = _odd_types(data, rng)
        names.append(name)
    elif rng.random() < 0.4:
        data, name = corrupt_text(data, rng)
        names.append(name)
    return data, names
