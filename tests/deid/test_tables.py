"""Vital-sign tables and the manifest: unknown columns dropped, times shifted, ids replaced."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medmm.deid.tables import ManifestRow, deidentify_vitals, rewrite_manifest


def test_long_table_times_shifted_and_unknown_columns_dropped(tmp_path):
    src = tmp_path / "v.csv"
    src.write_text(
        "time,code,value,unit,mrn,comment\n2020-03-01T10:00:00+01:00,8867-4,80,/min,MRN-1,Zelwegger\n"
        "2020-03-01,8310-5,37.1,Cel,MRN-1,\nsoon,8867-4,81,/min,,\n"
    )
    out = deidentify_vitals(src, tmp_path / "o" / "v.csv", -1)
    assert (tmp_path / "o" / "v.csv").read_text() == (
        "time,code,value,unit\n2020-02-29T10:00:00+01:00,8867-4,80,/min\n2020-02-29,8310-5,37.1,Cel\n,8867-4,81,/min\n"
    )
    assert out.counts == {"column removed": 2, "time shifted": 2}
    assert [i.where for i in out.issues] == ["columns", "column 'time'"]


def test_wide_parquet_table_with_timestamps(tmp_path):
    frame = pd.DataFrame(
        {"Time": pd.to_datetime(["2020-03-01 10:00"], utc=True), "heart_rate [/min]": [80.0], "patient": ["MRN-1"]}
    )
    frame.to_parquet(tmp_path / "v.parquet")
    deidentify_vitals(tmp_path / "v.parquet", tmp_path / "o.parquet", -1)
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert list(out.columns) == ["Time", "heart_rate [/min]"]
    assert out["Time"].iloc[0] == pd.Timestamp("2020-02-29 10:00", tz="UTC")


def test_tables_without_time_are_refused(tmp_path):
    (tmp_path / "labs.csv").write_text("name,value\nZelwegger,1\n")
    assert "no 'time' column" in deidentify_vitals(tmp_path / "labs.csv", tmp_path / "o.csv", -1).refused
    assert not (tmp_path / "o.csv").exists()


def test_manifest_rows_rewritten_and_unknown_patients_dropped(tmp_path: Path):
    src = tmp_path / "manifest.csv"
    src.write_text(
        "patient_id,folder,split,study_time,labels,note\nA1,a1,train,2020-03-01T00:00:00+00:00,sepsis,x\n"
        "B2,b2,test,2020-01-01T00:00:00+00:00,,y\n"
    )
    out = rewrite_manifest(src, tmp_path / "o.csv", {"A1": ManifestRow("PX", "PX", -1)})
    assert (
        tmp_path / "o.csv"
    ).read_text() == "patient_id,folder,split,study_time,labels\nPX,PX,train,2020-02-29T00:00:00+00:00,sepsis\n"
    assert [i.where for i in out.issues] == ["columns", "row 3"]
