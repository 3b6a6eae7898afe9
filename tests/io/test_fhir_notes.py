"""Tests for notes from FHIR: attachments (charsets, HTML, Binary), Composition sections."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fhir.resources.R4B.bundle import Bundle as BundleR4B

from medmm.io.fhir import read_fhir
from medmm.io.fhir_notes import html_to_text
from tests.io.fhir_fixtures import collection, document_reference, patient_resource, write_json

UTC = timezone.utc
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def test_html_to_text():
    html = (
        "<html><head><title>t</title><script>var x = 1;</script></head><body>"
        "<h2>Assessment</h2><p>Temp&nbsp;38.4 &deg;C,<br/>HR 112</p>"
        "<table><tr><td>SpO2</td><td>91 %</td></tr></table></body></html>"
    )
    assert html_to_text(html) == "Assessment\nTemp 38.4 \u00b0C,\nHR 112\nSpO2 91 %"


def test_attachment_charsets_binary_and_unsupported(tmp_path):
    binary = {"resourceType": "Binary", "id": "b1", "contentType": "text/plain", "data": "ZnJvbSBhIEJpbmFyeQ=="}
    bundle = collection(
        patient_resource("1", "M1"),
        document_reference("text/plain", b"caf\xe9 noir"),  # Latin-1 bytes labelled as UTF-8
        document_reference("text/plain; charset=ISO-8859-1", b"caf\xe9 au lait"),
        document_reference("application/pdf", b"%PDF-1.4"),
        document_reference("text/plain", url="Binary/b1"),
        binary,
        full_urls={5: "http://example.org/fhir/Binary/b1"},
    )
    record = read_fhir(write_json(tmp_path / "b.json", bundle))
    assert sorted(n.text for n in record.notes) == sorted(["caf\ufffd noir", "caf\u00e9 au lait", "from a Binary"])
    assert {n.time for n in record.notes} == {datetime(2024, 3, 10, 8, 0, tzinfo=UTC)}
    assert [(i.where, i.kind) for i in record.issues] == [
        ("entry 1 (DocumentReference)", "warning"),
        ("entry 3 (DocumentReference)", "skipped"),
    ]
    assert "not valid utf-8" in record.issues[0].message and "noir" not in record.issues[0].message


def test_plain_text_is_preferred_over_html_of_the_same_document(tmp_path):
    doc = document_reference("text/html", b"<p>Same <b>note</b></p>")
    doc["content"].append({"attachment": {"contentType": "text/plain", "data": "U2FtZSBub3RlIChwbGFpbik="}})
    doc["status"] = "current"
    withdrawn = document_reference("text/plain", b"wrong patient")
    withdrawn["status"] = "entered-in-error"
    record = read_fhir(write_json(tmp_path / "b.json", collection(doc, withdrawn)))
    assert [n.text for n in record.notes] == ["Same note (plain)"]
    assert [(i.where, i.kind) for i in record.issues] == [("entry 1 (DocumentReference)", "skipped")]


def _section(title: str, div: str, *subsections: dict) -> dict:
    out = {"title": title, "text": {"status": "additional", "div": f"<div {XHTML}>{div}</div>"}}
    if subsections:
        out["section"] = list(subsections)
    return out


def test_document_bundle_composition_sections(tmp_path):
    composition = {
        "resourceType": "Composition",
        "status": "final",
        "title": "Discharge summary",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
        "subject": {"reference": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"},
        "date": "2024-03-11T10:00:00+01:00",
        "author": [{"display": "Ward team"}],
        "section": [
            _section(
                "Hospital course",
                "<p>Treated for <b>pneumonia</b>.</p>",
                _section("Imaging", "Right lower lobe consolidation &gt; 3 cm."),
            ),
            _section("Plan", "<ul><li>Oral antibiotics</li><li>Review in 6 weeks</li></ul>"),
        ],
    }
    bundle = dict(
        collection(
            composition,
            patient_resource("p9", "M9"),
            full_urls={0: "urn:uuid:aaaaaaaa-0000-4000-8000-000000000002", 1: composition["subject"]["reference"]},
        ),
        type="document",
    )
    BundleR4B.model_validate(bundle)
    record = read_fhir(write_json(tmp_path / "doc.json", bundle))
    (note,) = record.notes
    assert note.text == (
        "Hospital course\nTreated for pneumonia.\n\nImaging\nRight lower lobe consolidation > 3 cm."
        "\n\nPlan\nOral antibiotics\nReview in 6 weeks"
    )
    assert (note.type_code, note.time) == ("18842-5", datetime(2024, 3, 11, 9, 0, tzinfo=UTC))
    assert record.last_time == note.time and record.patient_id == "p9"


# ---- charsets ---------------------------------------------------------------------------------------

CODECS = ("rot13", "hex", "base64", "zlib", "bz2", "uu", "quopri", "punycode", "idna", "unicode_escape", "undefined")


@pytest.mark.parametrize("codec", CODECS)
def test_a_charset_that_names_a_codec_skips_the_note_and_says_so(codec, tmp_path):
    # found by the ingest fuzzer: bytes.decode refused these with LookupError or UnicodeError
    bundle = collection(
        patient_resource("1", "M1"),
        document_reference(f"text/plain; charset={codec}", b"uryyb"),
        document_reference("text/plain; charset=utf-8", b"a plain note"),
    )
    path = write_json(tmp_path / "b.json", bundle)
    record = read_fhir(path)
    assert [n.text for n in record.notes] == ["a plain note"]
    (issue,) = record.issues
    assert (issue.source, issue.where, issue.kind) == (str(path), "entry 1 (DocumentReference)", "skipped")
    assert issue.message == "attachment charset names a codec, not a character set; note not read"


@pytest.mark.parametrize("charset", ["x-no-such-charset", "utf\x008"])
def test_an_unknown_charset_is_reported_and_the_text_read_as_utf8(charset, tmp_path):
    bundle = collection(
        patient_resource("1", "M1"), document_reference(f"text/plain; charset={charset}", b"caf\xc3\xa9")
    )
    record = read_fhir(write_json(tmp_path / "b.json", bundle))
    assert [n.text for n in record.notes] == ["caf\u00e9"]
    assert [(i.where, i.message) for i in record.issues] == [
        ("entry 1 (DocumentReference)", "attachment charset is unknown; decoded as UTF-8")
    ]
