"""Reading a DICOM data set's elements, and the words a failure to read one is reported in.

Every DicomError raised while decoding a file starts its message with one of the failure
reasons below and names the element with :func:`tag_label`, never a value read from it. The
readers come in two kinds: strict (`_int`, and `_numbers` without an issue list) where the
pixels depend on the value or a wrong one would mislead, and lenient (`_text`, and `_numbers`
with one) where a problem becomes an Issue and the value is dropped.
"""

from __future__ import annotations

import math
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from medmm.errors import DicomError
from medmm.records import Issue

# Failure reasons: every DicomError message raised while decoding a file starts with one, so that
# a folder read can count its failures by kind.
NOT_DICOM = "not a DICOM file"
TRUNCATED = "truncated or corrupted"
NO_PIXELS = "no pixel data"
UNSUPPORTED = "unsupported encoding"
UNDECODABLE = "pixel data could not be decoded"
INVALID = "invalid attribute"
UNREADABLE = "file could not be read"

_UNDEFINED_LENGTH = 0xFFFFFFFF


def tag_label(tag: int | str) -> str:
    """'(gggg,eeee) Keyword' for a tag or keyword, the form every message and Issue uses."""
    t = Tag(tag)
    return f"({t.group:04X},{t.element:04X}) {keyword_for_tag(t) or 'private element'}"


def _group_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The item of a functional-group sequence for a frame: per-frame groups override shared ones."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        outer = ds.get(groups)
        if outer and len(outer) > index and outer[index].get(sequence):
            return outer[index].get(sequence)[0]
    return None


def _get(item: Dataset, keyword: str, source: str) -> Any:
    try:
        return item.get(keyword)
    except Exception as exc:
        raise DicomError(
            f"{INVALID}: value cannot be read ({type(exc).__name__})", path=source, where=tag_label(keyword)
        ) from None


def _text(item: Dataset | None, keyword: str, source: str, issues: list[Issue]) -> str | None:
    """A string value (first of several), None when absent; unreadable values become an Issue."""
    try:
        value = _get(item, keyword, source) if item is not None else None
    except DicomError as err:
        issues.append(Issue(source, err.where or "", err.detail))
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    text = None if value is None else str(value).strip()
    return text or None


def _int(ds: Dataset, keyword: str, source: str, default: int) -> int:
    """A required integer of the image pixel module; strict, since pixels depend on it."""
    value = _get(ds, keyword, source)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DicomError(f"{INVALID}: expected an integer", path=source, where=tag_label(keyword)) from None


def _numbers(
    item: Dataset, keyword: str, count: int | None, source: str, issues: list[Issue] | None, *, positive: bool = False
) -> tuple[float, ...] | None:
    """`count` finite numbers (the first when count is None); None when absent or invalid.

    An invalid value becomes an Issue, or a DicomError when `issues` is None (strict).
    """
    try:
        value = _get(item, keyword, source)
        if value is None or value == "":
            return None
        values = [float(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
        values = values[:1] if count is None else values
        if len(values) != (count or 1) or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
            raise ValueError
    except (DicomError, TypeError, ValueError):
        expected = f"{count or 1} {'positive ' if positive else ''}number(s)"
        if issues is None:
            raise DicomError(f"{INVALID}: expected {expected}", path=source, where=tag_label(keyword)) from None
        issues.append(Issue(source, tag_label(keyword), f"expected {expected}; ignored"))
        return None
    return tuple(values)
