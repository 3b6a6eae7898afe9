"""The audit trail: one AuditEvent and one Provenance record per prediction, in SQLite.

Every prediction made through the CLI, the UI or a batch study is recorded with who made it
(the operator, where known), when, what (action and source), with which model (id, version,
SHA-256 of the whole checkpoint and of its config.json) and from which inputs (SHA-256 and size
of each file). The records are shaped like FHIR R4 AuditEvent and Provenance resources.

No patient data enters the store: no names, note text, images, demographics, file paths or
prediction text. A patient is named only by a keyed hash (HMAC-SHA256 of the patient id with a
secret key kept beside the database, or given by MEDMM_AUDIT_SALT), so that records of one
patient can be linked by whoever holds the key and by nobody who holds only the database. What
was output is pinned by a checksum of the prediction, not by its content.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from medmm.errors import CheckpointError, ConfigError, MedmmError
from medmm.records import Prediction

SCHEMA_VERSION = 1
ACTIONS = ("predict", "feedback")
SOURCES = ("cli", "ui", "batch")
VERDICTS = ("agree", "disagree", "unsure")
ENV_PATH = "MEDMM_AUDIT_STORE"  # where the store lives when no path is given
ENV_SALT = "MEDMM_AUDIT_SALT"  # the hashing key, instead of the key file beside the database
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_SYSTEM = "urn:medmm:audit"

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_event (
    event_id TEXT PRIMARY KEY, recorded TEXT NOT NULL, action TEXT NOT NULL, source TEXT NOT NULL, user TEXT,
    outcome TEXT NOT NULL, subject_hash TEXT, model_id TEXT NOT NULL, model_version TEXT NOT NULL,
    model_checksum TEXT NOT NULL, config_checksum TEXT NOT NULL, output_checksum TEXT, run_id TEXT, detail TEXT,
    resource TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_input (
    event_id TEXT NOT NULL REFERENCES audit_event(event_id), position INTEGER NOT NULL, kind TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (event_id, position)
);
CREATE TABLE IF NOT EXISTS provenance (
    provenance_id TEXT PRIMARY KEY, event_id TEXT NOT NULL REFERENCES audit_event(event_id),
    recorded TEXT NOT NULL, resource TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_event_run ON audit_event(run_id);
"""


@dataclass(frozen=True)
class InputDigest:
    """One input file as the audit trail knows it: kind, SHA-256 and size, never its path."""

    kind: str  # dicom | fhir | vitals | file
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelFingerprint:
    """The checksums that pin a checkpoint: the whole folder (checksums.json) and its config.json."""

    model_checksum: str
    config_checksum: str


@dataclass(frozen=True)
class AuditRecord:
    """One AuditEvent as stored (with its inputs); `detail` is the feedback verdict and diagnoses as JSON."""

    event_id: str
    recorded: datetime
    action: str
    source: str
    user: str | None
    outcome: str
    subject_hash: str | None
    model_id: str
    model_version: str
    model_checksum: str
    config_checksum: str
    output_checksum: str | None
    run_id: str | None
    detail: str | None
    inputs: tuple[InputDigest, ...]


def default_path(fallback: str | Path) -> Path:
    """The store's path: $MEDMM_AUDIT_STORE when set, else `fallback`."""
    return Path(os.environ.get(ENV_PATH) or fallback)


def file_digest(path: str | Path, kind: str = "file") -> InputDigest:
    """SHA-256 and size of one file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return InputDigest(kind, h.hexdigest(), size)


def input_digests(paths: Iterable[str | Path]) -> tuple[InputDigest, ...]:
    """Digests of input files, sorted by checksum so the order of the list does not matter; folders are walked."""
    from medmm.io.study import classify_files

    out = []
    for path in paths:
        files = classify_files(path)
        for kind, group in (("dicom", files.dicom), ("fhir", files.fhir), ("vitals", files.vitals)):
            out.extend(file_digest(f, kind) for f in group)
    return tuple(sorted(out, key=lambda d: (d.sha256, d.kind)))


def model_fingerprint(model_dir: str | Path) -> ModelFingerprint:
    """Checksums of a checkpoint folder: SHA-256 of checksums.json (which pins every file) and of config.json."""
    model_dir = Path(model_dir)
    sums, config = model_dir / "checksums.json", model_dir / "config.json"
    if not sums.is_file() or not config.is_file():
        raise CheckpointError("not a medmm checkpoint (expected checksums.json and config.json)", path=model_dir)
    return ModelFingerprint(file_digest(sums).sha256, file_digest(config).sha256)


def prediction_checksum(prediction: Prediction) -> str:
    """SHA-256 of what the prediction said (scores, set, impression, model), in a canonical JSON form."""
    body = {
        "study": prediction.study_id,
        "scores": [[s.name, repr(float(s.probability)), bool(s.in_set)] for s in prediction.scores],
        "set": list(prediction.conformal_set),
        "coverage": prediction.coverage_target,
        "impression": prediction.impression,
        "present": list(prediction.present),
        "model": [prediction.model_id, prediction.model_version, prediction.calibrated],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _instant(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _who(user: str | None) -> str | None:
    """The operator's name as given, else the login name of this process (None when unknown)."""
    if user:
        return user
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):
        return None


class AuditStore:
    """The audit trail in one SQLite file; safe to share between processes (SQLite locking)."""

    def __init__(self, path: str | Path, *, salt: bytes | str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key = self._load_key(salt)
        self._fingerprints: dict[tuple[str, float, float], ModelFingerprint] = {}
        try:
            with self._connect() as db:
                db.executescript(_TABLES)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (_instant(_now()),))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('subject_hash', 'HMAC-SHA256, first 32 hex digits')", ())
                version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"audit store cannot be opened as SQLite ({type(exc).__name__})", path=self.path) from exc
        if version != str(SCHEMA_VERSION):
            raise ConfigError(
                f"audit store schema {version} is not the supported {SCHEMA_VERSION}",
                path=self.path,
                where="meta.schema_version",
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)

    def _load_key(self, salt: bytes | str | None) -> bytes:
        """The hashing key: given, from $MEDMM_AUDIT_SALT, or a random key in <store>.key (created once, mode 0600)."""
        if salt is None:
            salt = os.environ.get(ENV_SALT) or None
        if salt is not None:
            return salt.encode() if isinstance(salt, str) else bytes(salt)
        key_file = self.path.with_name(self.path.name + ".key")
        if not key_file.exists():
            # written aside, then linked in place: a key file is never seen half-written, and
            # of two processes creating it at once the first link wins
            tmp = key_file.with_name(f"{key_file.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            try:
                os.link(tmp, key_file)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        text = key_file.read_text().strip()
        if len(text) < 32:
            raise ConfigError("audit key file is too short (expected 64 hex digits)", path=key_file)
        return text.encode()

    def subject_hash(self, patient_id: str) -> str:
        """The keyed hash that stands for a patient id in the store."""
        return hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()[:32]

    def fingerprint(self, model_dir: str | Path) -> ModelFingerprint:
        """model_fingerprint(model_dir), remembered while the checkpoint's files stay unchanged."""
        model_dir = Path(model_dir)
        try:
            key = (
                str(model_dir.resolve()),
                (model_dir / "checksums.json").stat().st_mtime,
                (model_dir / "config.json").stat().st_mtime,
            )
        except OSError as exc:
            raise CheckpointError(
                "not a medmm checkpoint (expected checksums.json and config.json)", path=model_dir
            ) from exc
        if key not in self._fingerprints:
            self._fingerprints[key] = model_fingerprint(model_dir)
        return self._fingerprints[key]

    # -- writing -------------------------------------------------------------------------------

    def record_prediction(
        self,
        prediction: Prediction,
        *,
        inputs: Sequence[str | Path] = (),
        model_dir: str | Path,
        user: str | None = None,
        action: str = "predict",
        source: str = "cli",
        digests: Sequence[InputDigest] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record one prediction (AuditEvent + Provenance); returns the event id.

        `inputs` are the files or folders the study was read from (hashed here), or give
        `digests` already computed. With `run_id` (a batch study) the event id is derived from
        the run and the patient, so recording the same case of the same run twice keeps one record.
        """
        found = tuple(digests) if digests is not None else input_digests(inputs)
        return self._write([self._entry(prediction, found, model_dir, action, source, user, run_id)])[0]

    def record_feedback(
        self,
        prediction: Prediction,
        *,
        verdict: str,
        diagnoses: Sequence[str] = (),
        model_dir: str | Path,
        user: str | None = None,
        source: str = "ui",
        inputs: Sequence[str | Path] = (),
        digests: Sequence[InputDigest] | None = None,
    ) -> str:
        """Record a clinician's verdict on a prediction (agree | disagree | unsure) and the diagnoses they name.

        Only the model's label names (those the prediction scored) are accepted, so no free text (which could
        carry patient data) is stored.
        """
        if verdict not in VERDICTS:
            raise ConfigError(f"verdict must be one of {', '.join(VERDICTS)}", where="feedback.verdict")
        known = [s.name for s in prediction.scores]
        unknown = [d for d in diagnoses if d not in known]
        if unknown:
            raise ConfigError(
                f"diagnoses must be among {', '.join(known)} ({len(unknown)} are not)", where="feedback.diagnoses"
            )
        detail = json.dumps({"verdict": verdict, "diagnoses": sorted(set(diagnoses))}, sort_keys=True)
        found = tuple(digests) if digests is not None else input_digests(inputs)
        return self._write([self._entry(prediction, found, model_dir, "feedback", source, user, None, detail)])[0]

    def record_many(
        self,
        items: Iterable[tuple[Prediction, Sequence[InputDigest]]],
        *,
        model_dir: str | Path,
        run_id: str,
        user: str | None = None,
        source: str = "batch",
    ) -> list[str]:
        """Record the predictions of one batch part in one transaction (each keyed by run and patient)."""
        return self._write([self._entry(p, tuple(d), model_dir, "predict", source, user, run_id) for p, d in items])

    def _entry(
        self,
        prediction: Prediction,
        digests: tuple[InputDigest, ...],
        model_dir,
        action: str,
        source: str,
        user: str | None,
        run_id: str | None,
        detail: str | None = None,
    ) -> AuditRecord:
        if action not in ACTIONS:
            raise ConfigError(f"action must be one of {', '.join(ACTIONS)}", where="audit.action")
        if source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}", where="audit.source")
        subject = self.subject_hash(prediction.study_id)
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{_SYSTEM}:{run_id}:{subject}")) if run_id else str(uuid.uuid4())
        fp = self.fingerprint(model_dir)
        return AuditRecord(
            event_id,
            _now(),
            action,
            source,
            _who(user),
            "success",
            subject,
            prediction.model_id,
            prediction.model_version,
            fp.model_checksum,
            fp.config_checksum,
            prediction_checksum(prediction),
            run_id,
            detail,
            digests,
        )

    def _write(self, entries: list[AuditRecord]) -> list[str]:
        """Insert entries in one transaction; an event id already stored (a batch case recorded before) is kept as it was."""
        try:
            with self._connect() as db:
                for e in entries:
                    event, provenance = _audit_event(e), _provenance(e)
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO audit_event VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            e.event_id,
                            _instant(e.recorded),
                            e.action,
                            e.source,
                            e.user,
                            e.outcome,
                            e.subject_hash,
                            e.model_id,
                            e.model_version,
                            e.model_checksum,
                            e.config_checksum,
                            e.output_checksum,
                            e.run_id,
                            e.detail,
                            json.dumps(event),
                        ),
                    )
                    if cursor.rowcount == 0:
                        continue
                    db.executemany(
                        "INSERT INTO audit_input VALUES (?, ?, ?, ?, ?)",
                        [(e.event_id, i, d.kind, d.sha256, int(d.size)) for i, d in enumerate(e.inputs)],
                    )
                    db.execute(
                        "INSERT INTO provenance VALUES (?, ?, ?, ?)",
                        (provenance["id"], e.event_id, _instant(e.recorded), json.dumps(provenance)),
                    )
        except sqlite3.DatabaseError as exc:
            raise MedmmError(
                f"audit records could not be written ({type(exc).__name__})", path=self.path, where="audit_event"
            ) from exc
        return [e.event_id for e in entries]

    # -- reading -------------------------------------------------------------------------------

    def events(
        self, *, action: str | None = None, source: str | None = None, run_id: str | None = None
    ) -> list[AuditRecord]:
        """Stored events, oldest first, optionally only those of one action, source or batch run."""
        clauses, args = [], []
        for column, value in (("action", action), ("source", source), ("run_id", run_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(
                "SELECT event_id, recorded, action, source, user, outcome, subject_hash, model_id, model_version, model_checksum, "
                f"config_checksum, output_checksum, run_id, detail FROM audit_event{where} ORDER BY recorded, rowid",
                args,
            ).fetchall()
            inputs: dict[str, list[InputDigest]] = {}
            query = f"SELECT event_id, kind, sha256, size FROM audit_input WHERE event_id IN (SELECT event_id FROM audit_event{where}) ORDER BY event_id, position"
            for event_id, kind, sha, size in db.execute(query, args):
                inputs.setdefault(event_id, []).append(InputDigest(kind, sha, size))
        return [
            AuditRecord(
                r[0], datetime.fromisoformat(r[1].replace("Z", "+00:00")), *r[2:], inputs=tuple(inputs.get(r[0], ()))
            )
            for r in rows
        ]

    def audit_event_json(self, event_id: str) -> str:
        """The stored FHIR R4 AuditEvent of one event, as JSON."""
        return self._resource("SELECT resource FROM audit_event WHERE event_id = ?", event_id)

    def provenance_json(self, event_id: str) -> str:
        """The stored FHIR R4 Provenance of one event, as JSON."""
        return self._resource("SELECT resource FROM provenance WHERE event_id = ?", event_id)

    def _resource(self, query: str, event_id: str) -> str:
        with self._connect() as db:
            row = db.execute(query, (event_id,)).fetchone()
        if row is None:
            raise ConfigError("no such audit event", path=self.path, where="event_id")
        return row[0]


def _identifier(system: str, value: str) -> dict:
    return {"identifier": {"system": system, "value": value}}


def _model_entity(e: AuditRecord) -> dict:
    return {
        "what": _identifier(f"{_SYSTEM}:model", e.model_id),
        "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        "name": f"medmm model {e.model_id}",
        "detail": [
            {"type": "model_version", "valueString": e.model_version},
            {"type": "model_sha256", "valueString": e.model_checksum},
            {"type": "config_sha256", "valueString": e.config_checksum},
            {"type": "output_sha256", "valueString": e.output_checksum},
        ],
    }


def _audit_event(e: AuditRecord) -> dict:
    """A FHIR R4 AuditEvent for one prediction or feedback (no patient data: the subject is a keyed hash)."""
    entities = [
        _model_entity(e),
        {
            "what": _identifier(f"{_SYSTEM}:subject-hash", e.subject_hash),
            "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
        },
    ]
    entities += [
        {
            "what": _identifier("urn:ietf:rfc:3986", f"urn:sha256:{d.sha256}"),
            "type": {"system": _ENTITY_TYPE, "code": "2"},
            "role": {"system": _OBJECT_ROLE, "code": "3", "display": "Report"},
            "description": f"{d.kind} input, {d.size} bytes",
        }
        for d in e.inputs
    ]
    if e.detail is not None:
        entities.append(
            {
                "what": _identifier(f"{_SYSTEM}:feedback", e.event_id),
                "detail": [{"type": "feedback", "valueString": e.detail}],
            }
        )
    return {
        "resourceType": "AuditEvent",
        "id": e.event_id,
        "type": {"system": _DCM, "code": "110100", "display": "Application Activity"},
        "subtype": [{"system": _SYSTEM, "code": e.action}],
        "action": "E" if e.action == "predict" else "C",
        "recorded": _instant(e.recorded),
        "outcome": "0",
        "agent": [
            {"who": {"display": e.user or "unknown"}, "requestor": True},
            {"who": {"display": f"medmm {e.model_version}"}, "requestor": False},
        ],
        "source": {
            "observer": {"display": f"medmm {e.source}"},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }


def _provenance(e: AuditRecord) -> dict:
    """A FHIR R4 Provenance: the prediction (by its checksum) derived from the inputs by the model."""
    return {
        "resourceType": "Provenance",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{_SYSTEM}:provenance:{e.event_id}")),
        "target": [_identifier(f"{_SYSTEM}:prediction-sha256", e.output_checksum)],
        "recorded": _instant(e.recorded),
        "agent": [
            {
                "type": {"coding": [{"system": _PARTICIPANT, "code": "assembler"}]},
                "who": {"display": f"medmm {e.model_version} model {e.model_id}"},
            },
            {
                "type": {"coding": [{"system": _PARTICIPANT, "code": "enterer"}]},
                "who": {"display": e.user or "unknown"},
            },
        ],
        "entity": [
            {"role": "source", "what": _identifier("urn:ietf:rfc:3986", f"urn:sha256:{d.sha256}")} for d in e.inputs
        ]
        + [{"role": "derivation", "what": _identifier(f"{_SYSTEM}:model-sha256", e.model_checksum)}],
    }
