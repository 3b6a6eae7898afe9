"""Scrubbing free text of the record's own identifiers."""

from __future__ import annotations

from medmm.deid.text import Identifiers, Scrubber


def scrubber(offset: int = 0) -> Scrubber:
    found = Identifiers()
    found.add_name("Zelwegger^Quixotica^Q")
    found.add_name("Dr Ann Lee")
    found.add_id("MRN-884211")
    found.add_id("ab")  # too short to be matched safely: ignored
    found.add_contact("quixotica.z@example.org")
    found.add_contact("(617) 555-0199")
    found.add_address("42  Wallaby Way")
    return Scrubber(found, offset)


def test_names_as_whole_words_in_any_case():
    s = scrubber()
    assert (
        s.known("QUIXOTICA zelwegger's annual review with Ann and Lee")[0]
        == "[NAME] [NAME]'s annual review with [NAME] and [NAME]"
    )
    assert s.known("Dr. visit, Quixoticas")[0] == "Dr. visit, Quixoticas"  # honorifics and longer words stay


def test_identifiers_whatever_their_punctuation():
    s = scrubber()
    for text in ("MRN-884211", "mrn 884211", "MRN884211", "M.R.N. 884211", "record 884211 on file"):
        assert "884211" not in s.known(text)[0], text
    assert s.known("call (617) 555-0199 or 617.555.0199")[0] == "call [CONTACT] or [CONTACT]"
    assert s.known("mail quixotica.z@example.org")[0] == "mail [CONTACT]"
    assert s.known("lives at 42 Wallaby  Way")[0] == "lives at [ADDRESS]"
    assert s.known("ab is fine")[0] == "ab is fine"


def test_free_text_also_removes_common_identifier_shapes_and_shifts_dates():
    text, n = scrubber(-1).free_text("SSN 987-65-4321, MRN: ZX-99812, other@example.com, 212-555-0100, on 2020-03-01")
    assert text == "SSN [ID], [ID], [CONTACT], [CONTACT], on 2020-02-29" and n == 5


def test_contains_identifier_for_file_names():
    s = scrubber()
    assert s.contains_identifier("zelwegger_ct_1") and s.contains_identifier("scan-884211")
    assert not s.contains_identifier("slice_0001") and not Scrubber(Identifiers(), 0).contains_identifier("x")
