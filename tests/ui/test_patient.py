"""The patient's facts: the record first, the DICOM header when the record says nothing, disagreements reported."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pydicom
import pytest

from medmm.records import Demographics, ImagePatient, ImageSeries, SourceRef, Study
from tests.ui.conftest import full_patient, make_service
from ui.audit_card import patient_groups
from ui.patient import dicom_age_years, effective_demographics, format_age, patient_facts

WHEN = datetime(2020, 6, 14, 12, 0, tzinfo=timezone.utc)


def image(patient: ImagePatient | None) -> ImageSeries:
    return ImageSeries(
        pixels=np.zeros((4, 4), np.float32), spacing=(1.0, 1.0), modality="DX", series_uid="1", patient=patient
    )


def test_dicom_ages_in_days_weeks_months_and_years():
    assert dicom_age_years("053Y") == 53.0
    assert dicom_age_years("006M") == pytest.approx(0.5)
    assert dicom_age_years("002W") == pytest.approx(14 / 365.25)
    assert dicom_age_years("010D") == pytest.approx(10 / 365.25)
    assert dicom_age_years("53Y") is None and dicom_age_years("") is None and dicom_age_years(None) is None
    assert (format_age(53.9), format_age(1.5), format_age(10 / 365.25), format_age(None)) == (
        "53 years",
        "18 months",
        "10 days",
        "not stated",
    )


def test_a_radiograph_alone_takes_id_sex_and_age_from_its_dicom_header():
    study = Study(
        "upload-1234", Demographics("upload-1234"), images=(image(ImagePatient("PX-7", "F", "045Y")),), time=WHEN
    )
    facts = patient_facts(study)
    assert (facts.patient_id.value, facts.patient_id.source) == ("PX-7", "DICOM header")  # not the made-up upload id
    assert (facts.sex.value, facts.age_years.value, facts.sex.source) == ("female", 45.0, "DICOM header")
    demo = effective_demographics(study)
    assert patient_groups(demo) == {"sex": "female", "age_band": "40-64", "race": "unknown", "ethnicity": "unknown"}


def test_a_birth_date_gives_the_age_at_the_study_time_when_patient_age_is_absent():
    study = Study("u", Demographics("u"), images=(image(ImagePatient("PX", None, None, "1970-06-15")),), time=WHEN)
    facts = patient_facts(study)
    assert facts.age_years.value == pytest.approx(49.997, abs=1e-3) and format_age(facts.age_years.value) == "49 years"
    assert facts.sex.value is None and facts.sex.source == ""


def test_the_record_comes_first_and_a_disagreeing_header_is_reported():
    record = Demographics("R-1", sex="male", age_years=61.2)
    study = Study(
        "R-1",
        record,
        images=(image(ImagePatient("PX", "F", "040Y")),),
        time=WHEN,
        provenance=(SourceRef("record.json", "fhir"),),
    )
    facts = patient_facts(study)
    assert (facts.patient_id.value, facts.sex.value, facts.age_years.value) == ("R-1", "male", 61.2)
    assert facts.sex.source == facts.age_years.source == "FHIR record"
    assert facts.conflicts == (
        "Sex: the FHIR record says male, the DICOM header says female.",
        "Age: the FHIR record gives 61 years, the DICOM header 40 years.",
    )


def test_an_uploaded_radiograph_alone_gets_its_group_card_from_the_dicom_header(
    ui_model, ui_predictor, small_cohort, tmp_path
):
    service = make_service(ui_model, tmp_path, predictor=ui_predictor)
    dicom = sorted((full_patient(small_cohort) / "images").rglob("*.dcm"))[0]
    header = pydicom.dcmread(dicom, stop_before_pixels=True)
    case = service.open_uploads([dicom])
    want_sex = {"M": "male", "F": "female"}[header.PatientSex]
    rows = {r.attribute: r.group for r in case.card.rows}
    assert (
        rows["sex"] == want_sex and rows["age_band"] != "unknown"
    )  # the card no longer says "unknown" for a radiograph alone
    assert patient_facts(case.study).patient_id.value == header.PatientID
    service.close()
