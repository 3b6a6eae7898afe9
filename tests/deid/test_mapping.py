"""Keyed pseudonyms, offsets and UIDs; the mapping file and re-identification."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest

from medmm.deid.mapping import (
    FORMAT,
    MAX_SHIFT_DAYS,
    MIN_SHIFT_DAYS,
    DeidMapping,
    Keys,
    PatientEntry,
    load_mapping,
    merge,
    new_secret,
    save_mapping,
)
from medmm.errors import ConfigError


def test_same_secret_same_replacements_other_secret_others():
    a, b, c = Keys("s1"), Keys("s1"), Keys("s2")
    assert a.patient("MRN-1") == b.patient("MRN-1") != c.patient("MRN-1")
    assert a.uid("1.2.3") == b.uid("1.2.3") != c.uid("1.2.3")
    assert a.fhir_id("x") == b.fhir_id("x") != c.fhir_id("x")
    assert a.patient("MRN-1").pseudonym != a.patient("MRN-2").pseudonym


def test_shapes_of_replacements():
    keys = Keys(new_secret())
    offsets = [keys.patient(f"p{i}").offset_days for i in range(300)]
    assert all(-MAX_SHIFT_DAYS <= o <= -MIN_SHIFT_DAYS for o in offsets) and len(set(offsets)) > 250
    key = keys.patient("p0")
    assert len(key.pseudonym) == 13 and key.pseudonym[0] == "P" and int(key.pseudonym[1:], 16) >= 0
    new = keys.uid("1.2.840.113619.2.55.3.1\0")  # a padded UID maps like the bare one
    assert new == keys.uid("1.2.840.113619.2.55.3.1") and new.startswith("2.25.") and len(new) <= 64
    assert all(part.isdigit() and (part == "0" or part[0] != "0") for part in new.split("."))
    assert uuid.UUID(keys.fhir_id("abc")).version == 4
    assert keys.uids == {"1.2.840.113619.2.55.3.1": new}


def test_mapping_file_round_trip_private_and_reidentifies(tmp_path):
    keys = Keys("s")
    key = keys.patient("MRN-1")
    keys.uid("1.2.3.4")
    mapping = merge(None, "s", [PatientEntry("MRN-1", key.pseudonym, key.offset_days, ("MRN-1",), ("p1",))], keys)
    path = tmp_path / "keys" / "map.json"
    save_mapping(path, mapping)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and json.loads(path.read_text())["format"] == FORMAT
    loaded = load_mapping(path)
    assert loaded == mapping
    assert loaded.original_id(key.pseudonym) == "MRN-1" and loaded.original_uid(keys.uid("1.2.3.4")) == "1.2.3.4"
    with pytest.raises(ConfigError):
        loaded.original_id("PNOTKNOWN")


def test_merge_keeps_earlier_patients_and_unions_their_ids():
    keys = Keys("s")
    first = DeidMapping("s", (PatientEntry("A", "PA", -400, ("A",), ()),), {"1.2": "2.25.1"}, {})
    merged = merge(first, "s", [PatientEntry("A", "PA", -400, ("A2",), ("f",)), PatientEntry("B", "PB", -500)], keys)
    assert [p.pseudonym for p in merged.patients] == ["PA", "PB"]
    assert merged.patients[0].dicom_patient_ids == ("A", "A2") and merged.patients[0].fhir_patient_ids == ("f",)
    assert merged.uids == {"1.2": "2.25.1"}


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "other", "secret": "s"}), json.dumps([1])])
def test_files_that_are_not_mappings_are_refused(tmp_path, content):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(ConfigError):
        load_mapping(tmp_path / "m.json")
