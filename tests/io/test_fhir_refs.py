"""Resolving references (medmm.io.fhir_refs): the trailing Type/id of a URL, and time linear in
the length of a reference however long."""

from __future__ import annotations

import pytest

from medmm.io.fhir import read_fhir
from medmm.io.fhir_refs import _tail
from tests.io.fhir_fixtures import collection, heart_rate, patient_resource, write_json
from tests.io.scaling import LINEAR_BOUND, growth


@pytest.mark.parametrize(
    "url, expected",
    [
        ("Patient/123", "Patient/123"),
        ("http://example.org/fhir/Patient/123", "Patient/123"),
        ("http://example.org/fhir/Patient/123/_history/2", "Patient/123"),
        ("Observation/a.b-c", "Observation/a.b-c"),
        ("urn:uuid:0b5a1f9e-57e4-4c1e-9a0e-8d7c6b5a4f3e", None),
        ("Patient/", None),
        ("patient/123", None),  # a type starts with a capital
        ("Patient/" + "1" * 65, None),  # an id has at most 64 characters
        ("Patient?identifier=x|y", None),
        ("", None),
        (None, None),
    ],
)
def test_tail_is_the_last_type_and_id(url, expected):
    assert _tail(url) == expected


def test_a_long_reference_or_full_url_is_read_in_linear_time_and_reported(tmp_path):
    # found by the ingest fuzzer: 32k letters took 3.4 s in a regex search (about an hour at 1 MB)
    subject = {"reference": "Patient/1"}
    path = tmp_path / "b.json"

    def read(n: int):
        bundle = collection(
            patient_resource("1", "M1"),
            heart_rate({"reference": "A" * n}, 1),
            heart_rate(subject, 2),
            full_urls={2: "Observation" * (n // 11)},
        )
        return read_fhir(write_json(path, bundle))

    assert growth(read) < LINEAR_BOUND
    record = read(1_000_000)
    assert [r.time.minute for r in record.readings] == [2]
    (issue,) = record.issues
    assert (issue.source, issue.where, issue.kind) == (str(path), "entry 1 (Observation)", "skipped")
    assert issue.message == "subject reference does not resolve to a resource in the input; resource not used"
