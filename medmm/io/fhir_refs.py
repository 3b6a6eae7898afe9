"""Resolving FHIR references within one input, in every form real exports use.

Forms: `urn:uuid:...` / `urn:oid:...` (matched against Bundle.entry.fullUrl), relative
`Patient/123` (matched on type and id, with `/_history/n` ignored), absolute URLs (matched on
fullUrl, else on their trailing `Type/id`, since Bulk Data files carry no fullUrl), conditional
references `Patient?identifier=system|value` (also `_id=`), and logical references that give
only `Reference.identifier`. A reference resolves only when exactly one resource matches; when
several do across the input, one match in the referring resource's own file wins (a Bundle's
references resolve against its own entries first), so that another file cannot make an intact
file's references ambiguous.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from medmm.io.fhir_load import Entry

_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_HISTORY = re.compile(r"/_history/[^/?]*$")


class ReferenceIndex:
    """Every resource of an input, findable by fullUrl, Type/id and identifier."""

    def __init__(self, entries: list[Entry]):
        self._by_url: dict[str, list[Entry]] = {}
        self._by_type_id: dict[str, list[Entry]] = {}
        self._by_type: dict[str, list[Entry]] = {}
        for entry in entries:
            if entry.full_url:
                self._add(self._by_url, entry.full_url.strip(), entry)
            for key in {type_id(entry), _tail(entry.full_url), _tail(entry.request_url)} - {None}:
                self._add(self._by_type_id, key, entry)
            self._by_type.setdefault(entry.rtype, []).append(entry)

    @staticmethod
    def _add(table: dict[str, list[Entry]], key: str, entry: Entry) -> None:
        bucket = table.setdefault(key, [])
        if entry not in bucket:
            bucket.append(entry)

    def resolve(self, reference: Any, within: str | None = None) -> Entry | None:
        """The entry a Reference (model or string) points to, or None when not in the input.

        `within` is the referring resource's file: its match wins when the input has several.
        """
        if reference is None:
            return None
        if isinstance(reference, str):
            return self.resolve_string(reference, within)
        literal = getattr(reference, "reference", None)
        if isinstance(literal, str) and literal.strip():
            return self.resolve_string(literal, within)
        identifier = getattr(reference, "identifier", None)
        if identifier is not None and getattr(identifier, "value", None):
            rtype = getattr(reference, "type", None)
            types = [rtype.rsplit("/", 1)[-1]] if isinstance(rtype, str) and rtype else list(self._by_type)
            system, value = identifier.system, identifier.value
            found = [e for t in types for e in self._by_type.get(t, []) if _has_identifier(e, system, value)]
            return _single(found, within)
        return None

    def resolve_string(self, ref: str, within: str | None = None) -> Entry | None:
        """Resolve a literal or conditional reference string (`within`: as for `resolve`)."""
        ref = ref.strip()
        if ref.startswith("#") or not ref:
            return None  # contained resources are not entries of their own
        ref = _HISTORY.sub("", ref)
        exact = _single(self._by_url.get(ref, []), within)
        if exact is not None:
            return exact
        if ref.startswith("urn:"):
            return None
        head, sep, query = ref.partition("?")
        if sep:
            return self._conditional(head.rstrip("/").rsplit("/", 1)[-1], query, within)
        key = _tail(ref)
        return _single(self._by_type_id.get(key, []), within) if key else None

    def _conditional(self, rtype: str, query: str, within: str | None) -> Entry | None:
        """`Type?identifier=system|value` and `Type?_id=...`; other search parameters do not resolve."""
        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            return None
        candidates = list(self._by_type.get(rtype, []))
        for name, value in params:
            if name == "_id":
                candidates = [e for e in candidates if e.raw.get("id") == value]
            elif name == "identifier":
                system, bar, code = value.rpartition("|")
                if not bar:
                    system, code = None, value
                candidates = [e for e in candidates if _has_identifier(e, system, code)]
            else:
                return None
        return _single(candidates, within)


def type_id(entry: Entry) -> str | None:
    """'Type/id' of an entry, when the resource has an id."""
    rid = entry.raw.get("id")
    return f"{entry.rtype}/{rid}" if isinstance(rid, str) and rid else None


def _tail(url: str | None) -> str | None:
    """The trailing 'Type/id' of a relative or absolute URL.

    The last two path segments are split off and matched whole (a search for the pattern anywhere
    in the text would be quadratic in its length).
    """
    if not url:
        return None
    parts = _HISTORY.sub("", url.strip()).rsplit("/", 2)
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if not (_TYPE.fullmatch(rtype) and _ID.fullmatch(rid)):
        return None
    return f"{rtype}/{rid}"


def _has_identifier(entry: Entry, system: str | None, value: str | None) -> bool:
    """Whether the resource lists an identifier with this value (and system, when one is given)."""
    identifiers = entry.raw.get("identifier")
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    for ident in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(ident, dict) or ident.get("value") != value:
            continue
        if not system or ident.get("system") == system:
            return True
    return False


def identity(entry: Entry) -> str:
    """What makes two entries the same resource: Type/id, else fullUrl, else the entry itself."""
    return type_id(entry) or entry.full_url or f"{entry.source}#{entry.where}"


def _single(found: list[Entry], within: str | None = None) -> Entry | None:
    """The match when all matches are one resource (copies of it may sit in several files), else
    the match when all matches in the file `within` are one resource."""
    if found and len({identity(e) for e in found}) == 1:
        return found[0]
    local = [e for e in found if e.source == within] if within is not None else []
    if local and len({identity(e) for e in local}) == 1:
        return local[0]
    return None
