"""De-identify one DICOM file with the PS3.15 Annex E profile of :mod:`medmm.deid.profile`.

Every element, at every depth of every sequence, gets the action of its table row; private
elements are removed (the Retain Safe Private option is not applied); an element with no row
falls to a stricter rule by value representation: person names removed, dates shifted, UIDs
replaced unless they name a class or coding scheme, free text removed unless it is known to
be technical (manufacturer, rescale type, code meanings ...), photographic EXIF data (group
0016: camera, GPS position) removed, everything else kept.
The pixel data are never touched, so objects whose pixels may show identifying text or
features (Burned In Annotation YES, ultrasound, secondary capture, photographs) and objects
of SOP classes the profile was not checked on are refused, with the reason.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from medmm.deid.dates import shift_dicom_date, shift_dicom_datetime
from medmm.deid.mapping import PatientContext
from medmm.deid.profile import OPTIONS, entry_for
from medmm.deid.text import Identifiers
from medmm.records import Issue

DEIDENTIFIABLE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX for presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX for processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "MG for presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "MG for processing",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR",
    "1.2.840.10008.5.1.4.1.1.12.1": "XA",
    "1.2.840.10008.5.1.4.1.1.12.2": "XRF",
    "1.2.840.10008.5.1.4.1.1.20": "NM",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET",
}
"""Image SOP classes whose attributes the profile covers; any other object is refused."""

BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "SC", "OT", "XC", "ES", "GM", "SM"})
"""Modalities that often carry identifying text or features in the pixels (no pixel rule here)."""

KEEP_UIDS = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "TransferSyntaxUID",
    }
)
"""UI elements not in the table that name a class or a coding scheme, never an instance."""

KEEP_TEXT = frozenset(
    {
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "RescaleType",
        "WindowCenterWidthExplanation",
        "LUTExplanation",
        "PositionReferenceIndicator",
        "ConvolutionKernel",
        "FilterType",
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "MappingResourceName",
        "DetectorManufacturerName",
        "DetectorManufacturerModelName",
        "PlateType",
        "PhosphorType",
        "ReceiveCoilName",
        "TransmitCoilName",
        "SequenceName",
        "PulseSequenceName",
        "ContrastBolusRoute",
        "AcquisitionDeviceProcessingCode",
        "DeidentificationMethod",
        "SpecificCharacterSet",
    }
)
"""Free-text elements not in the table whose values are technical, never about a person."""

TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "UR", "AE"})
METHOD = (
    "medmm deid",
    "Basic Application Confidentiality Profile",
    "Retain Longitudinal Modified Dates Option",
    "Retain Patient Characteristics Option",
)
_PSEUDONYM_KEYWORDS = ("PatientID", "PatientName")
_ID_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "AdmissionID",
    "StudyID",
    "MedicalRecordLocator",
    "ClinicalTrialSubjectID",
    "ServiceEpisodeID",
)
_DUMMY_TEXT = "ANONYMIZED"
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})


@dataclass
class DicomOutcome:
    """What happened to one file: written, or refused with a reason; actions counted by kind."""

    refused: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    issues: list[Issue] = field(default_factory=list)


def read_dataset(path: Path, *, header_only: bool = False) -> Dataset:
    """The data set of a file (OSError, InvalidDicomError or ValueError when unreadable)."""
    if zipfile.is_zipfile(path) and not _has_preamble(path):
        raise InvalidDicomError("archive")
    return pydicom.dcmread(path, force=True, stop_before_pixels=header_only)


def _has_preamble(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(132)[128:] == b"DICM"


def collect_identifiers(path: Path, found: Identifiers) -> tuple[str, ...]:
    """Add a file's person names, patient ids, addresses and phone numbers to `found`; its PatientIDs."""
    try:
        ds = read_dataset(path, header_only=True)
    except Exception:  # unreadable files are refused later with their reason
        return ()
    for elem in ds.iterall():
        for value in _values(elem):
            if elem.VR == "PN":
                found.add_name(str(value))
            elif elem.keyword in _ID_KEYWORDS:
                found.add_id(str(value))
            elif elem.keyword in ("PatientAddress", "InstitutionAddress", "PersonAddress"):
                found.add_address(str(value))
            elif elem.keyword in ("PatientTelephoneNumbers", "PatientTelecomInformation"):
                found.add_contact(str(value))
    pid = ds.get("PatientID")
    return (str(pid),) if pid else ()


def refusal_reason(ds: Dataset) -> str | None:
    """Why a data set cannot be de-identified by metadata alone, or None when it can."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "Burned In Annotation is YES: identifying text in the pixels cannot be removed by this profile"
    if str(ds.get("RecognizableVisualFeatures", "")).upper() == "YES":
        return "Recognizable Visual Features is YES: the pixels may show the patient's face"
    modality = str(ds.get("Modality", "")).upper()
    if modality in BURNED_IN_MODALITIES:
        return f"modality {modality} often carries identifying text in the pixels and no pixel rule covers it"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in DEIDENTIFIABLE_SOP_CLASSES:
        what = "no SOP Class UID" if not sop_class else f"SOP class {sop_class}"
        return f"{what} is not among the image classes the profile covers"
    return None


def deidentify_dicom(src: Path, dst: Path, ctx: PatientContext) -> DicomOutcome:
    """De-identify `src` into `dst` (a Part-10 file), or refuse it with the reason."""
    outcome = DicomOutcome()
    try:
        ds = read_dataset(src)
    except Exception as exc:  # pydicom raises many kinds for broken files; none may pass through
        unreadable = f"not readable as DICOM ({type(exc).__name__})"
        outcome.refused = "a zip archive (extract it first)" if str(exc) == "archive" else unreadable
        return outcome
    reason = refusal_reason(ds)
    if reason is not None:
        outcome.refused = reason
        return outcome
    syntax = (ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None) or ImplicitVRLittleEndian
    try:
        _clean(ds, ctx, outcome, str(src))
    except Exception as exc:  # an element pydicom cannot decode: refuse rather than pass anything through
        outcome.refused = f"could not be de-identified: an element cannot be read ({type(exc).__name__})"
        return outcome
    _mark(ds, ctx)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    ds.preamble = b"\0" * 128  # a preamble may hold a TIFF header with patient data
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        pydicom.dcmwrite(dst, ds, enforce_file_format=True)
    except Exception as exc:  # an element pydicom cannot encode: refuse rather than write half a file
        dst.unlink(missing_ok=True)
        outcome.refused = f"could not be written after de-identification ({type(exc).__name__})"
    return outcome


def _clean(ds: Dataset, ctx: PatientContext, out: DicomOutcome, source: str) -> None:
    """Apply the profile to every element of `ds` and, recursively, of its sequences."""
    for tag in list(ds.keys()):
        elem = ds[tag]
        if tag.is_private:
            del ds[tag]
            out.counts["X private"] += 1
            continue
        if tag.element == 0:  # group length: recomputed on write where needed
            del ds[tag]
            continue
        entry = entry_for(int(tag))
        action, how = (entry.action, "table") if entry else (_rule(elem), "rule")
        if elem.keyword in _PSEUDONYM_KEYWORDS:
            elem.value = ctx.patient.pseudonym
            out.counts[f"{action} {how}"] += 1
            continue
        out.counts[f"{action} {how}"] += 1
        if action == "X":
            del ds[tag]
        elif action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else (b"" if elem.VR in _BINARY_VRS else "")
        elif action == "U":
            _map(elem, ctx.keys.uid)
        elif action == "C":
            _shift(elem, ctx.patient.offset_days, out, source)
        elif elem.VR == "SQ":  # K, D or U* on a sequence: keep it and clean its items
            for item in elem.value:
                _clean(item, ctx, out, source)
        elif action == "D":
            _dummy(elem, ctx)


def _rule(elem: DataElement) -> str:
    """The action for an element the table does not list (stricter than the standard)."""
    vr = elem.VR
    if not elem.keyword or vr == "UN" or vr == "PN" or elem.tag.group == 0x0016:  # 0016: photo EXIF, GPS position
        return "X"
    if vr in ("DA", "DT"):
        return "C"
    if vr == "UI":
        standard = all(str(v).startswith("1.2.840.10008.") for v in _values(elem))
        return "K" if elem.keyword in KEEP_UIDS or standard else "U"
    if vr in TEXT_VRS:
        return "K" if elem.keyword in KEEP_TEXT else "X"
    return "K"


def _values(elem: DataElement) -> list[object]:
    if elem.VR == "SQ" or elem.value is None or elem.value == "":
        return []
    return list(elem.value) if isinstance(elem.value, MultiValue) else [elem.value]


def _map(elem: DataElement, fn: Callable[[str], str]) -> None:
    """Replace every value of a UID element (multi-valued included)."""
    values = [fn(str(v)) for v in _values(elem)]
    elem.value = values if len(values) > 1 else (values[0] if values else "")


def _shift(elem: DataElement, days: int, out: DicomOutcome, source: str) -> None:
    """Shift DA and DT values; TM and time-zone offsets stay (a whole-day shift leaves them valid)."""
    if elem.VR not in ("DA", "DT"):
        return
    fn = shift_dicom_date if elem.VR == "DA" else shift_dicom_datetime
    try:
        values = [fn(str(v), days) for v in _values(elem)]
    except ValueError:
        elem.value = ""
        out.issues.append(
            Issue(
                source,
                f"({elem.tag.group:04X},{elem.tag.element:04X}) {elem.keyword}",
                f"{elem.VR} value not readable as a date; emptied instead of shifted",
                "dropped",
            )
        )
        return
    elem.value = values if len(values) > 1 else (values[0] if values else "")


def _dummy(elem: DataElement, ctx: PatientContext) -> None:
    """A value that says nothing, valid for the element's VR."""
    vr = elem.VR
    if vr in ("IS", "DS"):
        elem.value = "0"
    elif vr in _NUMBER_VRS:
        elem.value = 0
    elif vr in _BINARY_VRS:
        elem.value = b"\0\0"
    elif vr == "UI":
        _map(elem, ctx.keys.uid)
    elif vr in ("DA", "DT", "TM"):
        elem.value = {"DA": "19000101", "DT": "19000101000000", "TM": "000000"}[vr]
    else:
        elem.value = _DUMMY_TEXT


def _mark(ds: Dataset, ctx: PatientContext) -> None:
    """Record what was done, as PS3.15 asks: identity removed, method, codes, dates modified."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(METHOD)
    items = []
    for code, meaning in OPTIONS:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.PatientID = ds.PatientName = ctx.patient.pseudonym
