"""The visible text of an HTML or XHTML fragment (note attachments, narrative `div`s), in linear time.

html.parser waits for more input at every '<' it cannot close yet and rescans from there, so a
text of many of them (`<a<a<a...`) takes time quadratic in its length. This reader tokenises the
way browsers do, in one pass that never goes back: a tag runs from '<' and a letter to the next
'>' outside a quoted attribute value (a tag still open at the end is dropped), comments and
declarations are dropped, and a '<' that starts no tag is text. The text: a line break at each
block element, a space between table cells, script/style/head content left out, character
references decoded, runs of spaces collapsed.
"""

from __future__ import annotations

import re
from html import unescape

_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt footer h1 h2 h3 h4 h5 h6 header hr li ol p pre "
    "section table tbody thead tfoot tr ul title caption".split()
)
_CELL_TAGS = frozenset({"td", "th"})
_SKIP_TAGS = frozenset({"script", "style", "head"})
_RAW_TEXT_END = {name: re.compile(f"</{name}", re.IGNORECASE) for name in ("script", "style")}
_TAG_NAME = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")
_TAG_STOP = re.compile(r"[>=]")  # inside a tag: its end, or an attribute value that may be quoted
_SPACE_RUN = re.compile(r"\s*")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
# A numeric character reference of nine or more significant digits. html.unescape converts the
# digits with int(), which refuses more than 4,300 of them; all such references are past U+10FFFF,
# which unescape turns into U+FFFD, so they become U+FFFD first. (The lookaheads keep leading
# zeros out of the count.)
_LONG_NUMERIC_REF = re.compile(r"&#(?:[xX]0*(?=[1-9a-fA-F])[0-9a-fA-F]{9,}|0*(?=[1-9])[0-9]{9,});?")


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment: one line per block, spaces collapsed, entities decoded."""
    parts: list[str] = []
    skip = 0  # depth of script/style/head elements the reader is inside
    at, end = 0, len(html)
    last_gt = html.rfind(">")  # no tag closes after it: each '<' there is settled at once
    while at < end:
        lt = html.find("<", at)
        lt = end if lt < 0 else lt
        if lt > at and not skip:
            parts.append(_unescape(html[at:lt]))
        if lt == end:
            break
        name = _TAG_NAME.match(html, lt) if lt < last_gt else None  # a name may run up to the '>'
        if name is None:
            at = _skip_markup(html, lt, parts, skip, last_gt)
            continue
        close = _tag_end(html, name.end())
        if close is None:  # the document ends inside the tag: the rest is text (as html.parser has it)
            if not skip:
                parts.append(_unescape(html[lt:]))
            break
        at = close + 1
        tag, closing = name[2].lower(), name[1] == "/"
        self_closing = html[name.end() : close].rstrip().endswith("/")
        if tag in _SKIP_TAGS:
            if closing:
                skip = max(0, skip - 1)
            elif not self_closing:
                skip += 1
                if tag in _RAW_TEXT_END:  # script and style content is not markup: it ends at the end tag
                    found = _RAW_TEXT_END[tag].search(html, at)
                    at = end if found is None else found.start()
        elif tag in _BLOCK_TAGS:
            parts.append("\n")
        elif tag in _CELL_TAGS and not closing:
            parts.append(" ")
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _skip_markup(html: str, lt: int, parts: list[str], skip: int, last_gt: int) -> int:
    """Past a '<' that opens no tag (or no '>' follows): a comment or declaration is dropped,
    anything else is text."""
    if html.startswith("<!--", lt):
        close = html.find("-->", lt + 4)
        return len(html) if close < 0 else close + 3  # an unclosed comment runs to the end
    if lt < last_gt and html.startswith(("<!", "<?", "</"), lt):  # declarations, instructions, bogus end tags
        return html.find(">", lt + 2) + 1
    if not skip:
        parts.append("<")
    return lt + 1


def _tag_end(html: str, at: int) -> int | None:
    """Index of the '>' that ends the tag whose attributes start at `at` (None: no end before EOF).

    Each step moves forward past a '=' or a quoted value, so the scan is linear in the tag's length.
    """
    while True:
        stop = _TAG_STOP.search(html, at)
        if stop is None:
            return None
        if stop[0] == ">":
            return stop.start()
        at = _SPACE_RUN.match(html, stop.end()).end()
        if at < len(html) and html[at] in "\"'":
            close = html.find(html[at], at + 1)
            if close < 0:
                return None
            at = close + 1


def _unescape(text: str) -> str:
    """html.unescape, safe for numeric references of any length (too long: U+FFFD, as past U+10FFFF)."""
    if "&" not in text:
        return text
    return unescape(_LONG_NUMERIC_REF.sub("\ufffd", text))
