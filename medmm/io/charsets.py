"""Which charset names may decode text: character sets only, never Python's other codecs.

`codecs.lookup` also finds codecs that are no character set: bytes-to-bytes ones (base64, hex,
zlib, bz2, uu, quopri), str-to-str ones (rot13), which `bytes.decode` refuses with a LookupError,
and text codecs that transform rather than map characters (punycode, idna, unicode_escape),
which fail with a bare UnicodeError or turn escapes into characters. A charset read from a file
(a note attachment's contentType) is checked here before anything is decoded with it.
"""

from __future__ import annotations

import codecs

# Text codecs (by the stdlib's flag) that are no character set a document could be written in.
_NOT_CHARSETS = frozenset({"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"})


def _lookup(name: str) -> codecs.CodecInfo | None:
    try:
        return codecs.lookup(name.strip())
    except (LookupError, ValueError):  # ValueError: a name with a NUL character
        return None


def text_encoding(charset: str) -> str | None:
    """Python's name of the character set `charset` names; None for unknown names and for codecs
    that are not character sets."""
    info = _lookup(charset)
    if info is None or not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def is_codec_name(charset: str) -> bool:
    """Whether Python knows `charset` as some codec (a character set or not)."""
    return _lookup(charset) is not None
