"""Reading FHIR files into entries (medmm.io.fhir_load): what a bad file, line or entry costs.

A bad entry costs that entry, a bad NDJSON line that line, a file that cannot be read that file
(when others are read with it); each is reported with the file and the place, and nothing the
models or the JSON parser raise escapes as anything but a MedmmError.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from medmm.errors import FhirError, MedmmError
from medmm.io import load_study
from medmm.io.fhir import read_fhir
from tests.fuzz.seeds import radiograph_bytes
from tests.io.fhir_fixtures import collection, document_reference, heart_rate, patient_resource, write_json

HL7_EXAMPLES = Path(__file__).parent / "data" / "hl7"
HUGE = "7" * 5_000  # past the 4,300 digits Python converts to an int
SUBJECT = {"reference": "Patient/1"}


def note(text: str) -> dict[str, Any]:
    return document_reference("text/plain", text.encode())


def record_bundle() -> dict[str, Any]:
    """A patient with two notes and a heart rate: what an intact record.json holds."""
    return collection(patient_resource("1", "M1"), note("first note"), note("second note"), heart_rate(SUBJECT, 5, 90))


# ---- huge integer literals -------------------------------------------------------------------------


def test_an_integer_past_the_parsers_digit_limit_is_a_fhir_error_naming_the_file(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record_bundle())[:-1] + f', "total": {HUGE}}}')
    with pytest.raises(FhirError, match="more than 4300 digits") as caught:
        read_fhir(path)
    assert caught.value.path == str(path) and str(caught.value).startswith(f"{path}: ")


def test_an_ndjson_line_with_a_huge_integer_is_skipped_and_the_other_lines_read(tmp_path):
    path = tmp_path / "export.ndjson"
    bad = json.dumps(heart_rate(SUBJECT, 6)).replace('"value": 80', f'"value": {HUGE}')
    path.write_text("\n".join([json.dumps(patient_resource("1", "M1")), bad, json.dumps(heart_rate(SUBJECT, 7))]))
    record = read_fhir(path)
    assert [(r.time.minute, r.value) for r in record.readings] == [(7, 80.0)]
    (issue,) = record.issues
    assert (issue.source, issue.where, issue.kind) == (str(path), "line 2", "skipped")
    assert "more than 4300 digits" in issue.message and HUGE[:10] not in issue.message


# ---- anything the models raise ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, field, raised",
    [
        (123, "url", "AttributeError"),
        (True, "url", "AttributeError"),
        (["Binary/1"], "url[0]", "TypeError"),
        ({"a": 1}, "url.a", "TypeError"),
    ],
)
def test_a_wrong_type_where_the_models_expect_a_url_skips_only_that_entry(url, field, raised, tmp_path):
    # found by the ingest fuzzer: fhir_core raised AttributeError for `attachment.url: 123`, and the
    # whole patient folder (its DICOM and vitals too) was lost
    broken = note("lost note")
    broken["content"][0]["attachment"]["url"] = url
    bundle = record_bundle()
    bundle["entry"].insert(1, {"resource": broken})
    folder = tmp_path / "p1"
    folder.mkdir()
    path = write_json(folder / "record.json", bundle)
    (folder / "vitals.csv").write_text("time,code,value,unit\n2024-03-10T08:30:00Z,9279-1,18,/min\n")
    (folder / "chest.dcm").write_bytes(radiograph_bytes())
    record = read_fhir(path)
    assert sorted(n.text for n in record.notes) == ["first note", "second note"]
    (issue,) = [i for i in record.issues if i.kind == "skipped"]
    assert (issue.source, issue.where) == (str(path), "entry 1 (DocumentReference)")
    assert issue.message == f"field content[0].attachment.{field}: invalid value (the FHIR models raised {raised})"
    study = load_study(folder, study_time=datetime(2024, 3, 10, 9, 0, tzinfo=timezone.utc))
    assert [image.modality for image in study.images] == ["CR"]
    assert sorted(n.text for n in study.notes) == ["first note", "second note"]
    rr = study.vitals.channels.index("resp_rate")
    assert study.vitals.mask[:, rr].sum() == 1 and study.vitals.values[-1, rr] == 18.0


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) in a JSON document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out = []
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


OTHER_TYPES: tuple[Any, ...] = (7, ["x"], {"x": 1}, True, None, "A" * 20_000)


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(p.name for p in HL7_EXAMPLES.glob("*.json")))
def test_a_value_of_another_json_type_at_any_path_loads_or_is_a_medmm_error(example, tmp_path):
    """Each path of an official HL7 example set to each JSON type it does not have: read_fhir
    returns (the entry reported when invalid) or raises a MedmmError naming the file."""
    doc = json.loads((HL7_EXAMPLES / example).read_text())
    path = tmp_path / example
    tried = 0
    for where in _paths(doc):
        for value in OTHER_TYPES:
            changed = json.loads(json.dumps(doc))
            parent = changed
            for key in where[:-1]:
                parent = parent[key]
            if type(parent[where[-1]]) is type(value):
                continue
            parent[where[-1]] = value
            path.write_text(json.dumps(changed))
            tried += 1
            try:
                record = read_fhir(path)
            except MedmmError as err:
                assert err.path == str(path), where
                continue
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{example} {where} = {type(value).__name__}: {type(exc).__name__} escaped")
            assert all(i.source == str(path) for i in record.issues), where
    assert tried > 100


# ---- several files -------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["true", "{not json", "[]", '{"resourceType": "Bundle", "entry": 3}', ""])
def test_a_bad_second_file_drops_only_itself(content, tmp_path):
    # found by the ingest fuzzer: a second FHIR file holding `true` lost the intact record.json too
    record_path = write_json(tmp_path / "record.json", record_bundle())
    bad = tmp_path / "extra.json"
    bad.write_text(content)
    record = read_fhir([bad, record_path])
    assert sorted(n.text for n in record.notes) == ["first note", "second note"]
    assert [(r.time.minute, r.value) for r in record.readings] == [(5, 90.0)]
    (issue,) = [i for i in record.issues if i.source == str(bad)]
    assert issue.kind == "skipped" and issue.message.startswith("file not read: ")
    assert str(bad) in str(issue)


def test_a_folder_with_a_bad_second_file_keeps_the_intact_record(tmp_path):
    folder = tmp_path / "p1"
    folder.mkdir()
    write_json(folder / "record.json", record_bundle())
    (folder / "extra.json").write_text("true")
    study = load_study(folder)
    assert sorted(n.text for n in study.notes) == ["first note", "second note"]
    (warning,) = [w for w in study.warnings if w.source == str(folder / "extra.json")]
    assert "found a bool" in warning.message
    assert [p.path for p in study.provenance if p.kind == "fhir"] == [str(folder / "record.json")]  # only what was read


def test_when_no_file_can_be_read_the_error_names_them(tmp_path):
    paths = [tmp_path / "a.json", tmp_path / "b.ndjson", tmp_path / "c.json"]
    paths[0].write_text("true")
    paths[1].write_text("not json\n")
    paths[2].write_bytes(b"\xff\xfe")
    with pytest.raises(FhirError) as caught:
        read_fhir(paths)
    assert caught.value.path == str(paths[0]) and "found a bool" in str(caught.value)
    assert "no other FHIR file could be read either (b.ndjson, c.json)" in str(caught.value)
    with pytest.raises(FhirError) as alone:
        read_fhir(paths[1])
    assert (alone.value.path, alone.value.where) == (str(paths[1]), "line 1")


def test_a_bad_nested_bundle_skips_that_entry_only(tmp_path):
    bundle = record_bundle()
    bundle["entry"].append({"resource": {"resourceType": "Bundle", "type": "collection", "entry": {"x": 1}}})
    path = write_json(tmp_path / "record.json", bundle)
    record = read_fhir(path)
    assert len(record.notes) == 2
    assert [(i.where, i.kind) for i in record.issues] == [("entry 4", "skipped")]
