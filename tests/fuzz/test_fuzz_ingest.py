"""Fuzzed ingest: the mutators, the harness (time limit, memory bound, crash sites) and the seeded
quick pass, in which every input must load or raise a MedmmError subtype and leave intact files
beside it whole."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import struct
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import data_element_generator

from medmm.errors import MedmmError
from tests.fuzz.harness import FuzzRunner, Lost, Result, Summary, cpu_workers, ingest, run_pass
from tests.fuzz.mutators import (
    DATE_KEYWORDS,
    LONG_VRS,
    TRANSFER_SYNTAXES,
    Case,
    corrupt_length,
    element_headers,
    make_case,
    odd_dicom_date,
    odd_image_attribute,
    other_patient,
    swap_transfer_syntax,
    swap_vr,
    truncate,
)
from tests.fuzz.mutators_odd import (
    CODEC_CHARSETS,
    FHIR_FAMILIES,
    HUGE_LITERALS,
    ODD_DATES,
    ODD_TABLE_TIMES,
    RAW,
    TABLE_FAMILIES,
    codec_charset,
    huge_literal,
    long_cell,
    odd_fhir_date,
    odd_table_time,
    raw_text,
    wrong_type,
)
from tests.fuzz.mutators_text import deep_nesting, mutate_fhir
from tests.fuzz.neighbours import expected
from tests.fuzz.seeds import DICOM, FHIR, NDJSON, PARQUET, VITALS, ZIP, all_seeds, radiograph_bytes

QUICK_PASS_INPUTS = 2000


def mr_small() -> bytes:
    return Path(get_testdata_file("MR_small.dcm", download=False)).read_bytes()


# ---- seeds and mutators -----------------------------------------------------------------------


def test_every_seed_loads_unmutated(tmp_path):
    """The seeds are valid inputs: every reader of their kind returns (so failures come from mutations)."""
    seeds = all_seeds()
    assert {s.kind for s in seeds} == {DICOM, ZIP, FHIR, NDJSON, VITALS, PARQUET}
    for seed in seeds:
        assert ingest(Case(0, seed.kind, seed.name, seed.data, seed.name), tmp_path) == "", seed.name


def test_element_headers_match_the_offsets_pydicom_reads():
    data = mr_small()  # explicit VR little endian throughout, meta header included
    found = {h.offset: h for h in element_headers(data)}
    raws = list(data_element_generator(io.BytesIO(data[132:]), False, True))
    assert len(raws) > 50
    for raw in raws:  # top-level elements (sequences are read whole)
        long = raw.VR.encode() in LONG_VRS
        offset = 132 + raw.value_tell - (12 if long else 8)  # tag 4, VR 2, (reserved 2,) length 2 or 4
        assert offset in found, f"header of {raw.tag} at {offset} not found"
        h = found[offset]
        assert (h.length_at, h.length_size, h.explicit) == (offset + (8 if long else 6), 4 if long else 2, True)
        assert int.from_bytes(data[h.length_at : h.length_at + h.length_size], "little") == raw.length


def test_corrupt_length_rewrites_only_a_length_field():
    data = mr_small()
    fields = {(h.length_at, h.length_size) for h in element_headers(data)}
    for i in range(50):
        out = corrupt_length(data, random.Random(i))
        assert len(out) == len(data)
        changed = [k for k in range(len(data)) if out[k] != data[k]]
        assert not changed or any(at <= changed[0] and changed[-1] < at + size for at, size in fields)


def test_swap_vr_changes_the_two_vr_bytes_of_a_header():
    data = mr_small()
    offsets = {h.offset for h in element_headers(data) if h.explicit}
    for i in range(30):
        out = swap_vr(data, random.Random(i))
        changed = [k for k in range(len(data)) if out[k] != data[k]]
        if changed:
            assert changed[-1] - changed[0] <= 1 and (changed[0] - 4 in offsets or changed[0] - 5 in offsets)


def test_swap_transfer_syntax_sets_another_uid_in_the_meta_header():
    data = mr_small()
    seen = set()
    for i in range(40):
        out = swap_transfer_syntax(data, random.Random(i))
        at = out.find(b"\x02\x00\x10\x00UI")
        (length,) = struct.unpack("<H", out[at + 6 : at + 8])
        uid = out[at + 8 : at + 8 + length].rstrip(b"\x00").decode()
        assert uid in TRANSFER_SYNTAXES and length % 2 == 0
        assert out.endswith(data[-1000:])  # the data set itself is untouched
        seen.add(uid)
    assert len(seen) > 5


def test_odd_image_attribute_changes_the_image_pixel_module():
    data = radiograph_bytes()
    keys = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel")
    original = pydicom.dcmread(io.BytesIO(data))
    changed = 0
    for i in range(40):
        ds = pydicom.dcmread(io.BytesIO(odd_image_attribute(data, random.Random(i))), force=True)
        differ = [k for k in keys if ds.get(k) != original.get(k)]
        assert len(differ) <= 2 and ds.PixelData == original.PixelData  # one attribute, or Rows and Columns
        changed += bool(differ)
    assert changed >= 30


def test_truncate_gives_a_prefix():
    data = mr_small()
    for i in range(20):
        out = truncate(data, random.Random(i))
        assert len(out) < len(data) and data.startswith(out)


def test_deep_nesting_is_written_as_nested_json():
    rng = random.Random(0)
    depths = set()
    for _ in range(40):
        text, names = mutate_fhir({"resourceType": "Patient", "id": "p"}, rng)
        if "deep_nesting" in names and not {"truncate", "flip_bytes", "insert_bytes"} & set(names):
            depths.add(text.count(b"[") - text.count(b'"['))
    assert max(depths) >= 5_000  # nesting far past what a recursive reader can follow
    doc = {"a": 1}
    deep_nesting(doc, random.Random(1))
    assert doc["a"] == "\x00nest\x00"


def test_cases_are_reproducible_from_seed_and_index():
    a, b, c = make_case(7, 11), make_case(7, 11), make_case(7, 12)
    assert a == b and a.data != c.data
    kinds = {make_case(3, i).kind for i in range(200)}
    assert kinds == {DICOM, ZIP, FHIR, NDJSON, VITALS, PARQUET}


def test_a_repacked_zip_case_is_the_same_bytes_at_any_time():
    case = next(make_case(4, i) for i in range(400) if make_case(4, i).label.startswith("volume.zip: member"))
    with zipfile.ZipFile(io.BytesIO(case.data)) as archive:
        assert {m.date_time for m in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_cases_that_broke_their_mutators_are_built():
    # a transfer syntax element cut off by a truncation: swapping it must not raise, whatever was cut
    seed = next(s for s in all_seeds() if s.name == "SC_rgb_jpeg_dcmtk.dcm")
    for k in range(200):
        rng = random.Random(k)
        swap_transfer_syntax(truncate(seed.data, rng), rng)
    # a Parquet time column in year 0 (UTC)
    assert make_case(7003, 10305).label == "vitals.parquet: bad_time, bad_time, bad_time, category column"


# ---- the harness ----------------------------------------------------------------------------------


def misbehave(case: Case, folder: Path) -> str:
    """A stand-in reader that fails in a different way for each case index (modulo 5)."""
    kind = case.index % 5
    if kind == 1:
        time.sleep(60)
    elif kind == 2:
        raise ValueError("a reader bug")
    elif kind == 3:
        bytearray(8 * 1024**3)  # far past the bound
    elif kind == 4:
        os._exit(3)
    return ""


@pytest.mark.slow
def test_harness_reports_hangs_crashes_memory_and_dead_workers():
    with FuzzRunner(workers=1, timeout_s=3.0, memory_mib=512, target=misbehave, warm_up=False) as runner:
        results = {r.index: r for r in runner.run(5, count=6)}
        restarts = runner.restarts
    assert [results[i].outcome for i in range(6)] == ["loaded", "hang", "crash", "memory", "died", "loaded"]
    assert results[1].seconds == 3.0 and results[1].detail == "no answer in 3 s"
    assert results[2].detail.startswith("ValueError via tests/fuzz/test_fuzz_ingest.py:")  # raised outside medmm
    assert results[4].detail == "worker ended with exit code 3"
    assert restarts == 2  # after the hang and after the death


def test_summary_figures():
    summary = Summary(seed=1)
    for r in (
        Result(0, DICOM, "a", "loaded", "", 0.5),
        Result(1, FHIR, "b", "rejected", "read_fhir: FhirError", 1.25),
        Result(2, FHIR, "c", "crash", "KeyError at medmm/io/x.py:1", 0.1),
    ):
        summary.add(r)
    d = summary.as_dict()
    assert d["inputs"] == 3 and d["outcomes"]["loaded"] == 1 and d["outcomes"]["crash"] == 1
    assert d["by_kind"] == {DICOM: {"loaded": 1}, FHIR: {"rejected": 1, "crash": 1}}
    assert d["longest_input_s"] == 1.25 and d["longest_input"] == "case 1 (b)"
    assert summary.failed == 1 and d["failures"] == ["case 2 [fhir] c: crash: KeyError at medmm/io/x.py:1"]


def test_a_medmm_error_hiding_a_memory_error_counts_as_memory(tmp_path, monkeypatch):
    import tests.fuzz.harness as harness

    def swallowing(case, path):
        try:
            raise MemoryError
        except MemoryError:
            raise MedmmError("could not read") from None

    monkeypatch.setattr(harness, "_readers", lambda kind: [("reader", swallowing)])
    with pytest.raises(MemoryError, match="reader turned a MemoryError into MedmmError"):
        ingest(Case(0, DICOM, "x.dcm", b"", "x"), tmp_path)


# ---- the seeded quick pass --------------------------------------------------------------------------


@pytest.mark.slow
def test_seeded_quick_pass(tmp_path):
    """About 2,000 mutated inputs: each loads or raises a MedmmError subtype; none hangs or runs away."""
    summary = run_pass(
        1,
        count=QUICK_PASS_INPUTS,
        workers=min(2, cpu_workers()),
        timeout_s=10.0,
        memory_mib=2048,
        save_dir=tmp_path / "failures",
    )
    figures = summary.as_dict()
    (tmp_path / "fuzz_summary.json").write_text(json.dumps(figures, indent=2))
    print("\n" + "\n".join(summary.lines()) + f"\nfigures written to {tmp_path / 'fuzz_summary.json'}")
    assert summary.inputs == QUICK_PASS_INPUTS
    assert summary.failed == 0, "\n".join(figures["failures"])
    assert figures["outcomes"]["loaded"] > 0 and figures["outcomes"]["rejected"] > 0
    assert set(figures["by_kind"]) == {DICOM, ZIP, FHIR, NDJSON, VITALS, PARQUET}


# ---- the families for odd values ---------------------------------------------------------------------


def _labels(seed: int, count: int) -> list[str]:
    return [make_case(seed, i).label for i in range(count)]


def test_every_odd_value_family_is_drawn():
    names = {name for label in _labels(11, 600) for name in label.split(": ", 1)[1].split(", ")}
    families = {f.__name__ for f in FHIR_FAMILIES + TABLE_FAMILIES}
    assert families <= names


def test_huge_literals_are_written_unquoted_and_refused_by_the_parser():
    doc = {"resourceType": "Observation", "valueQuantity": {"value": 72}}
    huge_literal(doc, random.Random(3))
    text = raw_text(json.dumps(doc))
    literal = doc["valueQuantity"]["value"].removeprefix(RAW)
    assert literal in HUGE_LITERALS and f'"value": {literal}}}' in text
    big = raw_text(json.dumps({"v": RAW + "1" * 4_301}))
    assert big == '{"v": ' + "1" * 4_301 + "}"
    with pytest.raises(ValueError, match="4300"):
        json.loads(big)


def test_codec_charsets_wrong_types_and_odd_dates_change_what_they_say():
    rng = random.Random(5)
    for _ in range(20):
        doc = {"content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}], "date": "2024-03-10"}
        codec_charset(doc, rng)
        media, charset = doc["content"][0]["attachment"]["contentType"].split("; charset=")
        assert media in ("text/plain", "text/html", "application/xhtml+xml") and charset in CODEC_CHARSETS
        odd_fhir_date(doc, rng)
        assert doc["date"] in ODD_DATES
        before = json.loads(json.dumps(doc))
        wrong_type(doc, rng)
        assert doc != before


def test_long_cells_stay_one_cell_and_odd_times_are_at_the_calendars_edges():
    rng = random.Random(9)
    for _ in range(30):
        rows = [["time", "code", "value", "unit"], ["2024-03-09T20:10:00Z", "8867-4", "88", "/min"]]
        long_cell(rows, rng)
        assert len(rows) == 2 and all(len(r) == 4 for r in rows)
        assert not any(c in cell for row in rows for cell in row for c in ',"\n')
        assert max(len(cell) for row in rows for cell in row) >= 1_000
        rows = [["time", "code", "value", "unit"], ["2024-03-09T20:10:00Z", "8867-4", "88", "/min"]]
        odd_table_time(rows, rng)
        assert rows[1][0] in ODD_TABLE_TIMES


# ---- the neighbour check -------------------------------------------------------------------------------


def test_the_intact_files_alone_give_notes_and_grid_cells():
    want = expected()
    assert len(want.notes) == 2 and want.observed.sum() == 15
    assert want.study_time == datetime(2024, 3, 10, 3, 10, tzinfo=timezone.utc)  # last reading 02:10 UTC + 1 step


def test_a_case_that_costs_an_intact_file_its_notes_is_lost(tmp_path, monkeypatch):
    import tests.fuzz.neighbours as neighbours

    record = next(s for s in all_seeds() if s.name == "bundle.json")
    case = Case(0, FHIR, "bundle.json", record.data, "bundle.json")
    assert neighbours.lost_beside(case, tmp_path) == ""
    real = neighbours.load_study
    monkeypatch.setattr(neighbours, "load_study", lambda *a, **k: dataclasses.replace(real(*a, **k), notes=()))
    with pytest.raises(Lost, match="2 of 2 notes of the intact record.json"):
        ingest(case, tmp_path)
    assert list(tmp_path.iterdir()) == []


def lose(case: Case, folder: Path) -> str:
    """A stand-in reader whose intact neighbour is lost for odd case indices."""
    if case.index % 2:
        raise Lost("1 of 2 notes of the intact record.json")
    return ""


@pytest.mark.slow
def test_harness_reports_a_lost_neighbour_as_a_failure():
    with FuzzRunner(workers=1, timeout_s=10.0, memory_mib=0, target=lose, warm_up=False) as runner:
        results = [r.outcome for r in runner.run(5, count=2)]
    assert results == ["loaded", "lost"]
    summary = Summary(seed=5)
    summary.add(Result(1, FHIR, "x", "lost", "1 of 2 notes of the intact record.json", 0.1))
    assert summary.failed == 1 and summary.as_dict()["outcomes"]["lost"] == 1


def test_dicom_dates_and_patients_are_changed_where_the_reader_looks():
    rng = random.Random(4)
    before = pydicom.dcmread(io.BytesIO(radiograph_bytes()))
    changed = [pydicom.dcmread(io.BytesIO(odd_dicom_date(radiograph_bytes(), rng))) for _ in range(20)]
    keywords = {k for ds in changed for k in DATE_KEYWORDS if str(ds.get(k, "")) != str(before.get(k, ""))}
    assert {"AcquisitionDateTime", "TimezoneOffsetFromUTC", "StudyDate"} <= keywords
    other = pydicom.dcmread(io.BytesIO(other_patient(radiograph_bytes(), rng)))
    assert other.PatientID != before.get("PatientID", "")


def test_a_dicom_neighbour_check_catches_two_patients_mixed_and_an_intact_image_lost(tmp_path, monkeypatch):
    import tests.fuzz.neighbours as neighbours

    other = Case(0, DICOM, "x.dcm", other_patient(radiograph_bytes(), random.Random(1)), "other patient")
    assert neighbours.lost_beside(other, tmp_path) == ""  # the mixed folder is refused, the anonymous one read
    real = neighbours.load_study
    monkeypatch.setattr("medmm.io.study.one_patient", lambda images, record, pid, root: (list(images), []))
    assert neighbours.lost_beside(other, tmp_path) == "images of 2 patients mixed in one study"
    monkeypatch.setattr(neighbours, "load_study", lambda *a, **k: dataclasses.replace(real(*a, **k), images=()))
    assert "the intact a-intact.dcm was not read" in neighbours.lost_beside(other, tmp_path)
