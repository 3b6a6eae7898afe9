"""The notes with the words that mattered marked, and a legend that says what the marks mean.

Signed evidence (integrated gradients) marks words that support the diagnosis in orange and
words that argue against it in blue (with a dotted underline, so the sign does not rest on
colour alone); unsigned evidence (attention) marks words in one colour and says that it shows
where the model looked, not which way a word pushed. Note text is always escaped.
"""

from __future__ import annotations

import html
from typing import Sequence

from medmm.explain.mapping import NotesMap
from medmm.records import Study
from ui.localtime import Zone, local_time
from ui.signed import SignedEvidence, SignedWord

MIN_SHADE = 0.03  # words under 3% of the strongest stay unmarked
FOR_RGB, AGAINST_RGB, UNSIGNED_RGB = (234, 88, 12), (37, 99, 235), (245, 158, 11)


def _legend_signed(target: str, method: str) -> str:
    return (
        f'<p class="medmm-legend"><mark class="medmm-for" style="background:rgba{FOR_RGB + (0.6,)}">supports</mark> '
        f'<mark class="medmm-against" style="background:rgba{AGAINST_RGB + (0.6,)}">argues against</mark> '
        f"{html.escape(target)}: {html.escape(method)}, each word's signed contribution to the diagnosis's score; "
        "darker = closer to the strongest word. Unmarked words contributed little; grey words lie after the "
        "token limit and were not read.</p>"
    )


def _legend_unsigned(target: str, method: str) -> str:
    return (
        f'<p class="medmm-legend"><mark class="medmm-attended" style="background:rgba{UNSIGNED_RGB + (0.6,)}">attended</mark> '
        f"{html.escape(method)} for {html.escape(target)}: where the model looked, darker = more. It has no sign: "
        "a marked word may speak for or against the diagnosis. Grey words were not read.</p>"
    )


def _signed_text(text: str, words: Sequence[SignedWord], top: float, target: str) -> str:
    out, pos = [], 0
    for w in words:
        out.append(html.escape(text[pos : w.start]))
        word = html.escape(text[w.start : w.end])
        share = abs(w.value) / top if top > 0 else 0.0
        if not w.read:
            out.append(f'<span class="unread">{word}</span>')
        elif share >= MIN_SHADE:
            kind, rgb, verb = (
                ("medmm-for", FOR_RGB, "supports") if w.value > 0 else ("medmm-against", AGAINST_RGB, "argues against")
            )
            title = f"{verb} {target} ({share:.0%} of the strongest word)"
            out.append(
                f'<mark class="{kind}" style="background:rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {0.15 + 0.7 * share:.3f})" '
                f'title="{html.escape(title)}" data-share="{share:.3f}">{word}</mark>'
            )
        else:
            out.append(word)
        pos = w.end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _unsigned_text(text: str, words, top: float, target: str) -> str:
    out, pos = [], 0
    for w in words:
        out.append(html.escape(text[pos : w.start]))
        word = html.escape(text[w.start : w.end])
        share = w.relevance / top if top > 0 else 0.0
        if not w.read:
            out.append(f'<span class="unread">{word}</span>')
        elif share >= MIN_SHADE:
            r, g, b = UNSIGNED_RGB
            out.append(
                f'<mark class="medmm-attended" style="background:rgba({r}, {g}, {b}, {0.15 + 0.7 * share:.3f})" '
                f'title="attended for {html.escape(target)} ({share:.0%} of the strongest word)" data-share="{share:.3f}">{word}</mark>'
            )
        else:
            out.append(word)
        pos = w.end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _heading(study: Study, index: int, zone: Zone) -> str:
    note = study.notes[index]
    kind = note.type_display or note.type_code or "Note"
    when = f" \u00b7 {local_time(note.time, zone)}" if note.time else ""
    return f"<h4>{html.escape(kind + when)}</h4>"


def notes_evidence(
    study: Study,
    zone: Zone,
    target: str,
    *,
    signed: SignedEvidence | None = None,
    attention: NotesMap | None = None,
    attention_method: str = "attention (gradient-weighted)",
    title: str = "",
) -> str:
    """The notes with signed marks when `signed` has words, else attention marks, else plain; notes the model did not read say so."""
    if not study.notes:
        return '<div class="medmm-notes"><p>No clinical notes in this study.</p></div>'
    parts = ['<div class="medmm-notes">']
    if title:
        parts.append(f'<p class="medmm-caption">{html.escape(title)}</p>')
    if signed is not None and signed.words:
        parts.append(_legend_signed(target, "integrated gradients"))
        read, top = signed.notes_read, signed.top
        body = {
            i: _signed_text(study.notes[i].text, [w for w in signed.words if w.note == i], top, target) for i in read
        }
    elif attention is not None:
        parts.append(_legend_unsigned(target, attention_method))
        read = attention.notes
        top = max((w.relevance for w in attention.words), default=0.0)
        body = {i: _unsigned_text(study.notes[i].text, attention.for_note(i), top, target) for i in read}
    else:
        read, body = (), {}
        parts.append('<p class="medmm-legend">No word relevance was computed for these notes.</p>')
    for index in range(len(study.notes)):
        text = body.get(index)
        status = (
            ""
            if text is not None or not (signed or attention)
            else '<p class="unread">This note was not read by the model.</p>'
        )
        parts.append(
            f'<section class="medmm-note">{_heading(study, index, zone)}{status}'
            f"<pre>{text if text is not None else html.escape(study.notes[index].text)}</pre></section>"
        )
    parts.append("</div>")
    return "".join(parts)
