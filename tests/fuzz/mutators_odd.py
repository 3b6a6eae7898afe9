"""Mutation families for odd values: codec names as charsets, numeric literals too long for the
JSON parser, values of the wrong JSON type at any path, long unstructured strings, and dates and
time zones at the edges of the calendar. FHIR mutators edit a parsed document in place; table
mutators edit the rows (header first) before they are written.

A numeric literal no Python value serialises to is planted as a RAW placeholder string that
`raw_text` turns into the literal after json.dumps.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from collections.abc import Callable
from typing import Any

from tests.fuzz.json_paths import slots

RAW = "\x00raw:"  # a string starting so is written into the JSON text as what follows, unquoted
_RAW_JSON = re.compile(re.escape(json.dumps(RAW)[:-1]) + r'([-+.eE0-9]*)"')

CODEC_CHARSETS = (
    "rot13",
    "hex",
    "base64",
    "zlib",
    "bz2",
    "uu",
    "quopri",
    "punycode",
    "idna",
    "unicode_escape",
    "raw_unicode_escape",
    "undefined",
    "charmap",
    "utf-7",
    "utf-16",
    "utf-32-be",
    "cp037",
    "x-unknown",
    "utf\x008",
    "",
    '"utf-8"',
)
HUGE_LITERALS = (
    "1" * 4_300,
    "1" * 4_301,
    "-" + "9" * 10_000,
    "7" * 100_000,
    "1e999999",
    "-1e-999999",
    "0." + "0" * 5_000 + "1",
    "12345678901234567890" * 300 + ".5",
    "1" * 50_000 + "e-49999",
)
LONG_LENGTHS = (1_000, 32_000, 300_000, 1_000_000)
# Keys whose strings are read as more than text: references, units, codes, times, types, markup.
LONG_KEYS = (
    "reference",
    "fullUrl",
    "url",
    "unit",
    "code",
    "system",
    "display",
    "contentType",
    "div",
    "id",
    "value",
    "text",
    "title",
    "family",
    "birthDate",
    "effectiveDateTime",
    "issued",
    "date",
    "type",
)
ODD_DATES = (
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01",
    "0001",
    "0001-01",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59.999999-12:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31",
    "9999",
    "1899-12-31T23:59:59+14:00",
    "1850-06-01T12:00:00-12:00",
    "1752-09-03",
    "1900-01-01T00:00:00-12:00",
    "2999-01-01T00:00:00Z",
    "5000-06-15T12:00:00+14:00",
    "2100-02-29",
    "2096-02-29T00:00:00-12:00",
    "2024-03-10T08:00:00+14:00",
    "2024-03-10T08:00:00-12:00",
    "2024-03-10T08:00:00+13:59",
    "2024-03-10T08:00:00-00:00",
    "2024-03-10T23:59:60Z",
    "2024-03-10T24:00:00Z",
    "2024-03-10T08:00:00.000000001+14:00",
)
ODD_TABLE_TIMES = ODD_DATES + (
    "0001-01-01 00:00:00+14:00",
    "9999-12-31 23:59:59-12:00",
    "1899-12-31T23:00",
    "2024-03-09T20:10:00+23:59",
    "2024-03-09T20:10:00-23:59",
    "00010101T000000",
)


# ---------------------------------------------------------------------------------------------
# values


def long_string(rng: random.Random, length: int | None = None, cell_safe: bool = False) -> str:
    """A long unstructured string of one of the shapes that trip parsers: runs of one character,
    repeated fragments of references, units, markup or references to characters."""
    n = length or rng.choice(LONG_LENGTHS)
    fragments = (
        "A",
        "Ab",
        " ",
        "{a}",
        "{",
        "}{",
        "/",
        "Patient/",
        "<a",
        "</",
        "&#1",
        "[",
        "0",
        "-",
        ":",
        "\t",
        "a b",
        "urn:uuid:",
        "%",
        "T",
        "+14:00",
    )
    if rng.random() < 0.2:
        alphabet = string.ascii_letters + string.digits + " /{}[]<>&#:;.-_+%"
        text = "".join(rng.choice(alphabet) for _ in range(min(n, 5_000)))
        text = (text * (n // len(text) + 1))[:n]
    else:
        fragment = rng.choice(fragments)
        text = fragment * (n // len(fragment) + 1)
        if rng.random() < 0.5:
            text = text[: n - 1] + rng.choice("x]}>!/ \n")
    if cell_safe:  # a CSV cell written unquoted: no separator, quote or line break
        text = text.replace(",", ";").replace('"', "'").replace("\n", " ").replace("\r", " ")
    return text[:n]


def _other_type(value: Any, rng: random.Random) -> Any:
    """A JSON value of another type than `value`: a number, list, object, boolean, null or long string."""
    choices = [7, 1.5, ["x"], {"x": 1}, True, None, "A" * rng.choice((100, 20_000, 300_000))]
    kinds = {bool: "bool", int: "int", float: "float", list: "list", dict: "dict", str: "str", type(None): "null"}
    return rng.choice([c for c in choices if kinds[type(c)] != kinds.get(type(value))])


def raw_text(text: str) -> str:
    """JSON text with each RAW placeholder replaced by its literal (one pass, linear)."""
    return _RAW_JSON.sub(lambda m: m[1], text) if "raw:" in text else text


# ---------------------------------------------------------------------------------------------
# FHIR documents


def codec_charset(doc: Any, rng: random.Random) -> None:
    """Label an attachment with a charset that names a codec (or nothing real) instead of a character set."""
    found = slots(doc, "contentType")
    charset = rng.choice(CODEC_CHARSETS)
    media = rng.choice(("text/plain", "text/html", "application/xhtml+xml"))
    if not found:
        return
    for container, key in rng.sample(found, rng.randint(1, len(found))):
        container[key] = f"{media}; charset={charset}"
        if rng.random() < 0.3 and isinstance(container, dict):  # data the codec would accept
            payload = {"hex": b"6869", "base64": b"aGk=", "rot13": b"uv"}.get(charset, b"hi")
            container["data"] = base64.b64encode(payload).decode()


def huge_literal(doc: Any, rng: random.Random) -> None:
    """Write a numeric literal longer than the JSON parser converts (or at its limit) at a number, else anywhere."""
    found = slots(doc)
    numbers = [(c, k) for c, k in found if isinstance(c[k], (int, float)) and not isinstance(c[k], bool)]
    container, key = rng.choice(numbers or found or [({}, "x")])
    container[key] = RAW + rng.choice(HUGE_LITERALS)


def wrong_type(doc: Any, rng: random.Random) -> None:
    """Give any element, leaf or not, a value of another JSON type."""
    found = slots(doc)
    if found:
        container, key = rng.choice(found)
        container[key] = _other_type(container[key], rng)


def long_fhir_string(doc: Any, rng: random.Random) -> None:
    """Replace a reference, fullUrl, unit, code, time or markup (or an attachment's text) with a long string."""
    if rng.random() < 0.25:
        attachments = [c for c, k in slots(doc, "contentType") if isinstance(c, dict)]
        if attachments:
            attachment = rng.choice(attachments)
            attachment["contentType"] = rng.choice(("text/html", "text/plain"))
            attachment["data"] = base64.b64encode(long_string(rng).encode()).decode()
            return
    found = slots(doc, rng.choice(LONG_KEYS)) or slots(doc)
    if found:
        container, key = rng.choice(found)
        container[key] = long_string(rng)


def odd_fhir_date(doc: Any, rng: random.Random) -> None:
    """Set dates and date-times (birth, effective, issued, periods, ...) to years 1 or 9999, dates
    before 1900 or far ahead, and offsets at the ends of the range (+14:00, -12:00)."""
    dated = [(c, k) for c, k in slots(doc) if isinstance(c[k], str) and re.match(r"\d{4}-\d\d", c[k])]
    for container, key in rng.sample(dated, min(len(dated), rng.randint(1, 4))):
        container[key] = rng.choice(ODD_DATES)


FHIR_FAMILIES: tuple[Callable[[Any, random.Random], None], ...] = (
    codec_charset,
    huge_literal,
    wrong_type,
    wrong_type,
    long_fhir_string,
    long_fhir_string,
    odd_fhir_date,
)


# ---------------------------------------------------------------------------------------------
# tables


def long_cell(rows: list[list[str]], rng: random.Random) -> None:
    """A long unstructured unit, code, value or time cell, or a long header (with or without a unit)."""
    header = rows[0]
    if rng.random() < 0.3 and header:
        j = rng.randrange(len(header))
        text = long_string(rng, cell_safe=True)
        header[j] = rng.choice((text, f"heart_rate{text}[/min]", f"heart_rate [{text}]", f"{text} [/min]"))
        return
    columns = [j for j, h in enumerate(header) if h in ("unit", "code", "value", "time")] or list(range(len(header)))
    if len(rows) < 2 or not columns:
        return
    j, i = rng.choice(columns), rng.randrange(1, len(rows))
    if j < len(rows[i]):
        rows[i][j] = long_string(rng, cell_safe=True)


def odd_table_time(rows: list[list[str]], rng: random.Random) -> None:
    """Times in years 1 or 9999, before 1900 or far ahead, or at the ends of the offset range."""
    if "time" not in rows[0]:
        return
    j = rows[0].index("time")
    body = [r for r in rows[1:] if j < len(r)]
    for row in rng.sample(body, min(len(body), rng.randint(1, 3))):
        row[j] = rng.choice(ODD_TABLE_TIMES)


TABLE_FAMILIES: tuple[Callable[[list[list[str]], random.Random], None], ...] = (long_cell, odd_table_time)
