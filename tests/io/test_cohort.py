import shutil

import pandas as pd
import pytest

from medmm.errors import CohortError
from medmm.io.cohort import Cohort


def test_open_reads_manifest_and_splits(small_cohort):
    cohort = Cohort.open(small_cohort)
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str)
    assert cohort.patient_ids == manifest["patient_id"].tolist()
    for split in ("train", "val", "test"):
        assert cohort.split(split).patient_ids == manifest.loc[manifest["split"] == split, "patient_id"].tolist()
    assert len(cohort.select(cohort.patient_ids[:3])) == 3


def test_iteration_is_lazy_and_safe(small_cohort, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(small_cohort, copy)
    cohort = Cohort.open(copy)
    victim = cohort.entries[1].folder
    shutil.rmtree(victim)
    results = list(cohort.iter_safe())
    assert len(results) == len(cohort)
    bad = [r for r in results if r[2] is not None]
    assert [r[0].patient_id for r in bad] == [cohort.entries[1].patient_id]
    assert isinstance(bad[0][2], CohortError)


def test_manifest_errors_are_typed(tmp_path):
    (tmp_path / "manifest.csv").write_text("patient_id,split\nA,train\n")
    with pytest.raises(CohortError, match="folder"):
        Cohort.open(tmp_path)
    (tmp_path / "manifest.csv").write_text("patient_id,folder,study_time\nA,A,yesterday\n")
    with pytest.raises(CohortError, match="ISO 8601"):
        Cohort.open(tmp_path)
    with pytest.raises(CohortError):
        Cohort.open(tmp_path / "missing")


def test_folder_without_manifest_is_one_patient_per_subfolder(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
    assert Cohort.open(tmp_path).patient_ids == ["a", "b"]
