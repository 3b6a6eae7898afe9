"""Clinical notes from FHIR: DocumentReference attachments, DiagnosticReport.presentedForm and
Composition sections.

Attachments are base64 text/plain (decoded with their charset, UTF-8 by default) or text/html
(reduced to text). The several attachments of one DocumentReference or presentedForm are
formats of the same document (FHIR says so), so each resource gives at most one note, from its
first plain-text attachment, else its first HTML one.

Only a charset that names a character set is used to decode. A name Python does not know is
reported and the text decoded as UTF-8 (a misspelt charset is mostly ASCII anyway). A codec that
is not a character set (rot13, hex, base64, zlib, bz2, uu, quopri, punycode, idna,
unicode_escape, ...) says the bytes are transformed data, not text: the attachment is reported
and the note skipped rather than read as garbage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from medmm.codes import LOINC, NOTE_TYPES
from medmm.io.charsets import is_codec_name, text_encoding
from medmm.io.fhir_load import WITHDRAWN, Entry, Log, utc_time
from medmm.io.fhir_refs import ReferenceIndex, type_id
from medmm.io.html_text import html_to_text
from medmm.records import ClinicalNote

_HTML_TYPES = ("text/html", "application/xhtml+xml")


def _media_type(content_type: str | None) -> tuple[str, str | None]:
    """'text/plain; charset=ISO-8859-1' -> ('text/plain', 'ISO-8859-1')."""
    if not content_type:
        return "", None
    head, *params = content_type.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    return head.strip().lower(), charset


def _attachment_text(attachments: list[Any], entry: Entry, index: ReferenceIndex, log: Log) -> str | None:
    """Text of the preferred attachment (plain, else HTML), or None with an Issue saying why."""
    readable = []
    for att in attachments:
        media, charset = _media_type(getattr(att, "contentType", None))
        if media == "text/plain" or media in _HTML_TYPES:
            readable.append((media != "text/plain", att, media, charset))
    if not readable:
        log.add(entry.source, entry.where, "no text/plain or text/html attachment; note not read", kind="skipped")
        return None
    _, att, media, charset = min(readable, key=lambda item: item[0])
    data = getattr(att, "data", None)
    if data is None and getattr(att, "url", None):
        binary = index.resolve_string(att.url, within=entry.source)
        if binary is not None and binary.rtype == "Binary" and binary.model is not None:
            data = binary.model.data
    if not data:
        why = "attachment has no inline data (or a Binary in the input); note not read"
        log.add(entry.source, entry.where, why, kind="skipped")
        return None
    if isinstance(data, str):  # defensive: the models decode base64 to bytes
        data = data.encode("utf-8")
    encoding = text_encoding(charset) if charset else "utf-8"
    if encoding is None and is_codec_name(charset):
        why = "attachment charset names a codec, not a character set; note not read"
        log.add(entry.source, entry.where, why, kind="skipped")
        return None
    if encoding is None:
        log.add(entry.source, entry.where, "attachment charset is unknown; decoded as UTF-8")
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        why = f"attachment is not valid {encoding} (byte {exc.start}); undecodable bytes replaced"
        log.add(entry.source, entry.where, why)
        text = data.decode(encoding, errors="replace")
    if media in _HTML_TYPES:
        text = html_to_text(text).strip()
    # Plain text is kept exactly as sent, so character offsets into it (evidence spans) hold.
    if not text.strip():
        log.add(entry.source, entry.where, "attachment holds no text; note not read", kind="skipped")
        return None
    return text


def _loinc_type(concept: Any) -> tuple[str | None, str | None]:
    """(LOINC code, display) of a document-type CodeableConcept (display falls back to text)."""
    if concept is None:
        return None, None
    for coding in getattr(concept, "coding", None) or []:
        if coding.system == LOINC and coding.code:
            return coding.code, coding.display or NOTE_TYPES.get(coding.code) or concept.text
    return None, getattr(concept, "text", None)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _start(period: Any) -> Any:
    return getattr(period, "start", None) if period is not None else None


def note_from_document_reference(entry: Entry, index: ReferenceIndex, log: Log) -> ClinicalNote | None:
    """A note from DocumentReference.content[].attachment (time: date, else context period start)."""
    m = entry.model
    if m.status in WITHDRAWN:
        log.add(entry.source, entry.where, f"status {m.status}: note not read", kind="skipped")
        return None
    text = _attachment_text([c.attachment for c in m.content or []], entry, index, log)
    if text is None:
        return None
    context = getattr(m, "context", None)
    period = getattr(m, "period", None) if entry.version == "R5" else getattr(context, "period", None)
    when = utc_time(_first(m.date, _start(period)), entry.source, log)
    code, display = _loinc_type(m.type)
    return ClinicalNote(text=text, time=when, type_code=code, type_display=display, source_id=_source_id(entry))


def note_from_diagnostic_report(entry: Entry, index: ReferenceIndex, log: Log) -> ClinicalNote | None:
    """A note from DiagnosticReport.presentedForm; None for reports without one (lab panels)."""
    m = entry.model
    if not m.presentedForm:
        return None
    if m.status in WITHDRAWN:
        log.add(entry.source, entry.where, f"status {m.status}: note not read", kind="skipped")
        return None
    text = _attachment_text(list(m.presentedForm), entry, index, log)
    if text is None:
        return None
    when = utc_time(_first(m.effectiveDateTime, _start(m.effectivePeriod), m.issued), entry.source, log)
    code, display = _loinc_type(m.code)
    return ClinicalNote(text=text, time=when, type_code=code, type_display=display, source_id=_source_id(entry))


def note_from_composition(entry: Entry, log: Log) -> ClinicalNote | None:
    """One note from a Composition: each section's title and narrative, nested sections included."""
    m = entry.model
    if m.status in WITHDRAWN:
        log.add(entry.source, entry.where, f"status {m.status}: note not read", kind="skipped")
        return None
    blocks: list[str] = []
    _section_blocks(m.section or [], blocks)
    if not blocks:
        log.add(entry.source, entry.where, "no section narrative; note not read", kind="skipped")
        return None
    code, display = _loinc_type(m.type)
    when: datetime | None = utc_time(m.date, entry.source, log)
    return ClinicalNote(
        text="\n\n".join(blocks),
        time=when,
        type_code=code,
        type_display=display or m.title,
        source_id=_source_id(entry),
    )


def _section_blocks(sections: list[Any], out: list[str]) -> None:
    """Append "title\\ntext" for each section with narrative, depth first."""
    for section in sections:
        div = getattr(getattr(section, "text", None), "div", None)
        text = html_to_text(div) if div else ""
        title = (section.title or "").strip()
        if text:
            out.append(f"{title}\n{text}" if title else text)
        _section_blocks(section.section or [], out)


def _source_id(entry: Entry) -> str | None:
    return type_id(entry) or entry.full_url
