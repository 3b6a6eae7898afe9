"""Reading FHIR files into entries (medmm.io.fhir_load): what a bad file, line or entry costs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medmm.errors import FhirError
from medmm.io.fhir import read_fhir
from tests.io.fhir_fixtures import collection, document_reference, heart_rate, patient_resource

HUGE = "7" * 5_000  # past the 4,300 digits Python converts to an int
SUBJECT = {"reference": "Patient/1"}


def note(text: str) -> dict[str, Any]:
    return document_reference("text/plain", text.encode())


def record_bundle() -> dict[str, Any]:
    """A patient with two notes and a heart rate: what an intact record.json holds."""
    return collection(patient_resource("1", "M1"), note("first note"), note("second note"), heart_rate(SUBJECT, 5, 90))


# ---- huge integer literals -------------------------------------------------------------------------


def test_an_integer_past_the_parsers_digit_limit_is_a_fhir_error_naming_the_file(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record_bundle())[:-1] + f', "total": {HUGE}}}')
    with pytest.raises(FhirError, match="more than 4300 digits") as caught:
        read_fhir(path)
    assert caught.value.path == str(path) and str(caught.value).startswith(f"{path}: ")


def test_an_ndjson_line_with_a_huge_integer_is_skipped_and_the_other_lines_read(tmp_path):
    path = tmp_path / "export.ndjson"
    bad = json.dumps(heart_rate(SUBJECT, 6)).replace('"value": 80', f'"value": {HUGE}')
    path.write_text("\n".join([json.dumps(patient_resource("1", "M1")), bad, json.dumps(heart_rate(SUBJECT, 7))]))
    record = read_fhir(path)
    assert [(r.time.minute, r.value) for r in record.readings] == [(7, 80.0)]
    (issue,) = record.issues
    assert (issue.source, issue.where, issue.kind) == (str(path), "line 2", "skipped")
    assert "more than 4300 digits" in issue.message and HUGE[:10] not in issue.message
