"""Uploads staged into a case folder: names made safe, zips unpacked with unsafe members skipped and a size cap."""

from __future__ import annotations

import stat
import zipfile

import pytest

from medmm.errors import InputError
from ui.uploads import safe_name, stage_uploads, unpack_zip


def test_plain_files_are_copied_with_safe_unique_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "scan.dcm").write_bytes(b"one")
    (b / "scan.dcm").write_bytes(b"two")
    staged, issues = stage_uploads([a / "scan.dcm", b / "scan.dcm"], tmp_path / "case")
    assert [p.name for p in staged] == ["scan.dcm", "scan-2.dcm"] and issues == []
    assert [p.read_bytes() for p in staged] == [b"one", b"two"]
    assert (
        safe_name("../../etc/passwd") == "passwd"
        and safe_name("a;rm -rf *.dcm") == "a_rm -rf _.dcm"
        and safe_name("..") == "upload"
    )


def test_a_zipped_folder_is_unpacked_and_unsafe_members_are_skipped(tmp_path):
    archive = tmp_path / "patient.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("patient/record.json", "{}")
        zf.writestr("patient/images/radiograph.dcm", b"x" * 10)
        zf.writestr("../escape.txt", "no")
        zf.writestr("/abs.txt", "no")
        link = zipfile.ZipInfo("patient/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    staged, issues = stage_uploads([archive], tmp_path / "case")
    assert staged == [tmp_path / "case" / "patient"]
    files = sorted(str(p.relative_to(tmp_path / "case")) for p in (tmp_path / "case").rglob("*") if p.is_file())
    assert files == ["patient/patient/images/radiograph.dcm", "patient/patient/record.json"]
    assert [(i.where, i.kind) for i in issues] == [
        ("member 3", "skipped"),
        ("member 4", "skipped"),
        ("member 5", "skipped"),
    ]
    assert not (tmp_path / "escape.txt").exists()


def test_an_archive_larger_than_the_cap_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 50_000)
        zf.writestr("b.dcm", b"\0" * 60_000)
    with pytest.raises(InputError, match="bomb.zip: member 2: archive unpacks to more than 100000 bytes"):
        unpack_zip(archive, tmp_path / "out", display="bomb.zip", max_bytes=100_000)


def test_a_file_named_zip_that_is_not_an_archive_is_copied_for_the_readers_to_judge(tmp_path):
    fake = tmp_path / "notes.zip"
    fake.write_bytes(b"not a zip")
    staged, _ = stage_uploads([fake], tmp_path / "case")
    assert staged[0].is_file() and staged[0].read_bytes() == b"not a zip"
