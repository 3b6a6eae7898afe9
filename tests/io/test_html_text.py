"""The text of HTML notes (medmm.io.html_text): what is kept, and time linear in the input."""

from __future__ import annotations

import pytest

from medmm.io.fhir import read_fhir
from medmm.io.html_text import html_to_text
from tests.io.fhir_fixtures import collection, document_reference, patient_resource, write_json
from tests.io.scaling import LINEAR_BOUND, growth


@pytest.mark.parametrize(
    "html, text",
    [
        ("<h2>Assessment</h2><p>Temp&nbsp;38.4 &deg;C,<br/>HR 112</p>", "Assessment\nTemp 38.4 \u00b0C,\nHR 112"),
        ("<table><tr><td>SpO2</td><td>91 %</td></tr></table>", "SpO2 91 %"),
        ("<head><title>t</title></head><script>if (a<b) x()</script><style>p{}</style>body", "body"),
        ('<p title="a>b">kept</p>', "kept"),
        ("<a href=x>link</a> <b>bold</b>", "link bold"),
        ("a < b and c<1", "a < b and c<1"),  # a '<' that opens no tag is text
        ("<!-- a comment --> after <!DOCTYPE html><?xml x?>", "after"),
        ("before <!-- unclosed comment", "before"),
        ("HR<a", "HR<a"),  # a tag still open at the end: the rest is text
        ("&lt;b&gt; &amp;amp; &#x41;&#65; &bogus;", "<b> &amp; AA &bogus;"),
        ("&#" + "1" * 5_000 + ";", "\ufffd"),  # past the digits int() converts, and past U+10FFFF
        ("<P>Upper</P><BR>case", "Upper\ncase"),
    ],
)
def test_html_to_text(html, text):
    assert html_to_text(html) == text


@pytest.mark.parametrize("unit", ["<a", "</", "<!", "<a b='", '<a ="', "&#1", "<p>x</p>"])
def test_time_is_linear_in_the_length_of_the_html(unit):
    # html.parser took time quadratic in the length of `<a<a<a...` (minutes at 1 MB)
    assert growth(lambda n: html_to_text(unit * (n // len(unit)))) < LINEAR_BOUND


def test_an_html_note_of_a_megabyte_of_unclosed_tags_is_read(tmp_path):
    html = "<p>Dyspnoea.</p>" + "<a" * 500_000
    doc = document_reference("text/html", html.encode())
    record = read_fhir(write_json(tmp_path / "b.json", collection(patient_resource("1", "M1"), doc)))
    (note,) = record.notes
    assert note.text.startswith("Dyspnoea.\n<a<a") and len(note.text) == len("Dyspnoea.\n") + 1_000_000
