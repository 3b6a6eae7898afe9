"""Who and when a result is about: the patient's facts, with where each came from.

The FHIR record is the first source. When a study has no record (a radiograph alone), the
DICOM header of its images says who it is (ImageSeries.patient: PatientID, PatientSex,
PatientAge, PatientBirthDate); the header shown above every result and the subgroup card then
use those, and say so. When both sources state a fact and disagree, the page says that too.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime

from medmm.errors import MedmmError
from medmm.records import Demographics, ImagePatient, Study

DICOM_SEX = {"M": "male", "F": "female", "O": "other"}
RECORD = "FHIR record"
_AGE = re.compile(r"(\d{3})([DWMY])")
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0, "Y": 365.25}


@dataclass(frozen=True)
class Fact:
    """One fact about the patient: its value (None: not stated anywhere) and its source."""

    value: str | float | None
    source: str  # "FHIR record" | "DICOM header" | "cohort manifest" | ""


@dataclass(frozen=True)
class PatientFacts:
    """The patient as the header shows them, with the disagreements between the record and the images."""

    patient_id: Fact
    sex: Fact
    age_years: Fact
    conflicts: tuple[str, ...] = ()
    image_id: str | None = (
        None  # the images' DICOM PatientID when it differs from the ID shown (e.g. a record's resource id)
    )


def dicom_age_years(age: str | None) -> float | None:
    """PatientAge ("053Y", "006M", "002W", "010D") in years; None when absent or malformed."""
    m = _AGE.fullmatch((age or "").strip().upper())
    if not m:
        return None
    return int(m[1]) * _DAYS_PER[m[2]] / 365.25


def image_patient(study: Study) -> ImagePatient | None:
    """The first image's DICOM patient attributes (the study holds one patient's images)."""
    return next((s.patient for s in study.images if s.patient is not None), None)


def has_record(study: Study) -> bool:
    """Whether a FHIR record was read for this study."""
    return any(ref.kind == "fhir" for ref in study.provenance)


def patient_facts(study: Study) -> PatientFacts:
    """ID, sex and age at the study time, from the FHIR record first, else from the images' DICOM header.

    An uploaded study without a record has a made-up id; the DICOM PatientID replaces it here.
    """
    demo = study.demographics or Demographics(patient_id="")
    image = image_patient(study)
    recorded = has_record(study)
    conflicts = []

    if recorded and demo.patient_id:
        pid = Fact(demo.patient_id, RECORD)
    elif image is not None and image.patient_id:
        pid = Fact(image.patient_id, "DICOM header")
    else:
        pid = Fact(None, "")

    image_sex = DICOM_SEX.get((image.sex or "").upper()) if image is not None else None
    if demo.sex:
        sex = Fact(demo.sex, RECORD)
        if image_sex and image_sex != demo.sex:
            conflicts.append(f"Sex: the {RECORD} says {demo.sex}, the DICOM header says {image_sex}.")
    else:
        sex = Fact(image_sex, "DICOM header" if image_sex else "")

    image_age = _image_age(image, study.time)
    if demo.age_years is not None:
        age = Fact(float(demo.age_years), RECORD)
        if image_age is not None and abs(image_age - demo.age_years) >= 1.0:
            conflicts.append(
                f"Age: the {RECORD} gives {format_age(demo.age_years)}, the DICOM header {format_age(image_age)}."
            )
    else:
        age = Fact(image_age, "DICOM header" if image_age is not None else "")
    image_id = image.patient_id if image is not None and image.patient_id and image.patient_id != pid.value else None
    return PatientFacts(pid, sex, age, tuple(conflicts), image_id)


def _image_age(image: ImagePatient | None, when: datetime | None) -> float | None:
    if image is None:
        return None
    years = dicom_age_years(image.age)
    if years is None and image.birth_date and when is not None:
        from medmm.io.fhir import age_at

        try:
            years = age_at(image.birth_date, when)
        except MedmmError:
            years = None
    return years


def format_age(years: float | None) -> str:
    """ "53 years", "8 months", "12 days"; "not stated" for None."""
    if years is None:
        return "not stated"
    if years >= 2.0:
        return f"{int(years)} years"
    months = years * 12.0
    if months >= 1.0:
        return f"{int(months)} month{'s' if int(months) != 1 else ''}"
    days = int(round(years * 365.25))
    return f"{days} day{'s' if days != 1 else ''}"


def effective_demographics(study: Study, facts: PatientFacts | None = None) -> Demographics:
    """The study's demographics with sex and age filled in from the DICOM header where the record has none (for the subgroup card)."""
    facts = facts or patient_facts(study)
    demo = study.demographics or Demographics(patient_id=str(facts.patient_id.value or ""))
    sex = demo.sex or (facts.sex.value if isinstance(facts.sex.value, str) else None)
    age = demo.age_years if demo.age_years is not None else facts.age_years.value
    return dataclasses.replace(demo, sex=sex, age_years=age if isinstance(age, float) else None)
