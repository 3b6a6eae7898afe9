"""Which charset names decode text (medmm.io.charsets)."""

from __future__ import annotations

import pytest

from medmm.io.charsets import is_codec_name, text_encoding


@pytest.mark.parametrize(
    "name, expected",
    [
        ("utf-8", "utf-8"),
        (" UTF8 ", "utf-8"),
        ("ISO-8859-1", "iso8859-1"),
        ("latin1", "iso8859-1"),
        ("windows-1252", "cp1252"),
        ("utf-16", "utf-16"),
        ("shift_jis", "shift_jis"),
        ("utf-7", "utf-7"),
    ],
)
def test_character_sets_are_used_by_their_python_name(name, expected):
    assert text_encoding(name) == expected and is_codec_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "rot13",
        "rot_13",
        "hex",
        "base64",
        "zlib",
        "bz2",
        "uu",
        "quopri",
        "quoted-printable",
        "punycode",
        "idna",
        "unicode_escape",
        "raw_unicode_escape",
        "undefined",
    ],
)
def test_codecs_that_are_no_character_set_are_refused(name):
    assert text_encoding(name) is None and is_codec_name(name)


@pytest.mark.parametrize("name", ["", "x-no-such-charset", "utf\x008", "a" * 100_000])
def test_unknown_names_are_neither(name):
    assert text_encoding(name) is None and not is_codec_name(name)
