"""Whole-day date shifts in every written form, checked against dates counted by hand."""

from __future__ import annotations

import pytest

from medmm.deid.dates import (
    is_full_datetime,
    shift_dates_in_text,
    shift_dicom_date,
    shift_dicom_datetime,
    shift_fhir_date,
    shift_iso_datetime,
)


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20200301", -1, "20200229"),
        ("20210301", -1, "20210228"),
        ("19991231", 1, "20000101"),
        ("2020.03.01", -366, "20190301"),
    ],
)
def test_dicom_da(value, days, expected):
    assert shift_dicom_date(value, days) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20200301", "20200229"),
        ("2020030112", "2020022912"),
        ("20200301123015.123456+0100", "20200229123015.123456+0100"),
        ("202003", "202002"),  # 2020-03-01 less a day is in February: a month stays a month
        ("2020", "2019"),
        ("2020+0100", "2019+0100"),
    ],
)
def test_dicom_dt_keeps_time_offset_and_precision(value, expected):
    assert shift_dicom_datetime(value, -1) == expected


@pytest.mark.parametrize("value", ["2020-03-01", "2020130", "20201301", "abc"])
def test_dicom_da_values_that_are_not_dates_raise(value):
    with pytest.raises(ValueError):
        shift_dicom_date(value, 1)


@pytest.mark.parametrize("value", ["2020-03-01", "20200301xx", "20201301", "20200301123"])
def test_dicom_dt_values_that_are_not_dates_raise(value):
    with pytest.raises(ValueError):
        shift_dicom_datetime(value, 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-03-01", "2020-02-29"),
        ("2020-03", "2020-02"),
        ("2020", "2019"),
        ("2020-03-01T00:30:00-05:00", "2020-02-29T00:30:00-05:00"),
        ("2020-03-01T00:30:00.250Z", "2020-02-29T00:30:00.250Z"),
    ],
)
def test_fhir_forms(value, expected):
    assert shift_fhir_date(value, -1) == expected


@pytest.mark.parametrize("value", ["2020-02-30", "March 2020", "2020-03-01T25", "T10:00:00"])
def test_fhir_non_dates_raise(value):
    with pytest.raises(ValueError):
        shift_fhir_date(value, 1)


def test_full_datetime_needs_a_time():
    assert (
        is_full_datetime("2020-03-01T10:00:00Z")
        and not is_full_datetime("2020-03-01")
        and not is_full_datetime("8867-4")
    )


def test_iso_table_times():
    assert shift_iso_datetime("2020-03-01T10:00:00+00:00", -1) == "2020-02-29T10:00:00+00:00"
    assert shift_iso_datetime("2020-03-01T10:00:00Z", -1) == "2020-02-29T10:00:00Z"
    assert shift_iso_datetime("2020-03-01", 365) == "2021-03-01"
    with pytest.raises(ValueError):
        shift_iso_datetime("yesterday", 1)


def test_dates_in_free_text():
    text, n = shift_dates_in_text("seen 2020-03-01 and on 3/1/2020; code 1234-56-78, 2020-13-01 left", -1)
    assert text == "seen 2020-02-29 and on 02/29/2020; code 1234-56-78, 2020-13-01 left" and n == 2
