"""Pseudonyms, date offsets and UID/id maps (keyed HMACs), and the re-identification file.

Everything derives from one secret with HMAC-SHA256, so the same secret gives the same
pseudonym, offset and UIDs on every run and on every machine, and nothing can be reversed
without the secret. The mapping file records the secret and every replacement made; it is
the data owner's key and is written with owner-only permissions, never inside the output.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from medmm.errors import ConfigError

if TYPE_CHECKING:
    from medmm.deid.text import Scrubber

FORMAT = "medmm-deid-mapping/1"
MIN_SHIFT_DAYS = 366
MAX_SHIFT_DAYS = 3652
"""Dates move back by a whole number of days in [MIN_SHIFT_DAYS, MAX_SHIFT_DAYS] (1 to 10 years)."""

PSEUDONYM_SYSTEM = "urn:medmm:deid:pseudonym"
"""FHIR identifier system of the pseudonym written into de-identified Patient resources."""


@dataclass(frozen=True)
class PatientKey:
    """One patient's replacement identity."""

    pseudonym: str
    offset_days: int
    original_id: str


class Keys:
    """Keyed, deterministic replacements: pseudonyms, offsets, UIDs and FHIR ids."""

    def __init__(self, secret: str):
        self.secret = secret
        self._key = secret.encode("utf-8")
        self.uids: dict[str, str] = {}
        self.fhir_ids: dict[str, str] = {}

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode("utf-8"), hashlib.sha256).digest()

    def patient(self, original_id: str) -> PatientKey:
        """Pseudonym ("P" + 12 hex digits) and date offset (negative days) of a patient."""
        pseudonym = "P" + self._digest("patient", original_id).hex()[:12].upper()
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        offset = -(MIN_SHIFT_DAYS + int.from_bytes(self._digest("offset", original_id)[:8], "big") % span)
        return PatientKey(pseudonym, offset, original_id)

    def uid(self, original: str) -> str:
        """A new UID under the 2.25 (UUID-derived) root; the same original always gives the same UID."""
        original = original.strip().rstrip("\0")
        new = self.uids.get(original)
        if new is None:
            number = int.from_bytes(self._digest("uid", original)[:16], "big") or 1
            new = self.uids[original] = f"2.25.{number}"
        return new

    def fhir_id(self, original: str) -> str:
        """A new resource id (a UUID, valid wherever the original sat, urn:uuid included)."""
        new = self.fhir_ids.get(original)
        if new is None:
            new = self.fhir_ids[original] = str(uuid.UUID(bytes=self._digest("fhir", original)[:16], version=4))
        return new

    def token(self, kind: str, value: str) -> str:
        """A short keyed token (for file names that held an identifier)."""
        return self._digest(kind, value).hex()[:10]


@dataclass(frozen=True)
class PatientContext:
    """Everything the file handlers need for one patient: keys, identity and scrubber."""

    keys: Keys
    patient: PatientKey
    scrubber: Scrubber


@dataclass(frozen=True)
class PatientEntry:
    """What the mapping file records about one patient."""

    original_id: str
    pseudonym: str
    offset_days: int
    dicom_patient_ids: tuple[str, ...] = ()
    fhir_patient_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeidMapping:
    """The contents of a mapping file: the secret and every replacement made."""

    secret: str
    patients: tuple[PatientEntry, ...] = ()
    uids: Mapping[str, str] = field(default_factory=dict)  # original UID -> new UID
    fhir_ids: Mapping[str, str] = field(default_factory=dict)  # original resource id -> new id

    def original_id(self, pseudonym: str) -> str:
        """The original patient id behind a pseudonym (ConfigError when the mapping does not know it)."""
        for entry in self.patients:
            if entry.pseudonym == pseudonym:
                return entry.original_id
        raise ConfigError("pseudonym not found in the mapping file", where="patients")

    def original_uid(self, new_uid: str) -> str:
        """The original UID behind a replaced one (ConfigError when unknown)."""
        for original, new in self.uids.items():
            if new == new_uid:
                return original
        raise ConfigError("UID not found in the mapping file", where="uids")


def new_secret() -> str:
    """A fresh random secret (256 bits, hex)."""
    return secrets.token_hex(32)


def load_mapping(path: str | Path) -> DeidMapping:
    """Read a mapping file written by `medmm deid` (ConfigError when it is not one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"mapping file cannot be read ({type(exc).__name__})", path=path) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("secret"), str):
        raise ConfigError(f"not a de-identification mapping file (expected format {FORMAT})", path=path)
    try:
        patients = tuple(
            PatientEntry(
                original_id=str(p["original_id"]),
                pseudonym=str(p["pseudonym"]),
                offset_days=int(p["offset_days"]),
                dicom_patient_ids=tuple(map(str, p.get("dicom_patient_ids", ()))),
                fhir_patient_ids=tuple(map(str, p.get("fhir_patient_ids", ()))),
            )
            for p in data.get("patients", [])
        )
    except (KeyError, TypeError, ValueError):
        why = "patient entry lacks original_id, pseudonym or offset_days"
        raise ConfigError(why, path=path, where="patients") from None
    return DeidMapping(data["secret"], patients, dict(data.get("uids", {})), dict(data.get("fhir_ids", {})))


def merge(previous: DeidMapping | None, secret: str, patients: list[PatientEntry], keys: Keys) -> DeidMapping:
    """The previous mapping (same secret) extended with this run's patients and maps."""
    by_pseudonym = {p.pseudonym: p for p in (previous.patients if previous else ())}
    for entry in patients:
        old = by_pseudonym.get(entry.pseudonym)
        if old is not None:
            entry = PatientEntry(
                entry.original_id,
                entry.pseudonym,
                entry.offset_days,
                tuple(sorted(set(old.dicom_patient_ids) | set(entry.dicom_patient_ids))),
                tuple(sorted(set(old.fhir_patient_ids) | set(entry.fhir_patient_ids))),
            )
        by_pseudonym[entry.pseudonym] = entry
    uids = {**(previous.uids if previous else {}), **keys.uids}
    fhir_ids = {**(previous.fhir_ids if previous else {}), **keys.fhir_ids}
    return DeidMapping(secret, tuple(sorted(by_pseudonym.values(), key=lambda p: p.pseudonym)), uids, fhir_ids)


def save_mapping(path: str | Path, mapping: DeidMapping) -> None:
    """Write the mapping as JSON, readable by its owner only, replacing any earlier file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": FORMAT,
        "note": "re-identification key: keep apart from the de-identified data; "
        "anyone holding it can reverse the pseudonyms",
        "secret": mapping.secret,
        "patients": [
            {
                "original_id": p.original_id,
                "pseudonym": p.pseudonym,
                "offset_days": p.offset_days,
                "dicom_patient_ids": list(p.dicom_patient_ids),
                "fhir_patient_ids": list(p.fhir_patient_ids),
            }
            for p in mapping.patients
        ],
        "uids": dict(sorted(mapping.uids.items())),
        "fhir_ids": dict(sorted(mapping.fhir_ids.items())),
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
