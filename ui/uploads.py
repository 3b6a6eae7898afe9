"""Uploaded files into one case folder: plain files copied, zip archives (a patient folder) unpacked safely.

Archives are unpacked with every member checked by medmm.io.archive's rules (no absolute paths,
drives or `..`, no links, no encrypted members) and a cap on the total unpacked size (a guard
against zip bombs). A bad member is skipped and reported; an archive that cannot be opened at
all raises InputError.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

from medmm.errors import InputError, MedmmError
from medmm.io.archive import DEFAULT_MAX_ZIP_BYTES, member_parts, refusal
from medmm.records import Issue

_UNSAFE = re.compile(r"[^\w.\- ]+")
_CHUNK = 1 << 20


def safe_name(name: str) -> str:
    """A file name with no path and no characters outside letters, digits, '.', '-', '_' and spaces."""
    base = _UNSAFE.sub("_", Path(name).name).strip(" .")
    return base or "upload"


def _unique(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{stem}-{n}{suffix}"
    return target


def stage_uploads(
    paths: Sequence[str | Path], folder: Path, *, max_unpacked_bytes: int = DEFAULT_MAX_ZIP_BYTES
) -> tuple[list[Path], list[Issue]]:
    """Copy uploads into `folder` (zips unpacked into a sub-folder named after the archive); returns (top-level entries, issues)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    issues: list[Issue] = []
    for p in paths:
        source = Path(p)
        name = safe_name(source.name)
        if source.suffix.lower() == ".zip" and zipfile.is_zipfile(source):
            target = _unique(folder, Path(name).stem or "archive")
            issues.extend(unpack_zip(source, target, display=name, max_bytes=max_unpacked_bytes))
        else:
            target = _unique(folder, name)
            shutil.copyfile(source, target)
        staged.append(target)
    return staged, issues


def unpack_zip(archive: Path, target: Path, *, display: str, max_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> list[Issue]:
    """Unpack the regular files of `archive` under `target`; unsafe members are skipped and reported."""
    issues: list[Issue] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a readable zip archive ({type(exc).__name__})", path=display) from exc
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    with zf:
        for number, info in enumerate(zf.infolist(), start=1):
            where = f"member {number}"
            if info.is_dir():
                continue
            why = refusal(info)
            if why is not None:
                issues.append(Issue(display, where, f"{why}; skipped", "skipped"))
                continue
            parts = member_parts(info)
            if total + info.file_size > max_bytes:
                raise InputError(f"archive unpacks to more than {max_bytes} bytes", path=display, where=where)
            dest = target.joinpath(*(safe_name(x) for x in parts))
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                total += _copy_member(zf, info, dest, max_bytes - total)
            except MedmmError as err:
                raise InputError(err.detail, path=display, where=where) from None
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                dest.unlink(missing_ok=True)
                issues.append(
                    Issue(display, where, f"member cannot be unpacked ({type(exc).__name__}); skipped", "skipped")
                )
    return issues


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: int) -> int:
    """Write one member, stopping if it unpacks beyond `budget` bytes (its header may lie)."""
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                out.close()
                dest.unlink(missing_ok=True)
                raise InputError("archive unpacks to more bytes than allowed")
            out.write(chunk)
    return written
