"""Note mentions: affirmed, negated, hedged or historical, inside or beyond what the model read."""

from __future__ import annotations

import pytest

from medmm.grounding.notes import AFFIRMED, HEDGED, HISTORICAL, NEGATED, NoteText, mentions


def note(text: str, read: int | None = None) -> tuple[NoteText, ...]:
    return (NoteText("progress note", text, len(text) if read is None else read),)


@pytest.mark.parametrize(
    ("text", "finding", "status"),
    [
        ("EXAMINATION: No ankle oedema.", "ankle oedema", NEGATED),
        ("On examination, bilateral pitting oedema to the mid shins.", "ankle oedema", AFFIRMED),
        ("Describes progressive exertional breathlessness with ankle swelling.", "ankle oedema", AFFIRMED),
        ("The patient denies cough.", "productive cough", NEGATED),  # a denied cough rules out a productive one
        ("No sputum production.", "productive cough", NEGATED),
        ("Reports productive cough with green sputum.", "productive cough", AFFIRMED),
        ("Reports cough, no sputum production.", "productive cough", NEGATED),
        ("Afebrile.", "fever", NEGATED),
        ("Radiology comment: query early sepsis, to be reviewed if febrile.", "fever", HEDGED),
        ("Past history: history of pneumonia in 2019 with rigors.", "rigors", HISTORICAL),
        (
            "Radiology comment: cannot exclude a small effusion with dullness to percussion.",
            "dullness to percussion",
            HEDGED,
        ),
        ("Reports sudden onset sharp chest pain while at rest.", "sudden pleuritic chest pain", AFFIRMED),
        ("Reports pleuritic chest pain on deep inspiration.", "chest pain", AFFIRMED),
        ("No chest pain.", "sudden pleuritic chest pain", NEGATED),
        ("New confusion, disoriented to time and place.", "confusion", AFFIRMED),
        ("No confusion.", "confusion", NEGATED),
    ],
)
def test_status_of_a_mention(text, finding, status):
    found = mentions(note(text), finding)
    assert [m.status for m in found] == [status]


def test_a_sentence_without_the_finding_is_not_a_mention_and_headings_are_left_out_of_the_quote():
    text = "HISTORY: Seen on the medical ward this morning.\nEXAMINATION: No ankle oedema. Abdomen soft and non-tender."
    assert mentions(note(text), "crackles") == []
    (m,) = mentions(note(text), "ankle oedema")
    assert (m.sentence, m.note, m.read) == ("No ankle oedema.", "progress note", True)


def test_a_mention_past_what_the_model_read_is_marked_unread():
    text = "Oropharynx clear. Reports rigors overnight."
    cut = text.index("rigors")  # the model's tokens stop just before the word
    (m,) = mentions(note(text, read=cut), "rigors")
    assert m.status == AFFIRMED and not m.read
    (m,) = mentions(note(text, read=len(text)), "rigors")
    assert m.read
