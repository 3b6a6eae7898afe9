"""Reading FHIR files into validated entries: JSON resources, Bundles and Bulk Data NDJSON.

Each resource medmm reads is validated on its own with the fhir.resources models, so that a bad
entry is reported (index, resource type, field) and skipped while the rest is used. Resources
medmm does not read (other types, non-vital Observations, DiagnosticReports without a
presentedForm) are only counted.

Failures are contained at the smallest unit that can be skipped: a resource the models reject
(whatever they raise) is reported and skipped; an NDJSON line that is not a FHIR resource is
reported and skipped; a file that cannot be read at all is reported and skipped when other
files are read with it, and raised (FhirError naming it) when it is the only one.

Version rule: a resource is validated with the R4B models (they read R4, which most exports
emit) unless the resource or an enclosing Bundle declares R5, through a `meta.tag` in the
FHIR-version code system (code 5.x), a `meta.profile` under hl7.org/fhir/5.0 or /R5, or a
`fhirVersion` element starting with 5. When the preferred version rejects a resource and the
other accepts it, the other is used; when both reject it, the preferred version's error is
reported.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import fhir.resources.fhirtypes as _r5_types
import fhir.resources.R4B.fhirtypes as _r4b_types
from fhir.resources import get_fhir_model_class as _r5_model
from fhir.resources.R4B import get_fhir_model_class as _r4b_model

from medmm.codes import LOINC, VitalSign, vital_for_code
from medmm.errors import FhirError
from medmm.io.fhir_messages import describe_failure
from medmm.records import Issue

# Resource types medmm reads and therefore validates; others are only counted.
READ_TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "Condition",
        "DocumentReference",
        "DiagnosticReport",
        "Composition",
        "Encounter",
        "Binary",
    }
)
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
WITHDRAWN = frozenset({"entered-in-error", "cancelled"})  # statuses whose content must not be used
FHIR_VERSION_SYSTEM = "http://hl7.org/fhir/FHIR-version"
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
# A dateTime with hours and minutes, optional seconds and optional zone.
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")


@dataclass
class Entry:
    """One resource found in the input, where it was, and its validated model (None if invalid)."""

    source: str  # file
    where: str  # "entry 17 (Observation)", "line 3 (Patient)", "resource (Patient)"
    rtype: str
    raw: dict[str, Any]
    full_url: str | None = None
    request_url: str | None = None  # Bundle.entry.request.url of a PUT: the resource's identity
    hint: str | None = None  # "R5" | "R4B" when the input declares a version
    model: Any = None
    version: str | None = None

    @property
    def label(self) -> str:
        """File and place, as used in `source` fields of records."""
        return f"{self.source}: {self.where}"


@dataclass
class Log:
    """Issues and time-zone assumptions gathered while reading one input (reported per file)."""

    issues: list[Issue] = field(default_factory=list)
    naive_times: Counter[str] = field(default_factory=Counter)
    date_only: Counter[str] = field(default_factory=Counter)

    def add(self, source: str, where: str, message: str, kind: str = "warning") -> None:
        """Record an Issue (the message must not carry patient values)."""
        self.issues.append(Issue(source=source, where=where, message=message, kind=kind))

    def time_issues(self) -> list[Issue]:
        """One Issue per file for each kind of time assumption made."""
        out = []
        for source, n in sorted(self.naive_times.items()):
            out.append(Issue(source, "", f"{n} date-time value(s) without a time zone taken as UTC"))
        for source, n in sorted(self.date_only.items()):
            out.append(Issue(source, "", f"{n} date value(s) without a time of day taken as 00:00 UTC"))
        return out


def utc_time(value: Any, source: str, log: Log) -> datetime | None:
    """A FHIR date/dateTime/instant as read by the models -> timezone-aware UTC datetime.

    Dates and partial dates ("2020", "2020-03") become the first instant of the period, UTC.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # normalised away before validation; kept for safety
            log.naive_times[source] += 1
            return value.replace(tzinfo=timezone.utc)
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 falls before year 1 in UTC
            log.add(source, "", "date-time outside years 1-9999 in UTC; not used")
            return None
    if isinstance(value, date):
        log.date_only[source] += 1
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", value.strip())
        if m:
            log.date_only[source] += 1
            return datetime(int(m[1]), int(m[2] or 1), 1, tzinfo=timezone.utc)
    return None


def load_entries(paths: list[Path], log: Log, signs: Sequence[VitalSign] | None = None) -> list[Entry]:
    """Every resource in `paths`, with bundles expanded and read types validated (Observations only
    when they carry a vital sign of `signs`, default medmm's seven).

    A file that cannot be read becomes a skipped Issue naming it while the other files are read;
    when no file can be read, the FhirError of the first is raised (naming the others).
    """
    entries: list[Entry] = []
    failed: list[FhirError] = []
    for path in paths:
        found: list[Entry] = []
        issues_before = len(log.issues)
        try:
            for obj, where in _read_file(path, log):
                _expand(obj, str(path), where, None, found, log)
        except FhirError as exc:
            del log.issues[issues_before:]  # what the unreadable file said before failing is moot
            failed.append(exc)
            continue
        entries.extend(found)
    if failed and len(failed) == len(paths):
        raise _none_read(failed)
    for exc in failed:
        log.add(exc.path or "", exc.where or "", f"file not read: {exc.detail}", kind="skipped")
    for entry in entries:
        if entry.rtype in READ_TYPES and _carries_what_medmm_reads(entry.raw, signs):
            _validate(entry, log)
    return entries


def _none_read(failed: list[FhirError]) -> FhirError:
    """The error for an input none of whose files could be read: the first file's, naming the rest."""
    first = failed[0]
    if len(failed) == 1:
        return first
    names = [Path(exc.path).name if exc.path else "?" for exc in failed[1:]]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    detail = f"{first.detail}; no other FHIR file could be read either ({shown})"
    return FhirError(detail, path=first.path, where=first.where)


def _carries_what_medmm_reads(raw: dict[str, Any], signs: Sequence[VitalSign] | None = None) -> bool:
    """False for well-formed Observations with no vital-sign LOINC code and DiagnosticReports
    with no presentedForm (lab results, surveys: most of a long export): counted, not validated."""
    if raw["resourceType"] == "DiagnosticReport":
        return bool(raw.get("presentedForm"))
    if raw["resourceType"] != "Observation":
        return True
    components = raw.get("component", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        return True
    for concept in [raw.get("code"), *(c.get("code") for c in components)]:
        codings = concept.get("coding", []) if isinstance(concept, dict) else None
        if not isinstance(codings, list):
            return True  # malformed: validate, so that the error is reported
        for coding in codings:
            if not isinstance(coding, dict):
                return True
            if coding.get("system") == LOINC and vital_for_code(str(coding.get("code")), signs):
                return True
    return False


def _read_file(path: Path, log: Log) -> list[tuple[dict[str, Any], str]]:
    """The top-level resources of one file and their place ("" for .json, "line N" for NDJSON)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FhirError("file not found", path=path) from None
    except OSError as exc:
        raise FhirError(f"file cannot be read ({type(exc).__name__})", path=path) from None
    name = path.name.lower()
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            raise FhirError("expected gzip-compressed FHIR JSON", path=path) from None
        name = name[:-3]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FhirError(f"not UTF-8 text (byte {exc.start}); FHIR JSON is UTF-8", path=path) from None
    if name.endswith(NDJSON_SUFFIXES):
        return _read_ndjson(text, path, log)
    try:
        obj = _parse_json(text)
    except _JsonProblem as exc:
        raise FhirError(str(exc), path=path) from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and len(text.strip().splitlines()) > 1:
            return _read_ndjson(text, path, log)  # NDJSON saved under a .json name
        raise FhirError(
            f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", path=path, where=f"line {exc.lineno}"
        ) from None
    _check_resource(obj, path, None)
    return [(obj, "")]


def _read_ndjson(text: str, path: Path, log: Log) -> list[tuple[dict[str, Any], str]]:
    """Bulk Data NDJSON: one resource per line; blank lines are allowed.

    A line that is not a FHIR resource is reported (file and line) and skipped; a file with no
    readable line raises the FhirError of its first bad line.
    """
    out, first_error = [], None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            try:
                obj = _parse_json(line)
            except _JsonProblem as exc:
                raise FhirError(str(exc), path=path, where=where) from None
            except json.JSONDecodeError as exc:
                message = f"not JSON ({exc.msg}); expected one FHIR resource per line"
                raise FhirError(message, path=path, where=where) from None
            _check_resource(obj, path, where)
        except FhirError as exc:
            first_error = first_error or exc
            log.add(str(path), where, f"{exc.detail}; line skipped", kind="skipped")
            continue
        out.append((obj, where))
    if not out:
        raise first_error or FhirError("holds no FHIR resource", path=path)
    return out


_int_digit_limit = getattr(sys, "get_int_max_str_digits", None)  # Python 3.10.7 and later


class _JsonProblem(Exception):
    """Valid JSON that Python's parser still refuses (nested too deeply, too long a number)."""


def _parse_json(text: str) -> Any:
    """json.loads, with its depth and integer-length limits raised as _JsonProblem."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise _JsonProblem("JSON nested too deeply to read") from None


def _parse_int(digits: str) -> int:
    """An integer literal; one longer than Python converts (sys.get_int_max_str_digits) is refused."""
    limit = _int_digit_limit() if _int_digit_limit else 0
    if limit and len(digits) - digits.startswith("-") > limit:
        raise _JsonProblem(f"a JSON number has more than {limit} digits (not read)")
    return int(digits)


def _check_resource(obj: Any, path: Path, where: str | None) -> None:
    """Raise FhirError unless `obj` is a JSON object with a known FHIR resourceType."""
    if isinstance(obj, list):
        raise FhirError("expected a JSON object (a FHIR resource or Bundle), found an array", path=path, where=where)
    if not isinstance(obj, dict):
        found = type(obj).__name__
        raise FhirError(f"expected a JSON object (a FHIR resource or Bundle), found a {found}", path=path, where=where)
    rtype = obj.get("resourceType")
    if not isinstance(rtype, str):
        raise FhirError("not FHIR: expected a resourceType element", path=path, where=where)
    if not known_type(rtype):
        raise FhirError("not FHIR: resourceType is not a FHIR resource type", path=path, where=where)


def known_type(name: str) -> bool:
    """Whether `name` is a resource type of R4B or R5."""
    return bool(_TYPE_NAME.match(name)) and _model_type_exists(name)


@lru_cache(maxsize=1024)  # bounded: the names come from the input
def _model_type_exists(name: str) -> bool:
    return hasattr(_r4b_types, name + "Type") or hasattr(_r5_types, name + "Type")


def _expand(obj: dict[str, Any], source: str, where: str, hint: str | None, out: list[Entry], log: Log) -> None:
    """Append `obj` (or, for a Bundle, each entry's resource, recursively) to `out`."""
    rtype = obj["resourceType"]
    own_hint = version_hint(obj) or hint
    if rtype != "Bundle":
        out.append(Entry(source, f"{where or 'resource'} ({rtype})", rtype, obj, hint=own_hint))
        return
    items = obj.get("entry", [])
    if not isinstance(items, list):
        if where:  # a Bundle inside an entry: that entry is skipped, not the file
            log.add(source, where, "expected Bundle.entry to be a list", kind="skipped")
            return
        raise FhirError("expected Bundle.entry to be a list", path=source, where="Bundle")
    prefix = f"{where}: " if where else ""
    for i, item in enumerate(items):
        place = f"{prefix}entry {i}"
        if not isinstance(item, dict):
            log.add(source, place, "expected an object", kind="skipped")
            continue
        res = item.get("resource")
        if res is None:  # DELETE requests and response entries carry no resource
            continue
        res_type = res.get("resourceType") if isinstance(res, dict) else None
        if not isinstance(res_type, str) or not known_type(res_type):
            log.add(source, place, "resource is not a FHIR resource (no known resourceType)", kind="skipped")
            continue
        if res_type == "Bundle":
            _expand(res, source, place, own_hint, out, log)
            continue
        full_url = item.get("fullUrl")
        request = item.get("request")
        put_url = None
        if isinstance(request, dict) and request.get("method") == "PUT" and isinstance(request.get("url"), str):
            put_url = request["url"]
        out.append(
            Entry(
                source,
                f"{place} ({res_type})",
                res_type,
                res,
                full_url=full_url if isinstance(full_url, str) else None,
                request_url=put_url,
                hint=version_hint(res) or own_hint,
            )
        )


def version_hint(obj: dict[str, Any]) -> str | None:
    """ "R5" or "R4B" when the resource declares its FHIR version, else None."""
    declared = obj.get("fhirVersion")
    codes = [declared] if isinstance(declared, str) else []
    meta = obj.get("meta")
    if isinstance(meta, dict):
        tags = meta.get("tag")
        for tag in tags if isinstance(tags, list) else []:
            if isinstance(tag, dict) and tag.get("system") == FHIR_VERSION_SYSTEM and isinstance(tag.get("code"), str):
                codes.append(tag["code"])
        profiles = meta.get("profile")
        for profile in profiles if isinstance(profiles, list) else []:
            if isinstance(profile, str):
                m = re.search(r"hl7\.org/fhir/(R5|R4B?|5\.0|4\.[03])/", profile)
                if m:
                    codes.append("5" if m[1] in ("R5", "5.0") else "4")
    for code in codes:
        if code.strip().startswith("5"):
            return "R5"
        if code.strip().startswith("4"):
            return "R4B"
    return None


def _validate(entry: Entry, log: Log) -> None:
    """Set entry.model from the first FHIR version (see the module rule) that accepts it."""
    naive = _normalise_times(entry.raw)
    if naive:
        log.naive_times[entry.source] += naive
    order = ("R5", "R4B") if entry.hint == "R5" else ("R4B", "R5")
    first: tuple[Exception, Any] | None = None  # the preferred version's error and model class
    for version in order:
        model_class = _r5_model(entry.rtype) if version == "R5" else _r4b_model(entry.rtype)
        # The models recurse in Python, so a resource nested some hundred levels deep (extensions in
        # extensions) exhausts the stack: a RecursionError, so invalid, not a crash.
        # Anything else a model raises (fhir_core calls str methods on a number given for a url,
        # for one) is a property of this entry too: reported and skipped, never an escape.
        try:
            entry.model = model_class.model_validate(entry.raw)
        except MemoryError:
            raise
        except Exception as exc:
            first = first or (exc, model_class)
            continue
        entry.version = version
        return
    assert first is not None
    message = describe_failure(first[0], first[1].model_validate, entry.raw)
    log.add(entry.source, entry.where, message, kind="skipped")


def _normalise_times(root: Any) -> int:
    """Give dateTimes the zone (UTC) and seconds FHIR requires, in place; count zone-less ones."""
    naive, stack = 0, [root]  # a stack, not recursion: any depth that JSON parsing allowed is walked
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            if isinstance(value, str):
                m = _DATETIME.match(value)
                if m:
                    naive += m[3] is None
                    node[key] = m[1] + (m[2] or ":00") + (m[3] or "Z")
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return naive
