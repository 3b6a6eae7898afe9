"""The `medmm` command line: inspect (incl. the pydicom corpus sweep), synth, errors."""

import json
import subprocess
import sys
import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_files

from medmm.cli import main

MEDMM = [sys.executable, "-c", "from medmm.cli import main; main()"]


def _pydicom_decodes(path: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(path).pixel_array
        return True
    except Exception:
        return False


@pytest.mark.slow
def test_inspect_json_sweep_over_pydicom_corpus():
    files = sorted(get_testdata_files())
    proc = subprocess.run(MEDMM + ["inspect", "--json", *files], capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [line["path"] for line in lines] == files  # one object per input, in order, nothing crashed
    ok = typed = other = 0
    for path, line in zip(files, lines):
        if _pydicom_decodes(path):
            assert line["status"] == "ok", (path, line)
        if line["status"] == "ok":
            ok += 1
        elif line["error_type"] in {"DicomError", "UnsupportedDicomError", "InputError", "FhirError", "VitalsError"}:
            typed += 1
        else:
            other += 1
    print(f"corpus sweep: {len(files)} files, ok {ok}, typed errors {typed}, other {other}")
    assert other == 0
    assert proc.returncode == (1 if typed else 0)
    assert "Traceback" not in proc.stderr


def test_inspect_patient_folder_json(small_cohort, capsys):
    folder = sorted(p for p in small_cohort.iterdir() if p.is_dir() and (p / "images").exists())[0]
    main(["inspect", "--json", str(folder)])
    info = json.loads(capsys.readouterr().out.strip())
    assert info["path"] == str(folder) and info["status"] == "ok"
    truth = json.loads((folder / "truth.json").read_text())
    assert {lab["name"] for lab in info["labels"] if lab["name"]} == set(truth["labels"])
    assert info["demographics"]["sex"] == truth["demographics"]["sex"]
    assert "image" in info["modalities"] and info["series"][0]["shape"]
    assert info["study_time_source"] == "image acquisition (latest)"


def test_inspect_text_and_error_exit(tmp_path, small_cohort, capsys):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"DICM" * 10)
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", str(bad), str(sorted(p for p in small_cohort.iterdir() if p.is_dir())[0])])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "error: DicomError" in out and "modalities:" in out


def test_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(MEDMM + ["synth", "--out", str(tmp_path), "--patients", "0"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (tmp_path / "keep.txt").write_text("not a cohort")
    proc = subprocess.run(MEDMM + ["synth", "--out", str(tmp_path), "--patients", "2"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ConfigError")


def test_help_lists_commands():
    proc = subprocess.run(MEDMM + ["--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in (
        "synth",
        "inspect",
        "train",
        "demo",
        "predict",
        "explain",
        "evaluate",
        "audit",
        "batch",
        "serve",
        "deid",
    ):
        assert command in proc.stdout


def test_predict_writes_one_audit_event_per_prediction(tmp_path, small_cohort):
    import sqlite3

    from medmm.trail import AuditStore, file_digest
    from tests.batch.helpers import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "model")
    patients = sorted(p for p in small_cohort.iterdir() if p.is_dir())[:2]
    store = tmp_path / "trail" / "audit.sqlite"
    proc = subprocess.run(
        MEDMM
        + ["predict", "--model", str(model), "--json", "--no-impression", "--trail", str(store), *map(str, patients)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["ok", "ok"]
    events = AuditStore(store).events(action="predict", source="cli")
    assert len(events) == 2
    bundle = next(p for p in patients[0].iterdir() if p.suffix == ".json")
    assert file_digest(bundle).sha256 in {d.sha256 for d in events[0].inputs} | {d.sha256 for d in events[1].inputs}
    raw = store.read_bytes() + "\n".join(sqlite3.connect(store).iterdump()).encode()
    assert patients[0].name.encode() not in raw and patients[1].name.encode() not in raw


def test_debug_is_accepted_after_the_command(tmp_path):
    from medmm.cli import global_flags_first

    assert global_flags_first(["predict", "x", "--debug", "--json"]) == ["--debug", "predict", "x", "--json"]
    assert global_flags_first(["-v", "synth", "--debug", "--", "--debug"]) == [
        "-v",
        "--debug",
        "synth",
        "--",
        "--debug",
    ]
    (tmp_path / "keep.txt").write_text("not a cohort")
    proc = subprocess.run(
        MEDMM + ["synth", "--out", str(tmp_path), "--patients", "2", "--debug"], capture_output=True, text=True
    )
    assert (
        proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    )  # the traceback, as asked
