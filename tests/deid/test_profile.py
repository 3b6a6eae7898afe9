"""The Annex E table: well formed, consistent with the DICOM dictionary, and resolved as documented."""

from __future__ import annotations

import pytest
from pydicom.datadict import keyword_for_tag

from medmm.deid.profile import TABLE, entry_for, resolve

BASIC = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}


def test_rows_are_well_formed_and_match_the_dictionary():
    tags = [e.tag for e in TABLE]
    assert len(tags) == len(set(tags)) == 317
    for e in TABLE:
        assert e.basic in BASIC and e.option in ("", "C", "K")
        if "x" not in e.tag.lower():
            assert keyword_for_tag(int(e.tag.replace(",", ""), 16)) == e.keyword


@pytest.mark.parametrize(
    ("basic", "action"),
    [("X/Z/U*", "U*"), ("X/Z/D", "D"), ("X/D", "D"), ("Z/D", "D"), ("X/Z", "Z"), ("X", "X"), ("U", "U")],
)
def test_combined_actions_resolve_to_one_valid_for_any_type(basic, action):
    assert resolve(basic) == action


@pytest.mark.parametrize(
    ("tag", "keyword", "basic", "action"),
    [
        (0x00100010, "PatientName", "Z", "Z"),
        (0x00100020, "PatientID", "Z/D", "D"),
        (0x00100030, "PatientBirthDate", "Z", "Z"),  # no date option applies to the birth date
        (0x00100040, "PatientSex", "Z", "K"),  # Retain Patient Characteristics
        (0x00080020, "StudyDate", "Z", "C"),  # Retain Longitudinal Temporal Information (modified dates)
        (0x00080050, "AccessionNumber", "Z", "Z"),
        (0x00181000, "DeviceSerialNumber", "X/Z/D", "D"),
        (0x0020000D, "StudyInstanceUID", "U", "U"),
        (0x00081140, "ReferencedImageSequence", "X/Z/U*", "U*"),
        (0x00400275, "RequestAttributesSequence", "X", "X"),
    ],
)
def test_rows_as_the_standard_gives_them(tag, keyword, basic, action):
    entry = entry_for(tag)
    assert (entry.keyword, entry.basic, entry.action) == (keyword, basic, action)


def test_repeating_groups_and_unlisted_tags():
    assert entry_for(0x60023000).keyword == "OverlayData" and entry_for(0x601E4000).keyword == "OverlayComments"
    assert entry_for(0x60020010) is None  # overlay rows: not in the table
    assert entry_for(0x50040005).keyword == "CurveData"
    assert entry_for(0x00280010) is None  # Rows
