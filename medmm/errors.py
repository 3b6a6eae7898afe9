"""One error hierarchy for medmm, rooted at :class:`MedmmError`.

Every message names the file, the place inside it (a DICOM tag, a bundle entry, a CSV row)
and what was expected. Messages never carry patient data: values read from a file are not
echoed back, only their location and kind.
"""

from __future__ import annotations

from pathlib import Path


class MedmmError(Exception):
    """Base of every error medmm raises on purpose."""

    kind = "medmm"

    def __init__(self, message: str, *, path: str | Path | None = None, where: str | None = None):
        self.path = None if path is None else str(path)
        self.where = where
        self.detail = message
        parts = [p for p in (self.path, where) if p]
        super().__init__(": ".join(parts + [message]) if parts else message)


class InputError(MedmmError):
    """A file given to medmm could not be understood."""

    kind = "input"


class DicomError(InputError):
    """A DICOM file is unreadable, truncated, or lacks what medmm needs (tag named in `where`)."""

    kind = "dicom"


class UnsupportedDicomError(DicomError):
    """A valid DICOM object medmm does not turn into an image (SR, RT, SEG, DICOMDIR, ...)."""

    kind = "dicom-unsupported"


class FhirError(InputError):
    """A FHIR resource or bundle is not JSON, not FHIR, or invalid (entry and field in `where`)."""

    kind = "fhir"


class VitalsError(InputError):
    """A vital-sign file or observation is malformed or in a unit medmm will not guess."""

    kind = "vitals"


class CohortError(InputError):
    """A cohort folder or manifest does not follow the documented layout."""

    kind = "cohort"


class ConfigError(MedmmError):
    """A configuration file or option is invalid."""

    kind = "config"


class CheckpointError(MedmmError):
    """A checkpoint is missing, tampered with, or belongs to another architecture."""

    kind = "checkpoint"


class EvaluationError(MedmmError):
    """Arrays or options given to an evaluation function are inconsistent or out of range."""

    kind = "evaluate"
