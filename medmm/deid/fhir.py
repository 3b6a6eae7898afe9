"""De-identify a patient's FHIR JSON (Bundle or resource) and NDJSON files.

Works on the JSON itself, so every FHIR version and every resource type goes through the same
rules: names, telecom, addresses, photos, contacts, identifiers and signatures removed
wherever they sit; Patient cut down to what analysis uses (gender, birth date, US Core race,
ethnicity and birth sex, deceased, language) with the pseudonym as its id and only
identifier; people and organisations cut down to their id; resource ids and references
replaced consistently (urn:uuid stays a UUID); dates shifted by the patient's offset; the
generated narrative dropped; every remaining free text (note attachments, Composition
sections, descriptions, comments) scrubbed of the record's own identifiers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from medmm.codes import US_CORE_BIRTHSEX, US_CORE_ETHNICITY, US_CORE_RACE
from medmm.deid.dates import is_full_datetime, shift_fhir_date
from medmm.deid.mapping import PSEUDONYM_SYSTEM, PatientContext
from medmm.deid.text import Identifiers
from medmm.io.charsets import text_encoding
from medmm.records import Issue

PSEUDONYMIZED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}
"""Security label added to every de-identified resource."""

_DROP_KEYS = frozenset({"identifier", "telecom", "address", "photo", "contact", "signature", "authorString", "link"})
_IDENTIFIER_SUFFIX = "Identifier"  # masterIdentifier, accessionIdentifier, valueIdentifier ...
_PERSON_TYPES = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person"})
_PLACE_TYPES = frozenset({"Organization", "Location", "PractitionerRole", "HealthcareService"})
_PATIENT_KEEP = frozenset(
    {
        "resourceType",
        "id",
        "meta",
        "extension",
        "gender",
        "birthDate",
        "deceasedBoolean",
        "deceasedDateTime",
        "maritalStatus",
        "multipleBirthBoolean",
        "multipleBirthInteger",
        "communication",
        "generalPractitioner",
        "managingOrganization",
        "active",
    }
)
_SKELETON_KEEP = frozenset({"resourceType", "id", "meta", "active", "patient", "relationship"})
_PATIENT_EXTENSIONS = frozenset({US_CORE_RACE, US_CORE_ETHNICITY, US_CORE_BIRTHSEX})
_DATE_KEYS = frozenset(
    {
        "date",
        "issued",
        "start",
        "end",
        "timestamp",
        "lastUpdated",
        "created",
        "recorded",
        "time",
        "authoredOn",
        "sent",
        "received",
        "when",
        "instant",
        "creation",
        "birthDate",
    }
)
_NO_SCRUB_KEYS = frozenset(
    {
        "resourceType",
        "system",
        "url",
        "code",
        "unit",
        "contentType",
        "status",
        "use",
        "language",
        "profile",
        "method",
        "mode",
        "type",
    }
)
_UNSCRUBBABLE_VALUES = frozenset({"valueAddress", "valueHumanName", "valueContactPoint", "valueIdentifier"})
_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
_TEXT_MEDIA = ("text/", "application/xhtml+xml", "application/json", "application/fhir+json", "application/xml")


@dataclass
class FhirOutcome:
    """What happened to one FHIR file: written, or refused with a reason."""

    refused: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    issues: list[Issue] = field(default_factory=list)


def read_resources(path: Path) -> tuple[bool, list[Any]]:
    """(is NDJSON, the JSON values in the file); ValueError when it is not JSON."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".ndjson":
        return True, [json.loads(line) for line in text.splitlines() if line.strip()]
    return False, [json.loads(text)]


def _resources(value: Any) -> Iterator[dict[str, Any]]:
    """Every resource in a JSON value, Bundles and contained resources included."""
    if isinstance(value, dict):
        if "resourceType" in value:
            yield value
        for child in value.values():
            yield from _resources(child)
    elif isinstance(value, list):
        for child in value:
            yield from _resources(child)


def collect_identifiers(path: Path, found: Identifiers) -> set[str]:
    """Add the file's names, identifiers, telecom and addresses to `found`; its Patient ids.

    Raises ValueError when the file is not JSON.
    """
    _, values = read_resources(path)
    patients: set[str] = set()
    for res in (r for v in values for r in _resources(v)):
        rtype = res.get("resourceType")
        if rtype == "Patient":
            patients.add(str(res.get("id") or json.dumps(res.get("identifier"), sort_keys=True)))
        _gather(res, str(rtype), found)
    return patients


def _gather(value: Any, rtype: str, found: Identifiers, key: str = "") -> None:
    if isinstance(value, list):
        for item in value:
            _gather(item, rtype, found, key)
        return
    if not isinstance(value, dict):
        return
    if "resourceType" in value and key:
        return  # a nested resource is visited on its own
    if key == "identifier" or key.endswith(_IDENTIFIER_SUFFIX):
        found.add_id(value.get("value") if isinstance(value.get("value"), str) else None)
    elif key == "telecom":
        found.add_contact(value.get("value") if isinstance(value.get("value"), str) else None)
    elif key == "address":
        for part in [value.get("text"), value.get("city"), value.get("postalCode"), *(value.get("line") or [])]:
            found.add_address(part if isinstance(part, str) else None)
    elif key == "name" and rtype in _PERSON_TYPES:
        for part in [value.get("text"), value.get("family"), *(value.get("given") or [])]:
            found.add_name(part if isinstance(part, str) else None)
    if isinstance(value.get("reference"), str) and isinstance(value.get("display"), str):
        if re.search(r"(Patient|Practitioner|RelatedPerson|Person)/", value["reference"]):
            found.add_name(value["display"])
    if rtype in _PLACE_TYPES and isinstance(value.get("name"), str) and "resourceType" in value:
        found.add_address(value["name"])
    for child_key, child in value.items():
        _gather(child, rtype, found, child_key)


def deidentify_fhir(src: Path, dst: Path, ctx: PatientContext, patient_ids: set[str]) -> FhirOutcome:
    """De-identify one FHIR file into `dst` (same format); `patient_ids` are the patient's original ids."""
    outcome = FhirOutcome()
    try:
        ndjson, values = read_resources(src)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        outcome.refused = f"not readable as FHIR JSON ({type(exc).__name__})"
        return outcome
    if not all(isinstance(v, dict) and "resourceType" in v for v in values):
        outcome.refused = "not a FHIR resource or Bundle (no resourceType)"
        return outcome
    walker = _Walker(ctx, patient_ids, outcome, str(src))
    try:
        cleaned = [walker.resource(v) for v in values]
    except (TypeError, AttributeError, ValueError) as exc:  # a shape FHIR does not allow: never written as is
        outcome.refused = f"could not be de-identified: unexpected structure ({type(exc).__name__})"
        return outcome
    dst.parent.mkdir(parents=True, exist_ok=True)
    if ndjson:
        text = "".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "\n" for c in cleaned)
    else:
        text = json.dumps(cleaned[0], ensure_ascii=False, separators=(",", ":"))
    dst.write_text(text, encoding="utf-8")
    return outcome


class _Walker:
    """Rewrites resources for one patient; counts what it did by kind."""

    def __init__(self, ctx: PatientContext, patient_ids: set[str], out: FhirOutcome, source: str):
        self.ctx, self.patient_ids, self.out, self.source = ctx, patient_ids, out, source

    def resource(self, res: dict[str, Any], *, contained: bool = False) -> dict[str, Any]:
        """One resource rewritten (contained resources keep their local ids, which '#' references use)."""
        rtype = str(res.get("resourceType"))
        if rtype == "Bundle":
            return self._bundle(res)
        if rtype == "Patient":
            self.out.counts["Patient elements removed"] += len(res.keys() - _PATIENT_KEEP)
            res = {k: v for k, v in res.items() if k in _PATIENT_KEEP}
            extensions = res.get("extension", [])
            res["extension"] = [e for e in extensions if isinstance(e, dict) and e.get("url") in _PATIENT_EXTENSIONS]
        elif rtype in _PERSON_TYPES or rtype in _PLACE_TYPES:
            self.out.counts[f"{rtype} reduced to its id"] += 1
            res = {k: v for k, v in res.items() if k in _SKELETON_KEEP}
        out: dict[str, Any] = {}
        for key, value in res.items():
            if key == "id" and isinstance(value, str):
                out["id"] = value if contained else self._new_id(rtype, value)
            elif key == "text" and isinstance(value, dict):
                self.out.counts["narrative removed"] += 1
            elif key == "meta" and isinstance(value, dict):
                out["meta"] = self._meta(value)
            elif key in _DROP_KEYS or key.endswith(_IDENTIFIER_SUFFIX):
                self.out.counts[f"{key} removed"] += 1
            elif key == "contained" and isinstance(value, list):
                out[key] = [self.resource(c, contained=True) for c in value if isinstance(c, dict)]
            elif rtype == "Binary" and key == "data":
                data = self._data(res.get("contentType"), value)
                if data is not None:
                    out["data"] = data
            else:
                new = self._walk(value, key)
                if new not in (None, [], {}):
                    out[key] = new
        if rtype == "Patient":
            out["identifier"] = [{"system": PSEUDONYM_SYSTEM, "value": self.ctx.patient.pseudonym}]
        meta = out.setdefault("meta", {})
        security = [s for s in meta.get("security", []) if isinstance(s, dict) and s.get("code") != "PSEUDED"]
        meta["security"] = security + [dict(PSEUDONYMIZED)]
        return out

    def _bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "Bundle"}
        for key in ("id", "meta", "type", "timestamp", "total"):
            if key in bundle:
                out[key] = self.ctx.keys.fhir_id(bundle[key]) if key == "id" else self._walk(bundle[key], key)
        entries = []
        for entry in bundle.get("entry") or []:
            if not isinstance(entry, dict):
                continue
            new: dict[str, Any] = {}
            if isinstance(entry.get("fullUrl"), str):
                new["fullUrl"] = self._full_url(entry["fullUrl"])
            if isinstance(entry.get("resource"), dict):
                new["resource"] = self.resource(entry["resource"])
            request = entry.get("request")
            if isinstance(request, dict):
                base = str(request.get("url", "")).split("?")[0]  # a conditional query names identifiers
                mapped = self._reference(base) if "/" in base else base
                new["request"] = {"method": request.get("method", "POST"), "url": mapped or base.split("/")[0]}
            if isinstance(entry.get("search"), dict):
                new["search"] = entry["search"]
            entries.append(new)
        if entries:
            out["entry"] = entries
        return out

    def _issue(self, where: str, message: str) -> None:
        self.out.issues.append(Issue(self.source, where, message, "dropped"))

    def _new_id(self, rtype: str, old: str) -> str:
        if rtype == "Patient" and (old in self.patient_ids or not self.patient_ids):
            return self.ctx.patient.pseudonym
        return self.ctx.keys.fhir_id(old)

    def _full_url(self, url: str) -> str:
        if url.startswith("urn:uuid:"):
            return "urn:uuid:" + self.ctx.keys.fhir_id(url[9:])
        return "urn:uuid:" + self.ctx.keys.fhir_id(url)

    def _reference(self, ref: str) -> str | None:
        """The replaced reference, or None when it cannot be kept (a search with identifiers)."""
        ref = ref.strip()
        if ref.startswith("#"):
            return ref
        if ref.startswith("urn:"):
            return self._full_url(ref)
        head, search, _ = ref.partition("?")
        if search:
            rtype = head.rstrip("/").rsplit("/", 1)[-1]
            return f"Patient/{self.ctx.patient.pseudonym}" if rtype == "Patient" else None
        m = _TYPE_ID.search(ref)
        if m is None:
            return None
        return f"{m[1]}/{self._new_id(m[1], m[2])}"

    def _meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        keep = {k: v for k, v in meta.items() if k in ("versionId", "lastUpdated", "profile", "tag", "security")}
        return self._walk(keep, "meta")

    def _walk(self, value: Any, key: str) -> Any:
        if isinstance(value, list):
            items = [self._walk(v, key) for v in value]
            return [v for v in items if v not in (None, {}, [])]
        if isinstance(value, dict):
            if "resourceType" in value:
                return self.resource(value)
            return self._object(value, key)
        if isinstance(value, str):
            return self._string(key, value)
        return value

    def _object(self, obj: dict[str, Any], key: str) -> dict[str, Any] | None:
        if isinstance(obj.get("reference"), str) or (key in ("subject", "patient") and "display" in obj):
            return self._reference_object(obj)
        if "contentType" in obj or key in ("attachment", "presentedForm", "valueAttachment"):
            return self._attachment(obj)
        if _UNSCRUBBABLE_VALUES & obj.keys():
            self.out.counts["extension with a name, address or identifier removed"] += 1
            return None
        out = {}
        for k, v in obj.items():
            if k in _DROP_KEYS or k.endswith(_IDENTIFIER_SUFFIX):
                self.out.counts[f"{k} removed"] += 1
                continue
            new = self._walk(v, k)
            if new not in (None, [], {}):
                out[k] = new
        return out

    def _reference_object(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if isinstance(obj.get("reference"), str):
            mapped = self._reference(obj["reference"])
            if mapped is None:
                self.out.counts["reference removed"] += 1
                self._issue("reference", "search reference cannot be kept; removed")
            else:
                out["reference"] = mapped
                self.out.counts["reference replaced"] += 1
        if isinstance(obj.get("type"), str):
            out["type"] = obj["type"]
        if "display" in obj or "identifier" in obj:
            self.out.counts["reference display or identifier removed"] += 1
        return out or None

    def _attachment(self, att: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, value in att.items():
            if key == "data":
                data = self._data(att.get("contentType"), value)
                if data is not None:
                    out["data"] = data
                    out["size"] = len(base64.b64decode(data))
            elif key == "url" and isinstance(value, str):
                mapped = self._reference(value)
                if mapped is not None:
                    out["url"] = mapped
            elif key not in ("hash", "size"):
                new = self._walk(value, key)
                if new not in (None, [], {}):
                    out[key] = new
        return out or None

    def _data(self, content_type: Any, data: Any) -> str | None:
        """Base64 content: text scrubbed and re-encoded; anything else removed (it cannot be read)."""
        media, _, params = str(content_type or "").partition(";")
        charsets = [p.split("=", 1)[1] for p in params.split(";") if p.strip().lower().startswith("charset=")]
        charset = charsets[0].strip().strip('"') if charsets else "utf-8"
        if not media.strip().lower().startswith(_TEXT_MEDIA):
            self.out.counts["non-text attachment removed"] += 1
            self._issue("attachment", "content that is not text cannot be scrubbed; removed")
            return None
        encoding = text_encoding(charset)  # None for codecs that are no character set (rot13, hex, ...)
        try:
            raw = base64.b64decode(str(data), validate=False)
        except (binascii.Error, ValueError):
            raw = None
        if encoding is None or raw is None:
            self.out.counts["unreadable attachment removed"] += 1
            return None
        text, n = self.ctx.scrubber.free_text(raw.decode(encoding, errors="replace"))
        self.out.counts["text attachment scrubbed"] += 1
        if n:
            self.out.counts["identifiers or dates replaced in text"] += n
        return base64.b64encode(text.encode(encoding, errors="replace")).decode("ascii")

    def _string(self, key: str, value: str) -> str | None:
        dated = key in _DATE_KEYS or key.endswith(("Date", "DateTime", "Instant"))
        if dated or is_full_datetime(value):
            try:
                new = shift_fhir_date(value, self.ctx.patient.offset_days)
            except ValueError:
                if dated:
                    self.out.counts["unreadable date removed"] += 1
                    self._issue(key, "date not in FHIR form; removed instead of shifted")
                    return None
            else:
                self.out.counts["date shifted"] += 1
                return new
        if key in _NO_SCRUB_KEYS:
            return value
        new, n = self.ctx.scrubber.free_text(value)
        if n:
            self.out.counts["identifiers or dates replaced in text"] += n
        return new
