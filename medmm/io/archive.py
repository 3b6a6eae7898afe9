"""Zip archives as medmm reads them: one set of rules for which members are read.

A member is refused when its path is absolute, names a drive, or climbs out with `..`; when it
is a symbolic link; and when it is encrypted. The DICOM reader reads the accepted members in
memory (medmm.io.dicom) and the interface unpacks them into a case folder (ui.uploads); both
report each refused member with the reason given here, and stop at DEFAULT_MAX_ZIP_BYTES
unpacked (a guard against zip bombs, counted on the bytes read, never on the declared sizes).
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import PurePosixPath

DEFAULT_MAX_ZIP_BYTES = 2 * 1024**3
"""Largest total uncompressed size read from one archive."""

_DRIVE = re.compile(r"^[A-Za-z]:")


def member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path as parts, with Windows separators read as '/'."""
    return PurePosixPath(info.filename.replace("\\", "/")).parts


def refusal(info: zipfile.ZipInfo) -> str | None:
    """Why a (non-directory) member is not read, or None when it is a safe regular file."""
    name = info.filename.replace("\\", "/")
    parts = member_parts(info)
    if not parts or name.startswith("/") or ".." in parts or _DRIVE.match(name) or ":" in parts[0]:
        return "unsafe member path (absolute, a drive, or with '..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "member is a link"
    if info.flag_bits & 0x1:
        return "member is encrypted"
    return None
