"""A small DICOMweb client: find a patient's studies (QIDO-RS) and pull one study's files (WADO-RS).

`search_studies(base_url, patient_id)` lists the studies of exactly that patient;
`retrieve_study(base_url, study_uid, dest_dir)` writes every instance of the study as a Part-10
file under dest_dir (one folder per series), which `medmm.io.load_study(dest_dir)` reads.
Only the standard library speaks HTTP here, and pydicom objects never leave this module.

Messages never carry the patient id, UIDs or anything else the server returns: they name the
server, the request (QIDO-RS studies, WADO-RS series 2 of 3) and what was expected.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from medmm.errors import DicomError, InputError

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 2 * 1024**3
"""Largest response read for one series (a guard against a runaway server)."""

_DICOM_JSON = "application/dicom+json"
_MULTIPART = 'multipart/related; type="application/dicom"'
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_WILDCARDS = set("*?\\")
_CHUNK = 1 << 20

# DICOM JSON tags (group+element, upper-case hex) read from QIDO-RS answers.
PATIENT_ID = "00100020"
STUDY_UID = "0020000D"
STUDY_DATE = "00080020"
STUDY_DESCRIPTION = "00081030"
MODALITIES_IN_STUDY = "00080061"
N_SERIES = "00201206"
N_INSTANCES = "00201208"
SERIES_UID = "0020000E"
_STUDY_FIELDS = (STUDY_DESCRIPTION, MODALITIES_IN_STUDY, N_SERIES, N_INSTANCES)


@dataclass(frozen=True)
class StudySummary:
    """One study as a DICOMweb server describes it."""

    study_uid: str
    patient_id: str
    date: str | None = None  # DICOM DA (YYYYMMDD) as given
    description: str | None = None
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None


def search_studies(
    base_url: str, patient_id: str, *, timeout: float = DEFAULT_TIMEOUT, auth: tuple[str, str] | None = None
) -> list[StudySummary]:
    """Studies of the patient whose PatientID is exactly `patient_id` (QIDO-RS), oldest first.

    Wildcards are refused: a clinician pulls one patient, never a listing of everyone.
    """
    patient_id = patient_id.strip()
    if not patient_id or _WILDCARDS & set(patient_id):
        raise InputError("expected a non-empty patient id without wildcard characters (* ? \\)", where="patient id")
    query = [("PatientID", patient_id)] + [("includefield", tag) for tag in _STUDY_FIELDS]
    url = f"{_root(base_url)}/studies?{urllib.parse.urlencode(query)}"
    answer = _json(_get(url, _DICOM_JSON, base_url, "QIDO-RS studies", timeout, auth), base_url, "QIDO-RS studies")
    studies = []
    for i, item in enumerate(answer):
        where = f"QIDO-RS studies result {i + 1}"
        uid = _first(item, STUDY_UID)
        if not isinstance(uid, str) or not _UID.match(uid):
            raise DicomError(
                "expected a StudyInstanceUID (0020,000D) made of digits and dots", path=_safe(base_url), where=where
            )
        if _first(item, PATIENT_ID) != patient_id:
            continue  # servers may match loosely (case, fuzzy names); keep the exact patient only
        studies.append(
            StudySummary(
                study_uid=uid,
                patient_id=patient_id,
                date=_text(_first(item, STUDY_DATE)),
                description=_text(_first(item, STUDY_DESCRIPTION)),
                modalities=tuple(str(v) for v in _values(item, MODALITIES_IN_STUDY)),
                n_series=_int(_first(item, N_SERIES)),
                n_instances=_int(_first(item, N_INSTANCES)),
            )
        )
    return sorted(studies, key=lambda s: (s.date or "", s.study_uid))


def retrieve_study(
    base_url: str,
    study_uid: str,
    dest_dir: str | Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    auth: tuple[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Path]:
    """Write every instance of a study under dest_dir/series-NNN/instance-NNNNN.dcm (WADO-RS, series by series)."""
    if not _UID.match(study_uid) or len(study_uid) > 64:
        raise InputError("expected a StudyInstanceUID of digits and dots, at most 64 characters", where="study uid")
    root = _root(base_url)
    listing = _json(
        _get(f"{root}/studies/{study_uid}/series", _DICOM_JSON, base_url, "QIDO-RS series", timeout, auth),
        base_url,
        "QIDO-RS series",
    )
    series = []
    for i, item in enumerate(listing):
        uid = _first(item, SERIES_UID)
        if not isinstance(uid, str) or not _UID.match(uid) or len(uid) > 64:
            where = f"QIDO-RS series result {i + 1}"
            raise DicomError(
                "expected a SeriesInstanceUID (0020,000E) made of digits and dots", path=_safe(base_url), where=where
            )
        series.append(uid)
    if not series:
        raise InputError("the server lists no series for this study", path=_safe(base_url), where="QIDO-RS series")
    dest = Path(dest_dir)
    written: list[Path] = []
    for s, uid in enumerate(series):
        where = f"WADO-RS series {s + 1} of {len(series)}"
        content_type, body = _get_multipart(
            f"{root}/studies/{study_uid}/series/{uid}", base_url, where, timeout, auth, max_bytes
        )
        parts = split_multipart(body, content_type, source=_safe(base_url), where=where)
        folder = dest / f"series-{s + 1:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for p, part in enumerate(parts):
            if len(part) < 132 or part[128:132] != b"DICM":
                raise DicomError(
                    "expected a DICOM Part-10 object (preamble and 'DICM')",
                    path=_safe(base_url),
                    where=f"{where}, part {p + 1}",
                )
            path = folder / f"instance-{p + 1:05d}.dcm"
            path.write_bytes(part)
            written.append(path)
    return written


def split_multipart(body: bytes, content_type: str, *, source: str = "", where: str = "multipart body") -> list[bytes]:
    """The bodies of the parts of a multipart/related message (RFC 2046), headers dropped."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise DicomError(
            "expected a multipart/related answer with a boundary parameter", path=source or None, where=where
        )
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)  # the first delimiter may start the body without a CRLF
    parts = []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        line_end = chunk.find(b"\r\n")  # the rest of the delimiter line (transport padding)
        headers_end = chunk.find(b"\r\n\r\n", max(line_end, 0))
        if line_end < 0 or headers_end < 0:
            raise DicomError(f"part {len(parts) + 1} has no header block", path=source or None, where=where)
        if line_end == headers_end:  # no headers at all: the body follows the blank line
            parts.append(chunk[line_end + 4 :])
        else:
            parts.append(chunk[headers_end + 4 :])
    if not closed:
        raise DicomError("the multipart answer is truncated (no closing boundary)", path=source or None, where=where)
    return parts


# -- HTTP --------------------------------------------------------------------------------------


def _root(base_url: str) -> str:
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise InputError(
            "expected an http(s) DICOMweb root URL without query or fragment",
            path=_safe(base_url),
            where="DICOMweb URL",
        )
    return base_url.rstrip("/")


def _safe(base_url: str) -> str:
    """The URL without credentials or query, for messages."""
    parsed = urllib.parse.urlsplit(base_url)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def _request(url: str, accept: str, auth: tuple[str, str] | None) -> urllib.request.Request:
    headers = {"Accept": accept}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return urllib.request.Request(url, headers=headers, method="GET")


def _open(url: str, accept: str, base_url: str, where: str, timeout: float, auth):
    try:
        return urllib.request.urlopen(_request(url, accept, auth), timeout=timeout)  # noqa: S310 (scheme checked in _root)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise InputError(
            f"the DICOMweb server answered HTTP {exc.code} (expected 200)", path=_safe(base_url), where=where
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise InputError(
            f"the DICOMweb server could not be reached ({type(exc).__name__})", path=_safe(base_url), where=where
        ) from None


def _read(response, base_url: str, where: str, max_bytes: int) -> bytes:
    data = bytearray()
    try:
        while chunk := response.read(_CHUNK):
            data += chunk
            if len(data) > max_bytes:
                raise InputError(f"the answer is larger than {max_bytes} bytes", path=_safe(base_url), where=where)
    except OSError as exc:
        raise InputError(f"the answer was cut off ({type(exc).__name__})", path=_safe(base_url), where=where) from None
    return bytes(data)


def _get(url: str, accept: str, base_url: str, where: str, timeout: float, auth) -> bytes:
    with _open(url, accept, base_url, where, timeout, auth) as response:
        if response.status == 204:
            return b""
        return _read(response, base_url, where, DEFAULT_MAX_BYTES)


def _get_multipart(url: str, base_url: str, where: str, timeout: float, auth, max_bytes: int) -> tuple[str, bytes]:
    with _open(url, f"{_MULTIPART}; transfer-syntax=*", base_url, where, timeout, auth) as response:
        content_type = response.headers.get("Content-Type", "")
        return content_type, _read(response, base_url, where, max_bytes)


def _json(body: bytes, base_url: str, where: str) -> list[dict]:
    if not body.strip():
        return []  # 204 No Content or an empty body: no match
    try:
        answer = json.loads(body)
    except ValueError:
        raise DicomError("expected DICOM JSON (application/dicom+json)", path=_safe(base_url), where=where) from None
    if not isinstance(answer, list) or not all(isinstance(a, dict) for a in answer):
        raise DicomError("expected a JSON array of DICOM JSON objects", path=_safe(base_url), where=where)
    return answer


def _boundary(content_type: str) -> str | None:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/related":
        return None
    for param in _params(params):
        key, _, value = param.partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value or None
    return None


def _params(text: str) -> Sequence[str]:
    """Split `a=1; b="x;y"` on semicolons outside quotes."""
    out, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [p for p in out if p.strip()]


# -- DICOM JSON --------------------------------------------------------------------------------


def _values(item: dict, tag: str) -> list:
    element = item.get(tag) or item.get(tag.lower())
    if not isinstance(element, dict):
        return []
    values = element.get("Value")
    return values if isinstance(values, list) else []


def _first(item: dict, tag: str):
    values = _values(item, tag)
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):  # PN: {"Alphabetic": ...}
        return value.get("Alphabetic")
    return value


def _text(value) -> str | None:
    return None if value is None else str(value)


def _int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
