"""A small cohort with identifying values planted in every attribute class the profile covers.

Two patients. Patient A ("jane" folder, named after her) has two CT slices of one series (the
second referring to the first), a CR radiograph, an ultrasound and a CR marked Burned In
Annotation YES, a FHIR bundle and a vitals table; patient B has one CT slice and a bundle.
Every planted value is distinctive so that a search of the output cannot hit it by chance.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"
US_SOP = "1.2.840.10008.5.1.4.1.1.6.1"
ROOT = "1.2.826.0.1.3680043.9.7777."

A_STUDY, A_SERIES, A_FRAME = ROOT + "1.1", ROOT + "1.2", ROOT + "1.3"
A_CT1, A_CT2, A_CR, A_US, A_BURNED = ROOT + "1.11", ROOT + "1.12", ROOT + "1.13", ROOT + "1.14", ROOT + "1.15"
A_CR_SERIES = ROOT + "1.4"
B_STUDY, B_SERIES, B_CT = ROOT + "2.1", ROOT + "2.2", ROOT + "2.11"

A_FOLDER = "jane_zelwegger_884211"
A_ID, B_ID = "MRN-884211", "MRN-220077"
A_STUDY_DATE, A_ACQ_DATE = "20230315", "20230317"  # two days apart
A_BIRTH_FHIR = "1961-04-12"
A_ENCOUNTER_START = "2023-03-14T08:30:00-05:00"
A_NOTE_DATE = "2023-03-16T09:00:00-05:00"
A_VITALS_TIMES = ("2023-03-16T10:00:00+00:00", "2023-03-16T11:00:00+00:00")
MANIFEST_STUDY_TIME = "2023-03-17T12:00:00+00:00"

PLANTED_A = (
    "ZELWEGGER",
    "QUIXOTICA",
    "Zelwegger^Quixotica^Q",
    A_ID,
    "884211",
    "XK-55-ALT-ID",
    "ROEBUCKLE",
    "19610412",
    A_BIRTH_FHIR,
    "42 Wallaby Way",
    "Sydneyville",
    "02115-7788",
    "617-555-0199",
    "quixotica.z@example.org",
    "123-45-6789",
    "St Elsewhere General",
    "1 Hospital Plaza Boston",
    "HOUSINGTON",
    "RATCHEDLY",
    "SN-ZX-99812",
    "CTSTATION-7B",
    "ACC77123",
    "STU-5521",
    "RP-3344",
    "SPS-8890",
    "VN-0042-1177",
    "DOC-ID-5511",
    "jane_zelwegger",
    "Gregory",
    "private-phi-value",
    A_STUDY_DATE,
    A_ACQ_DATE,
    "2023-03-14",
    "2023-03-16",
    "03/16/2023",
    A_STUDY,
    A_SERIES,
    A_FRAME,
    A_CT1,
    A_CT2,
    A_CR,
    A_CR_SERIES,
)
PLANTED_B = ("PLONKETT", "ARCHIBALD", B_ID, "220077", "20220101", B_STUDY, B_SERIES, B_CT)
LABEL = "pneumonia"


@dataclass(frozen=True)
class PhiCohort:
    root: Path
    a_folder: Path
    b_folder: Path


def _dataset(sop_class: str, sop_uid: str, modality: str, study: str, series: str, pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.SourceApplicationEntityTitle = "CTSTATION-7B"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality = modality
    ds.Manufacturer = "Acme Medical"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def _plant_patient_a(ds: Dataset) -> None:
    """Names, ids, dates, addresses, device and station, free text, nested and private PHI."""
    ds.PatientName = "Zelwegger^Quixotica^Q"
    ds.PatientID = A_ID
    ds.OtherPatientIDs = "XK-55-ALT-ID"
    ds.PatientBirthName = "ROEBUCKLE^QUIXOTICA"
    ds.PatientBirthDate = "19610412"
    ds.PatientSex = "F"
    ds.PatientAge = "061Y"
    ds.PatientAddress = "42 Wallaby Way Sydneyville"
    ds.PatientTelephoneNumbers = "617-555-0199"
    ds.InstitutionName = "St Elsewhere General"
    ds.InstitutionAddress = "1 Hospital Plaza Boston"
    ds.ReferringPhysicianName = "HOUSINGTON^Gregory"
    ds.OperatorsName = "RATCHEDLY^MILDRED"
    ds.DeviceSerialNumber = "SN-ZX-99812"
    ds.StationName = "CTSTATION-7B"
    ds.AccessionNumber = "ACC77123"
    ds.StudyID = "STU-5521"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = A_STUDY_DATE
    ds.AcquisitionDate = A_ACQ_DATE
    ds.StudyTime, ds.AcquisitionTime = "101500", "093000"
    ds.AcquisitionDateTime = A_ACQ_DATE + "093000.000000+0000"
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.StudyDescription = "CT chest for Quixotica Zelwegger"
    ds.ImageComments = "Patient ZELWEGGER, call 617-555-0199"
    ds.AdditionalPatientHistory = "Lives at 42 Wallaby Way; MRN-884211"
    request = Dataset()
    request.RequestedProcedureID = "RP-3344"
    request.ScheduledProcedureStepID = "SPS-8890"
    request.AccessionNumber = "ACC77123"
    request.add_new(0x00090010, "LO", "ACME PRIVATE")
    request.add_new(0x00091001, "LO", "private-phi-value ZELWEGGER")
    ds.RequestAttributesSequence = Sequence([request])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = A_STUDY
    ds.ReferencedStudySequence = Sequence([study_ref])
    ds.add_new(0x00110010, "LO", "ACME 1.0")
    ds.add_new(0x00111001, "LO", "private-phi-value MRN-884211")
    ds.add_new(0x00111002, "DA", A_STUDY_DATE)
    ds.add_new(0x60004000, "LT", "overlay note for ZELWEGGER")


def write_dicom_a(folder: Path) -> dict[str, Path]:
    """Patient A's DICOM files by role: ct1, ct2 (named by its SOP Instance UID), cr, us, burned."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 7) % 4096
    paths = {}
    for role, sop_uid, z, name in (("ct1", A_CT1, 0.0, "slice1.dcm"), ("ct2", A_CT2, 2.5, f"{A_CT2}.dcm")):
        ds = _dataset(CT_SOP, sop_uid, "CT", A_STUDY, A_SERIES, pixels + int(z * 4))
        _plant_patient_a(ds)
        ds.FrameOfReferenceUID = A_FRAME
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, z]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.InstanceNumber = 1 if role == "ct1" else 2
        if role == "ct2":
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT_SOP, A_CT1
            ds.ReferencedImageSequence = Sequence([ref])
        paths[role] = images / name
        ds.save_as(paths[role], enforce_file_format=True)
    for role, sop_class, sop_uid, modality, burned in (
        ("cr", CR_SOP, A_CR, "CR", "NO"),
        ("us", US_SOP, A_US, "US", None),
        ("burned", CR_SOP, A_BURNED, "CR", "YES"),
    ):
        ds = _dataset(sop_class, sop_uid, modality, A_STUDY, A_CR_SERIES, pixels[::-1])
        _plant_patient_a(ds)
        if burned is not None:
            ds.BurnedInAnnotation = burned
        paths[role] = images / f"{role}.dcm"
        ds.save_as(paths[role], enforce_file_format=True)
    return paths


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


NOTE_A = (
    "Progress note 2023-03-16. Quixotica Zelwegger (MRN 884211, SSN 123-45-6789) reports productive "
    "cough and fever. Phone 617-555-0199, mail quixotica.z@example.org. Seen by Dr Gregory Housington. "
    "Follow-up on 03/16/2023."
)
NOTE_A_CLINICAL = "reports productive cough and fever."


def bundle_a() -> dict:
    """Patient A's FHIR R4 collection bundle with identifiers in every place FHIR puts them."""
    pid, enc, prac = "pat-884211", "enc-1", "prac-1"
    subject = {"reference": f"Patient/{pid}", "display": "Quixotica Zelwegger"}
    resources = [
        {
            "resourceType": "Patient",
            "id": pid,
            "text": {"status": "generated", "div": "<div>Quixotica Zelwegger, 42 Wallaby Way</div>"},
            "identifier": [
                {"system": "http://hospital.example.org/mrn", "value": A_ID},
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
            ],
            "name": [{"use": "official", "family": "Zelwegger", "given": ["Quixotica", "Q"]}],
            "telecom": [
                {"system": "phone", "value": "617-555-0199"},
                {"system": "email", "value": "quixotica.z@example.org"},
            ],
            "address": [{"line": ["42 Wallaby Way"], "city": "Sydneyville", "postalCode": "02115-7788"}],
            "gender": "female",
            "birthDate": A_BIRTH_FHIR,
            "extension": [
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                    "valueString": "ROEBUCKLE",
                },
            ],
            "contact": [{"name": {"family": "Roebuckle"}, "telecom": [{"system": "phone", "value": "617-555-0199"}]}],
        },
        {
            "resourceType": "Practitioner",
            "id": prac,
            "name": [{"family": "Housington", "given": ["Gregory"]}],
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "DOC-ID-5511"}],
        },
        {
            "resourceType": "Encounter",
            "id": enc,
            "status": "finished",
            "subject": subject,
            "identifier": [{"value": "VN-0042-1177"}],
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "period": {"start": A_ENCOUNTER_START, "end": "2023-03-18T10:00:00-05:00"},
            "participant": [{"individual": {"reference": f"Practitioner/{prac}", "display": "Dr Gregory Housington"}}],
        },
        {
            "resourceType": "Condition",
            "id": "cond-1",
            "subject": subject,
            "encounter": {"reference": f"Encounter/{enc}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "233604007", "display": "Pneumonia"}]},
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "onsetDateTime": "2023-03-14T09:00:00-05:00",
            "note": [{"authorString": "Gregory Housington", "text": "Quixotica says cough began 2023-03-14"}],
        },
        {
            "resourceType": "Observation",
            "id": "obs-hr",
            "status": "final",
            "subject": subject,
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2023-03-15T12:00:00+00:00",
            "valueQuantity": {"value": 96, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        },
        {
            "resourceType": "DocumentReference",
            "id": "doc-1",
            "status": "current",
            "subject": subject,
            "masterIdentifier": {"value": "DOC-ID-5511"},
            "date": A_NOTE_DATE,
            "author": [{"reference": f"Practitioner/{prac}", "display": "Gregory Housington"}],
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": _b64(NOTE_A),
                        "hash": "deadbeef",
                        "size": len(NOTE_A),
                    }
                },
                {"attachment": {"contentType": "application/pdf", "data": _b64("%PDF Zelwegger")}},
            ],
        },
    ]
    entries = [
        {"fullUrl": f"http://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]
    return {
        "resourceType": "Bundle",
        "id": "bundle-884211",
        "type": "collection",
        "identifier": {"value": "VN-0042-1177"},
        "timestamp": "2023-03-18T10:00:00-05:00",
        "entry": entries,
    }


def bundle_b() -> dict:
    pid = "pat-220077"
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"value": B_ID}],
        "name": [{"family": "Plonkett", "given": ["Archibald"]}],
        "gender": "male",
        "birthDate": "1950-06-01",
    }
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-b",
        "status": "finished",
        "subject": {"reference": f"urn:uuid:{pid}"},
        "class": {"code": "IMP"},
        "period": {"start": "2022-01-01T08:00:00Z", "end": "2022-01-02T08:00:00Z"},
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{pid}", "resource": patient},
            {"fullUrl": "urn:uuid:enc-b", "resource": encounter},
        ],
    }


def build_phi_cohort(root: Path) -> PhiCohort:
    """The two-patient cohort, with a manifest naming patient A by MRN and folder by name."""
    a, b = root / A_FOLDER, root / "b_220077"
    write_dicom_a(a)
    (a / "record.json").write_text(json.dumps(bundle_a()), encoding="utf-8")
    (a / "vitals.csv").write_text(
        "time,code,value,unit,mrn\n"
        + "".join(f"{t},8867-4,{90 + i},/min,{A_ID}\n" for i, t in enumerate(A_VITALS_TIMES)),
        encoding="utf-8",
    )
    (a / "truth.json").write_text(json.dumps({"patient_id": A_ID}), encoding="utf-8")
    ds = _dataset(CT_SOP, B_CT, "CT", B_STUDY, B_SERIES, np.full((4, 4), 1000, np.uint16))
    ds.PatientName, ds.PatientID, ds.StudyDate = "PLONKETT^ARCHIBALD", B_ID, "20220101"
    (b / "images").mkdir(parents=True)
    ds.save_as(b / "images" / "ct.dcm", enforce_file_format=True)
    (b / "record.json").write_text(json.dumps(bundle_b()), encoding="utf-8")
    (root / "manifest.csv").write_text(
        "patient_id,folder,split,study_time,sex,age_years,race,ethnicity,labels,has_image,has_notes,has_vitals,comment\n"
        f"{A_ID},{A_FOLDER},train,{MANIFEST_STUDY_TIME},female,61,2106-3,2186-5,{LABEL},1,1,1,call 617-555-0199\n"
        f"{B_ID},b_220077,test,2022-01-02T00:00:00+00:00,male,71,2106-3,2186-5,,1,0,0,\n",
        encoding="utf-8",
    )
    return PhiCohort(root, a, b)
