import shutil

import pandas as pd
import pytest
import torch

from medmm.errors import CohortError, MedmmError
from medmm.io.cohort import Cohort, CohortDataset, content_hash


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


def test_content_hash_changes_with_any_byte(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"abc")
    first = content_hash(tmp_path)
    assert content_hash(tmp_path) == first
    (tmp_path / "x.txt").write_bytes(b"abd")
    assert content_hash(tmp_path) != first
    assert content_hash(tmp_path, "salt") != content_hash(tmp_path)


def test_cached_dataset_returns_identical_tensors_and_skips_decoding(small_cohort, tmp_path):
    calls = []

    def preprocess(study):
        calls.append(study.study_id)
        return {
            "n_notes": torch.tensor(len(study.notes)),
            "has_image": torch.tensor(bool(study.images)),
            "meta": {"id": study.study_id},
        }

    cohort = Cohort.open(small_cohort)
    dataset = CohortDataset(cohort, preprocess, tmp_path / "cache", preprocess_key="v1")
    first = [dataset[i] for i in range(len(dataset))]
    assert len(calls) == len(cohort)
    second = [dataset[i] for i in range(len(dataset))]
    assert len(calls) == len(cohort)  # served from the cache: no study was read again
    for a, b in zip(first, second):
        assert torch.equal(a["n_notes"], b["n_notes"]) and torch.equal(a["has_image"], b["has_image"])
        assert a["meta"] == b["meta"]
    # other settings: a different key misses the cache
    other = CohortDataset(cohort, preprocess, tmp_path / "cache", preprocess_key="v2")
    other[0]
    assert len(calls) == len(cohort) + 1
    assert not list((tmp_path / "cache").glob("*.tmp"))  # no half-written entry left


def test_unreadable_patient_raises_medmm_error(small_cohort, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(small_cohort, copy)
    cohort = Cohort.open(copy)
    shutil.rmtree(cohort.entries[0].folder)
    dataset = CohortDataset(cohort, lambda s: {"x": torch.zeros(1)}, tmp_path / "cache")
    with pytest.raises(MedmmError):
        dataset[0]
