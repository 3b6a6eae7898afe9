"""Seeded mutators that break valid inputs in the ways real files break, and the case generator.

Every mutator is a pure function of its input and a ``random.Random``: case ``i`` of seed ``s``
draws from ``Random(f"{s}:{i}")`` alone, so any case can be rebuilt on its own. DICOM mutators
work on bytes (byte flips, truncation, element lengths, VRs, inserted or repeated elements, the
transfer syntax, odd image dimensions); FHIR and table mutators are in :mod:`tests.fuzz.mutators_text`.
"""

from __future__ import annotations

import io
import itertools
import random
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydicom.datadict import dictionary_has_tag

from tests.fuzz.mutators_text import mutate_fhir, mutate_ndjson, mutate_parquet, mutate_table
from tests.fuzz.seeds import DICOM, FHIR, NDJSON, PARQUET, SUFFIX, VITALS, ZIP, Seed, all_seeds, zip_bytes

VRS = tuple(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())  # 2 reserved bytes, 4-byte length
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 (video)
    "1.2.3.4.5",  # not a transfer syntax
    "",
    "not a uid",
)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_BIG_ENDIAN_UID = b"1.2.840.10008.1.2.2\x00"
_TRANSFER_SYNTAX_TAG = b"\x02\x00\x10\x00"
_EXPLICIT = re.compile(b"(?=....(" + b"|".join(VRS) + b"))", re.DOTALL)
_IMPLICIT = re.compile(rb"(?=(?:\x08\x00|\x10\x00|\x18\x00|\x20\x00|\x28\x00|\xe0\x7f)..)", re.DOTALL)


@dataclass(frozen=True)
class Case:
    """One fuzz input: the kind of reader it is for, a file name, its bytes, and how it was made."""

    index: int
    kind: str
    name: str
    data: bytes
    label: str  # "<seed file>: <mutator>, <mutator>"


@dataclass(frozen=True)
class Header:
    """Where a data element header sits and where its length field is."""

    offset: int
    length_at: int
    length_size: int  # 2 or 4 bytes
    byteorder: str  # "little" | "big"
    explicit: bool


# ---------------------------------------------------------------------------------------------
# bytes


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    """Flip a bit in, or write a boundary value to, up to eight random bytes."""
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] = out[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.choice(INTERESTING_BYTES)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut the data at a random point (often inside the first 512 bytes, where the headers are)."""
    if len(data) < 2:
        return b""
    end = rng.randrange(min(len(data), 512)) if rng.random() < 0.4 else rng.randrange(len(data))
    return data[:end]


def insert_garbage(data: bytes, rng: random.Random) -> bytes:
    """Insert random bytes, or a copy of a chunk of the data itself, at a random point."""
    at = rng.randrange(len(data) + 1)
    if data and rng.random() < 0.5:
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.randint(1, 256)]
    else:
        chunk = rng.randbytes(rng.randint(1, 64))
    return data[:at] + chunk + data[at:]


def delete_chunk(data: bytes, rng: random.Random) -> bytes:
    """Remove a random run of bytes (a dropped block of a transfer)."""
    if not data:
        return data
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, 128) :]


# ---------------------------------------------------------------------------------------------
# DICOM


@lru_cache(maxsize=64)
def element_headers(data: bytes) -> tuple[Header, ...]:
    """Likely data element headers: explicit-VR ones by their VR, implicit-VR ones by a known tag.

    A heuristic (a fuzzer may hit false positives, which are corruptions too); the data set of
    a file whose meta header names explicit big endian is read big-endian.
    """
    start = 132 if data[128:132] == b"DICM" else 0
    big_after_meta = _BIG_ENDIAN_UID in data[:2048]
    found = []
    for m in _EXPLICIT.finditer(data, start):
        i = m.start()
        if i % 2 or i + 8 > len(data):
            continue
        order = "big" if big_after_meta and data[i : i + 2] != b"\x02\x00" else "little"
        long = m[1] in LONG_VRS
        if long and data[i + 6 : i + 8] != b"\x00\x00":
            continue
        found.append(Header(i, i + 8 if long else i + 6, 4 if long else 2, order, True))
    explicit = {h.offset for h in found}
    for m in _IMPLICIT.finditer(data, start):
        i = m.start()
        if i % 2 or i in explicit or i + 8 > len(data):
            continue
        group, element, length = struct.unpack("<HHL", data[i : i + 8])
        if dictionary_has_tag((group << 16) | element) and (length == 0xFFFFFFFF or length <= len(data) - i - 8):
            found.append(Header(i, i + 4, 4, "little", False))
    return tuple(sorted(found, key=lambda h: h.offset))


def corrupt_length(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the length field of an element header with a wrong, odd, huge or undefined length."""
    headers = element_headers(data)
    if not headers:
        return flip_bytes(data, rng)
    h = rng.choice(headers)
    old = int.from_bytes(data[h.length_at : h.length_at + h.length_size], h.byteorder)
    rest = len(data) - h.length_at - h.length_size
    top = (1 << (8 * h.length_size)) - 1
    new = rng.choice(
        (
            0,
            1,
            3,
            old + 1,
            max(old - 1, 0),
            old * 2,
            old + 2,
            rest,
            rest + 2,
            top,
            top - 1,
            top >> 1,
            rng.randrange(top + 1),
        )
    )
    return data[: h.length_at] + (new & top).to_bytes(h.length_size, h.byteorder) + data[h.length_at + h.length_size :]


def swap_vr(data: bytes, rng: random.Random) -> bytes:
    """Replace the VR of an explicit-VR element with another VR (or two bytes that are no VR)."""
    headers = [h for h in element_headers(data) if h.explicit]
    if not headers:
        return flip_bytes(data, rng)
    h = rng.choice(headers)
    vr = rng.choice(VRS) if rng.random() < 0.9 else rng.choice((b"ZZ", b"\x00\x00", b"ob", b"  "))
    return data[: h.offset + 4] + vr + data[h.offset + 6 :]


def swap_transfer_syntax(data: bytes, rng: random.Random) -> bytes:
    """Replace the meta header's TransferSyntaxUID with another (compressed, big-endian, bogus) UID."""
    at = data.find(_TRANSFER_SYNTAX_TAG + b"UI")
    if at < 0 or at + 8 > len(data):  # absent, or its length field cut off
        return corrupt_length(data, rng)
    (length,) = struct.unpack("<H", data[at + 6 : at + 8])
    uid = rng.choice(TRANSFER_SYNTAXES).encode()
    uid += b"\x00" * (len(uid) % 2)
    return data[: at + 6] + struct.pack("<H", len(uid)) + uid + data[at + 8 + length :]


def duplicate_element(data: bytes, rng: random.Random) -> bytes:
    """Repeat a whole element (header and value) right after itself, or elsewhere."""
    headers = element_headers(data)
    if not headers:
        return insert_garbage(data, rng)
    h = rng.choice(headers)
    length = int.from_bytes(data[h.length_at : h.length_at + h.length_size], h.byteorder)
    end = min(len(data), h.length_at + h.length_size + (0 if length == 0xFFFFFFFF else length))
    element = data[h.offset : end]
    at = end if rng.random() < 0.5 else rng.choice(headers).offset
    return data[:at] + element + data[at:]


_IMAGE_US = {
    0x0002: "SamplesPerPixel",
    0x0006: "PlanarConfiguration",
    0x0010: "Rows",
    0x0011: "Columns",
    0x0100: "BitsAllocated",
    0x0101: "BitsStored",
    0x0102: "HighBit",
    0x0103: "PixelRepresentation",
}
_ODD_US = (0, 1, 2, 3, 7, 8, 12, 16, 17, 32, 33, 64, 0x7FFF, 0x8000, 0xFFFF)
_ODD_FRAMES = (b"0 ", b"-1", b"65535 ", b"2147483647", b"1e9 ", b"3.5 ", b"", b"abcd")


def odd_image_attribute(data: bytes, rng: random.Random) -> bytes:
    """Set an image pixel module attribute (Rows, Columns, bits, samples, frames) to an odd value."""
    targets = []
    for h in element_headers(data):
        group, element = struct.unpack("<HH" if h.byteorder == "little" else ">HH", data[h.offset : h.offset + 4])
        if group == 0x0028 and (element in _IMAGE_US or element == 0x0008):
            targets.append((h, element))
    if not targets:
        return corrupt_length(data, rng)
    if rng.random() < 0.3:  # inflate the image: every dimension at once
        for h, element in targets:
            at = h.length_at + h.length_size
            if element in (0x0010, 0x0011) and int.from_bytes(data[h.length_at : at], h.byteorder) == 2:
                data = data[:at] + rng.choice((0x4000, 0xFFFF)).to_bytes(2, h.byteorder) + data[at + 2 :]
        return data
    h, element = rng.choice(targets)
    value_at = h.length_at + h.length_size
    length = int.from_bytes(data[h.length_at : value_at], h.byteorder)
    if element == 0x0008:  # NumberOfFrames, IS text
        value = rng.choice(_ODD_FRAMES)
        new_length = len(value).to_bytes(h.length_size, h.byteorder)
        return data[: h.length_at] + new_length + value + data[value_at + length :]
    if length != 2:
        return data
    return data[:value_at] + rng.choice(_ODD_US).to_bytes(2, h.byteorder) + data[value_at + 2 :]


DATE_KEYWORDS = (
    "AcquisitionDateTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "ContentDate",
    "SeriesDate",
    "StudyDate",
    "StudyTime",
    "TimezoneOffsetFromUTC",
    "PatientBirthDate",
    "PatientAge",
)
ODD_DICOM_DATES = {
    "AcquisitionDateTime": (
        "00010101000000+1400",
        "00010101000000",
        "99991231235959-1200",
        "18991231235959+1400",
        "29990101",
        "20240230120000",
        "2024",
        "20241301",
        "20240310081500.123456789",
        "-20240310",
    ),
    "TimezoneOffsetFromUTC": ("+1400", "-1200", "+9999", "1400", "+14", "-0000", "abcd"),
    "PatientAge": ("000Y", "999Y", "012M", "-01Y", "12Y", "ABCD"),
    "PatientBirthDate": ("00010101", "99991231", "20240230", "19000101", "2024"),
}
_DATE_VALUES = ("00010101", "99991231", "18991231", "29990101", "20240230", "20241301", "00000000", "2024", "1")
_TIME_VALUES = ("240000", "235960", "0", "999999", "12", "081500.9999999")


def _edit_dicom(data: bytes, edit: Callable[[object], None], rng: random.Random) -> bytes:
    """Parse with pydicom, apply `edit` to the dataset, write back; a file pydicom cannot parse gets corrupt_length."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():  # the values are invalid on purpose
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            edit(ds)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=False)
        return out.getvalue()
    except Exception:  # a file already broken by an earlier mutation: break it another way
        return corrupt_length(data, rng)


def odd_dicom_date(data: bytes, rng: random.Random) -> bytes:
    """Set the acquisition, content, series or study date/time, the UTC offset, birth date or age to an odd value."""

    def edit(ds) -> None:
        for keyword in rng.sample(DATE_KEYWORDS, rng.randint(1, 3)):
            values = ODD_DICOM_DATES.get(keyword) or (_TIME_VALUES if keyword.endswith("Time") else _DATE_VALUES)
            setattr(ds, keyword, rng.choice(values))

    return _edit_dicom(data, edit, rng)


def other_patient(data: bytes, rng: random.Random) -> bytes:
    """Give the file another patient's identity (PatientID, sometimes sex and birth date)."""

    def edit(ds) -> None:
        ds.PatientID = rng.choice(("OTHER-1", "OTHER-2", "x" * 64, " ", "1CT1"))
        if rng.random() < 0.5:
            ds.PatientSex, ds.PatientBirthDate = (
                rng.choice(("M", "F", "O", "")),
                rng.choice(("19500101", "20200101", "")),
            )

    return _edit_dicom(data, edit, rng)


DICOM_MUTATORS: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    flip_bytes,
    truncate,
    corrupt_length,
    corrupt_length,
    swap_vr,
    swap_vr,
    insert_garbage,
    delete_chunk,
    swap_transfer_syntax,
    duplicate_element,
    odd_image_attribute,
    odd_image_attribute,
    odd_dicom_date,
    odd_dicom_date,
    other_patient,
)
BYTE_MUTATORS = (flip_bytes, truncate, insert_garbage, delete_chunk)


def mutate_dicom(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """One to three DICOM mutations in a row."""
    names = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        mutator = rng.choice(DICOM_MUTATORS)
        data = mutator(data, rng)
        names.append(mutator.__name__)
    return data, names


def mutate_zip(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """Either mutate some DICOM members and re-pack the archive, or break the archive's own bytes."""
    if rng.random() < 0.6:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {m.filename: archive.read(m) for m in archive.infolist()}
        names = []
        for target in rng.sample(sorted(members), rng.randint(1, len(members))):
            members[target], done = mutate_dicom(members[target], rng)
            names += done
        if rng.random() < 0.2:  # a member path that must not escape
            members[rng.choice(("../evil.dcm", "/abs.dcm", "C:/x.dcm", "dir/"))] = members[target]
        return zip_bytes(members), [f"member {n}" for n in names]
    mutator = rng.choice(BYTE_MUTATORS)
    return mutator(data, rng), [f"archive {mutator.__name__}"]


# ---------------------------------------------------------------------------------------------
# cases

_KIND_WEIGHTS = {DICOM: 10, ZIP: 1, FHIR: 4, NDJSON: 2, VITALS: 4, PARQUET: 1}


def mutate(seed: Seed, rng: random.Random) -> tuple[bytes, list[str]]:
    """Mutate a seed with the mutators of its kind."""
    if seed.kind == DICOM:
        return mutate_dicom(seed.data, rng)
    if seed.kind == ZIP:
        return mutate_zip(seed.data, rng)
    if seed.kind == FHIR:
        return mutate_fhir(seed.doc, rng)
    if seed.kind == NDJSON:
        return mutate_ndjson(seed.doc, rng)
    if seed.kind == VITALS:
        return mutate_table(seed.rows, rng)
    return mutate_parquet(seed.rows, rng)


def make_case(seed: int, index: int, seeds: Sequence[Seed] | None = None) -> Case:
    """Case `index` of fuzz seed `seed`: a seed input chosen and mutated from Random(f'{seed}:{index}')."""
    seeds = seeds if seeds is not None else all_seeds()
    rng = random.Random(f"{seed}:{index}")
    kinds = sorted({s.kind for s in seeds})
    kind = rng.choices(kinds, weights=[_KIND_WEIGHTS.get(k, 1) for k in kinds])[0]
    source = rng.choice([s for s in seeds if s.kind == kind])
    data, names = mutate(source, rng)
    stem = source.name.rsplit(".", 1)[0]
    return Case(index, kind, f"{stem}-{index}{SUFFIX[kind]}", data, f"{source.name}: {', '.join(names)}")


def generate(seed: int, count: int | None = None, seeds: Sequence[Seed] | None = None) -> Iterator[Case]:
    """Cases 0, 1, ... of fuzz seed `seed` (`count` of them, or without end)."""
    indices = range(count) if count is not None else itertools.count()
    for index in indices:
        yield make_case(seed, index, seeds)
