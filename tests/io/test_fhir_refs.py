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


def test_an_ambiguous_reference_resolves_within_the_referring_file(tmp_path):
    # found by the ingest fuzzer: a second file repeating the patient's entry with another id (same
    # fullUrl) made every reference of the intact record ambiguous, and all its resources were lost
    full_url = "urn:uuid:0b5a1f9e-57e4-4c1e-9a0e-8d7c6b5a4f3e"
    subject = {"reference": full_url}
    record = write_json(
        tmp_path / "record.json",
        collection(
            patient_resource("1", "M1"), heart_rate(subject, 1), heart_rate(subject, 2), full_urls={0: full_url}
        ),
    )
    other = write_json(
        tmp_path / "other.json",
        collection(patient_resource("2", "M1"), heart_rate(subject, 3), full_urls={0: full_url}),
    )
    read = read_fhir([other, record], patient_id="1")
    assert [r.time.minute for r in read.readings] == [1, 2]
    assert [(i.source, i.message) for i in read.issues] == [(str(other), "1 resource(s) about other patients not used")]
    both = collection(
        patient_resource("1", "M1"),
        patient_resource("2", "M1"),
        heart_rate(subject, 4),
        full_urls={0: full_url, 1: full_url},
    )
    alone = read_fhir(write_json(tmp_path / "both.json", both), patient_id="1")  # ambiguous in its own file
    assert alone.readings == ()
    assert [i.message for i in alone.issues] == [
        "subject reference does not resolve to a resource in the input; resource not used"
    ]
