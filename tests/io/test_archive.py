"""The one set of zip member rules (medmm.io.archive), each written out by hand."""

from __future__ import annotations

import stat
import zipfile

import pytest

from medmm.io.archive import member_parts, refusal


def info(name: str, *, mode: int = stat.S_IFREG | 0o644, flags: int = 0) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name)
    member.external_attr = mode << 16
    member.flag_bits = flags
    return member


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("patient/images/a.dcm", None),
        ("a.dcm", None),
        ("/etc/passwd", "unsafe member path (absolute, a drive, or with '..')"),
        ("../escape.dcm", "unsafe member path (absolute, a drive, or with '..')"),
        ("patient/../../escape.dcm", "unsafe member path (absolute, a drive, or with '..')"),
        ("C:/Windows/x.dcm", "unsafe member path (absolute, a drive, or with '..')"),
        ("..\\escape.dcm", "unsafe member path (absolute, a drive, or with '..')"),  # Windows separators
    ],
)
def test_paths(name, why):
    assert refusal(info(name)) == why


def test_links_and_encrypted_members_are_refused():
    assert refusal(info("link.dcm", mode=stat.S_IFLNK | 0o777)) == "member is a link"
    assert refusal(info("secret.dcm", flags=0x1)) == "member is encrypted"
    assert member_parts(info("a\\b\\c.dcm")) == ("a", "b", "c.dcm")
