"""DICOM ingest: a file, a folder (recursive) or a zip archive to :class:`ImageSeries` records.

Files are grouped by SeriesInstanceUID. Single-frame CT, MR and PET slices of one geometry are
stacked into a volume ordered by ImagePositionPatient projected on the slice normal (the cross
product of the ImageOrientationPatient direction cosines), with InstanceNumber as the fallback;
the slice spacing comes from those positions. Multi-frame files become one series each (frames
ordered by their per-frame positions when the file has them). Radiographs and other images stay
2D, one record per file. Pixels are float32 in output units: modality LUT applied (HU for CT),
MONOCHROME1 inverted, colour as RGB.

Lenient where the data are partly good: in a folder or archive a bad file becomes an Issue and
the rest is used; strict where a guess would mislead: a broken file given on its own raises
DicomError. Valid DICOM objects that are not images (DICOMDIR, SR, KO, PR, RT, SEG, waveforms)
are reported as :class:`NonImageObject`, not as errors.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from medmm.errors import DicomError
from medmm.io.archive import DEFAULT_MAX_ZIP_BYTES, refusal
from medmm.io.dicom_elements import (
    INVALID,
    NO_PIXELS,
    NOT_DICOM,
    TRUNCATED,
    UNDECODABLE,
    UNREADABLE,
    UNSUPPORTED,
    tag_label,
)
from medmm.io.dicom_file import DecodedFile, NonImageObject, decode_file, looks_like_dicom
from medmm.io.window import CT_DEFAULT, CT_PRESETS
from medmm.records import ImageSeries, Issue

__all__ = [
    "DicomRead",
    "NonImageObject",
    "default_window",
    "is_dicom_file",
    "read_dicom",
    "read_dicom_files",
    "slice_order",
]


VOLUME_MODALITIES = frozenset({"CT", "MR", "PT"})
"""Modalities whose single-frame slices of one series are stacked into a volume."""


def quiet_pydicom_logging() -> None:
    """Keep pydicom's own log quiet: it logs decoder failures with tracebacks that can quote element
    values, and medmm reports those files itself as typed errors. (Importing pydicom sets its
    logger's level, so it is imported first.)"""
    import logging

    import pydicom  # noqa: F401

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


_REASONS = (NOT_DICOM, TRUNCATED, NO_PIXELS, UNSUPPORTED, UNDECODABLE, INVALID, UNREADABLE)
_SAME_POSITION_MM = 1e-3


@dataclass(frozen=True)
class DicomRead:
    """What a DICOM input held: image series, recognised non-image objects, and what went wrong."""

    series: tuple[ImageSeries, ...]
    non_images: tuple[NonImageObject, ...]
    issues: tuple[Issue, ...]


def is_dicom_file(path: str | Path) -> bool:
    """True for a Part-10 file ("DICM" at byte 128) or a bare data set starting in group 0002/0008."""
    try:
        with open(path, "rb") as fh:
            return looks_like_dicom(fh.read(132), os.fstat(fh.fileno()).st_size)
    except OSError:
        return False


def default_window(series_modality: str, pixels: np.ndarray) -> tuple[float, float]:
    """(center, width) when the file stores no window: CT soft tissue, else the 1st-99th percentile span.

    Percentiles ignore the outliers (collimator edges, burnt-in text) that min/max would follow.
    """
    if series_modality == "CT":
        return CT_PRESETS[CT_DEFAULT]
    flat = np.asarray(pixels, dtype=np.float64).ravel()
    flat = flat[:: max(1, flat.size // 1_000_000)]  # a million samples pin the percentiles down
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(flat, [1.0, 99.0])
    width = hi - lo if hi > lo else max(abs(float(hi)), 1.0)
    return float(lo + hi) / 2.0, float(width)


def read_dicom(path: str | Path, *, max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> DicomRead:
    """Read a DICOM file, a folder of them (recursively) or a zip archive of them.

    A broken single file raises DicomError; in a folder or archive per-file failures become
    Issues, and DicomError is raised only when nothing at all could be used.
    """
    root = Path(path)
    issues: list[Issue] = []
    if root.is_dir():
        return _read_many(_folder_sources(root, issues), root, issues)
    if not root.is_file():
        raise DicomError("no such file or folder", path=root)
    if not is_dicom_file(root) and zipfile.is_zipfile(root):
        return _read_many(_zip_sources(root, max_zip_bytes, issues), root, issues)
    result = decode_file(str(root))
    if isinstance(result, NonImageObject):
        return DicomRead((), (result,), ())
    series = _assemble([result], issues)
    return DicomRead(tuple(series), (), tuple(_merge_repeats(issues)))


def read_dicom_files(paths: Sequence[str | Path], root: str | Path) -> DicomRead:
    """Read a given list of files as one set, so slices of a volume spread over files are stacked.

    Per-file failures become Issues; DicomError only when nothing was usable (`root` names the set).
    """
    issues: list[Issue] = []
    return _read_many(((str(p), None) for p in paths), Path(root), issues)


def _read_many(sources: Iterable[tuple[str, bytes | None]], root: Path, issues: list[Issue]) -> DicomRead:
    """Decode every source, keep the good ones, report the rest; fail only if nothing was usable."""
    decoded: list[DecodedFile] = []
    non_images: list[NonImageObject] = []
    failures: Counter[str] = Counter()
    count = 0
    for source, data in sources:
        count += 1
        try:
            result = decode_file(source, data)
        except DicomError as err:
            failures[next((r for r in _REASONS if err.detail.startswith(r)), "other")] += 1
            issues.append(Issue(source, err.where or "", err.detail, kind="skipped"))
            continue
        (non_images if isinstance(result, NonImageObject) else decoded).append(result)
    series = _assemble(decoded, issues)
    if not series and not non_images and failures:
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(failures.items()))
        raise DicomError(f"no usable DICOM object among {count} file(s): {summary}", path=root)
    if count == 0:
        issues.append(Issue(str(root), "", "no files found"))
    return DicomRead(tuple(series), tuple(non_images), tuple(_merge_repeats(issues)))


def _folder_sources(root: Path, issues: list[Issue]) -> Iterator[tuple[str, None]]:
    """Every file under `root`, in a stable order; unreadable sub-folders become Issues."""

    def unreadable(err: OSError) -> None:
        issues.append(Issue(str(err.filename or root), "", "folder could not be listed; skipped", kind="skipped"))

    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        subfolders.sort()
        for name in sorted(files):
            yield os.path.join(folder, name), None


def _zip_sources(path: Path, max_bytes: int, issues: list[Issue]) -> Iterator[tuple[str, bytes]]:
    """Members of an archive, read in memory (nothing is extracted, so no path can escape).

    Unsafe or unreadable members become Issues; an archive that expands past `max_bytes` raises.
    """
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:
        raise DicomError(f"{UNREADABLE}: not a readable zip archive ({type(exc).__name__})", path=path) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > max_bytes:
            raise DicomError(f"archive expands past the limit of {max_bytes} bytes", path=path)
        budget = max_bytes
        for member in members:
            name = member.filename.replace("\\", "/")
            why = refusal(member)
            if why is not None:
                issues.append(Issue(str(path), name, f"{why}; skipped", "skipped"))
                continue
            try:
                with archive.open(member) as fh:
                    data = fh.read(budget + 1)  # never trust the declared size
            except Exception as exc:
                issues.append(Issue(str(path), name, f"member could not be read ({type(exc).__name__})", "skipped"))
                continue
            if len(data) > budget:
                raise DicomError(f"archive expands past the limit of {max_bytes} bytes", path=path, where=name)
            budget -= len(data)
            yield f"{path}/{name}", data


def _assemble(files: list[DecodedFile], issues: list[Issue]) -> list[ImageSeries]:
    """Group decoded files into series, stack CT/MR/PET slices into volumes, order everything."""
    issues.extend(i for f in files for i in f.issues)
    groups: dict[str, list[DecodedFile]] = {}
    first_seen: dict[str, str] = {}
    for f in files:
        if f.sop_uid and f.sop_uid in first_seen:
            issues.append(
                Issue(
                    f.source,
                    tag_label("SOPInstanceUID"),
                    f"same instance as {first_seen[f.sop_uid]}; duplicate skipped",
                    "skipped",
                )
            )
            continue
        first_seen.setdefault(f.sop_uid, f.source)
        if not f.series_uid:
            issues.append(Issue(f.source, tag_label("SeriesInstanceUID"), "missing; file read as a series of its own"))
        groups.setdefault(f.series_uid or f"\0{f.source}", []).append(f)
    series: list[ImageSeries] = []
    for members in groups.values():
        stacks: dict[tuple, list[DecodedFile]] = {}
        for f in members:
            if f.frames.shape[0] == 1 and f.modality in VOLUME_MODALITIES:
                key = (f.frames.shape, f.photometric, tuple(np.round(f.orientation, 3)) if f.orientation else None)
                stacks.setdefault(key, []).append(f)
            else:
                series.append(_from_multiframe(f, issues) if f.frames.shape[0] > 1 else _series([f], None, issues))
        if len(stacks) > 1:
            issues.append(
                Issue(
                    members[0].source,
                    tag_label("SeriesInstanceUID"),
                    f"series holds {len(stacks)} stacks of different size or orientation; read apart",
                )
            )
        series.extend(_from_slices(stack, issues) for stack in stacks.values())
    return sorted(series, key=lambda s: (s.study_uid, s.series_uid, s.source_files[0]))


def _from_slices(stack: list[DecodedFile], issues: list[Issue]) -> ImageSeries:
    """A volume (S, H, W) from single-frame slices of one geometry, ordered along the normal."""
    if len(stack) == 1:
        return _series(stack, None, issues)
    positions = [f.positions[0] if f.positions else None for f in stack]
    order, distances = slice_order(positions, stack[0].orientation, [f.instance_number for f in stack])
    ordered = [stack[i] for i in order]
    if distances is None:
        how = "InstanceNumber" if all(f.instance_number is not None for f in stack) else "file name"
        issues.append(
            Issue(
                stack[0].source,
                tag_label("ImagePositionPatient"),
                f"positions or orientation missing in {len(stack)}-slice series; ordered by {how}",
            )
        )
    pixels = np.stack([f.frames[0] for f in ordered])  # (S, H, W)
    spacing = _slice_spacing(distances, ordered[0], issues)
    return _series(ordered, (pixels, spacing, ordered[0].positions[0] if ordered[0].positions else None), issues)


def _from_multiframe(f: DecodedFile, issues: list[Issue]) -> ImageSeries:
    """A multi-frame file as (F, H, W[, 3]), frames ordered by their positions when it has them."""
    order, distances = list(range(f.frames.shape[0])), None
    if f.positions is not None and f.orientation is not None:
        order, distances = slice_order(list(f.positions), f.orientation, [None] * len(order))
    pixels = f.frames[order]  # (F, H, W[, 3])
    origin = f.positions[order[0]] if f.positions else None
    return _series([f], (pixels, _slice_spacing(distances, f, issues), origin), issues)


def slice_order(
    positions: list[tuple[float, ...] | None], orientation: tuple[float, ...] | None, numbers: list[int | None]
) -> tuple[list[int], np.ndarray | None]:
    """Order of slices along the normal of `orientation`, and their distances along it (mm).

    Falls back to InstanceNumber, then to the given order, when a position or the orientation
    is missing (distances are then None).
    """
    n = len(positions)
    normal = _normal(orientation)
    if normal is not None and all(p is not None for p in positions):
        along = np.asarray(positions, dtype=np.float64) @ normal  # (S,)
        order = sorted(range(n), key=lambda i: (along[i], math.inf if numbers[i] is None else numbers[i], i))
        return order, along[order]
    if all(k is not None for k in numbers):
        return sorted(range(n), key=lambda i: numbers[i]), None
    return list(range(n)), None


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    if orientation is None or len(orientation) != 6:
        return None
    normal = np.cross(np.asarray(orientation[:3], dtype=np.float64), np.asarray(orientation[3:], dtype=np.float64))
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def _slice_spacing(distances: np.ndarray | None, f: DecodedFile, issues: list[Issue]) -> float:
    """Median step between positions along the normal; else the file's slice spacing; else 1 mm."""
    if distances is not None and distances.size > 1:
        steps = np.diff(distances)  # (S-1,) sorted, so >= 0
        apart = steps[steps > _SAME_POSITION_MM]
        if apart.size < steps.size:
            issues.append(
                Issue(
                    f.source,
                    tag_label("ImagePositionPatient"),
                    f"{steps.size - apart.size} slice(s) share a position with a neighbour",
                )
            )
        if apart.size:
            spacing = float(np.median(apart))
            if float(apart.max() - apart.min()) > max(0.01 * spacing, 0.01):
                issues.append(
                    Issue(
                        f.source,
                        tag_label("ImagePositionPatient"),
                        f"uneven slice spacing ({apart.min():.3f} to {apart.max():.3f} mm); median used",
                    )
                )
            return spacing
    if f.slice_spacing is not None:
        return f.slice_spacing
    issues.append(Issue(f.source, tag_label("SpacingBetweenSlices"), "no slice positions or spacing; 1.0 mm assumed"))
    return 1.0


def _series(
    ordered: list[DecodedFile],
    stacked: tuple[np.ndarray, float, tuple[float, ...] | None] | None,
    issues: list[Issue],
) -> ImageSeries:
    """The ImageSeries record; `stacked` is (pixels, slice spacing, origin) for 3D, None for one 2D frame."""
    first = ordered[0]
    row_col = first.pixel_spacing
    spacing_assumed = row_col is None
    if row_col is None:
        row_col = (1.0, 1.0)
        issues.append(
            Issue(
                first.source, tag_label("PixelSpacing"), "PixelSpacing and ImagerPixelSpacing missing; 1.0 mm assumed"
            )
        )
    if stacked is None:
        pixels, spacing = first.frames[0], tuple(row_col)  # (H, W[, 3])
        origin = first.positions[0] if first.positions else None
    else:
        pixels, spacing, origin = stacked[0], (stacked[1],) + tuple(row_col), stacked[2]
    colour = first.frames.ndim == 4
    window = None if colour else first.window or default_window(first.modality, pixels)
    timed = [f for f in ordered if f.acquired is not None]
    earliest = min(timed, key=lambda f: f.acquired) if timed else None  # type: ignore[arg-type, return-value]
    if earliest is not None and earliest.acquired_assumed_utc:
        issues.append(Issue(earliest.source, "acquisition time", "no UTC offset in the file; time taken as UTC"))
    return ImageSeries(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        spacing=tuple(float(s) for s in spacing),
        modality=first.modality,
        series_uid=first.series_uid or "",
        study_uid=first.study_uid,
        sop_uids=tuple(f.sop_uid for f in ordered),
        orientation=first.orientation,
        origin=origin,
        body_part=first.body_part,
        view_position=first.view_position,
        photometric=first.photometric,
        inverted=first.inverted,
        window=window,
        rescale=first.rescale,
        bits_stored=first.bits_stored,
        transfer_syntax=first.transfer_syntax,
        description=first.description,
        acquired=earliest.acquired if earliest is not None else None,
        source_files=tuple(f.source for f in ordered),
        spacing_assumed=spacing_assumed,
        patient=first.patient,
    )


def _merge_repeats(issues: list[Issue]) -> list[Issue]:
    """One warning per (place, message), naming the first file and how many more said the same."""
    sources: dict[tuple[str, str], set[str]] = {}
    first: dict[tuple[str, str], Issue] = {}
    for issue in issues:
        if issue.kind == "warning":
            sources.setdefault((issue.where, issue.message), set()).add(issue.source)
            first.setdefault((issue.where, issue.message), issue)
    merged = []
    for issue in issues:
        key = (issue.where, issue.message)
        if issue.kind != "warning":
            merged.append(issue)
        elif first[key] is issue:
            extra = len(sources[key]) - 1
            merged.append(
                issue if extra == 0 else replace(issue, message=f"{issue.message} (and {extra} more file(s))")
            )
    return merged
