"""Cases and batches (medmm.cases: the cached dataset, collate) and LM rows (medmm.lm.text.lm_inputs), with
every expected id, label and index written out by hand."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from medmm.cases import CohortDataset, collate, content_hash, to_device
from medmm.errors import ConfigError, MedmmError
from medmm.io.cohort import Cohort
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt
from medmm.lm.text import lm_inputs
from medmm.lm.tokenizer import build_tokenizer

VOCAB = {
    "<pad>": 0,
    "<s>": 1,
    "</s>": 2,
    "<unk>": 3,
    "Impression:": 4,
    "Question:": 5,
    "effusion?": 6,
    "Answer:": 7,
    "pneumonia": 8,
    ".": 9,
    "yes": 10,
}


def word_tokenizer(*, bos: bool = True) -> PreTrainedTokenizerFast:
    """Whitespace-separated words, id = VOCAB[word]: every id below is known without running a tokenizer."""
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = dict(eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>" if bos else None, **specials)


def test_lm_inputs_by_hand():
    out = lm_inputs(
        word_tokenizer(), ["Impression:", "Question: effusion? Answer:", "Impression:"], ["pneumonia .", None, "yes"]
    )
    assert out.input_ids.tolist() == [
        [1, 4, 8, 9, 2],  # BOS, prompt, " pneumonia .", EOS
        [1, 5, 6, 7, 0],  # BOS, prompt only, then padding on the right
        [1, 4, 10, 2, 0],
    ]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    assert out.pool_index.tolist() == [1, 3, 1]  # the last prompt token of each row
    assert out.labels.tolist() == [
        [-100, -100, 8, 9, 2],  # BOS and prompt are never targets; EOS is
        [-100, -100, -100, -100, -100],  # no target: no LM loss from this row
        [-100, -100, 10, 2, -100],  # padding is never a target
    ]


def test_lm_inputs_truncation_keeps_the_pool_index_inside_the_row():
    out = lm_inputs(
        word_tokenizer(), ["Impression:", "Question: effusion? Answer:"], ["pneumonia .", "yes"], max_length=3
    )
    assert out.input_ids.tolist() == [[1, 4, 8], [1, 5, 6]]
    assert out.labels.tolist() == [[-100, -100, 8], [-100, -100, -100]]
    assert out.pool_index.tolist() == [1, 2]  # a prompt longer than max_length is pooled at its cut end
    assert out.attention_mask.tolist() == [[1, 1, 1], [1, 1, 1]]


def test_lm_inputs_without_a_bos_token():
    out = lm_inputs(word_tokenizer(bos=False), ["Impression:", "Question: effusion? Answer:"], ["yes", None])
    assert out.input_ids.tolist() == [[4, 10, 2], [5, 6, 7]]
    assert out.pool_index.tolist() == [0, 2]
    assert out.labels.tolist() == [[-100, 10, 2], [-100, -100, -100]]


def test_lm_inputs_refuses_what_cannot_be_batched():
    with pytest.raises(ConfigError, match="as many targets"):
        lm_inputs(word_tokenizer(), ["Impression:"], ["yes", "no"])
    with pytest.raises(ConfigError, match="row 1"):
        lm_inputs(word_tokenizer(bos=False), ["Impression:", ""], [None, None])
    with pytest.raises(ConfigError, match="max_length"):
        lm_inputs(word_tokenizer(), ["Impression:"], [None], max_length=0)


def test_lm_inputs_pool_at_the_end_of_a_prefix_of_the_prompt():
    # row 0: the prompt "Impression: pneumonia ." with prefix "Impression:"; row 1: prefix = whole prompt
    out = lm_inputs(
        word_tokenizer(),
        ["Impression: pneumonia .", "Question: effusion? Answer:"],
        ["yes", None],
        pool_prefixes=["Impression:", "Question: effusion? Answer:"],
    )
    assert out.input_ids.tolist() == [[1, 4, 8, 9, 10, 2], [1, 5, 6, 7, 0, 0]]
    assert out.pool_index.tolist() == [1, 3]  # "Impression:" of row 0; the prompt's end in row 1
    assert out.labels.tolist() == [
        [-100, -100, -100, -100, 10, 2],
        [-100] * 6,
    ]  # the text after the prefix is never a target
    plain = lm_inputs(word_tokenizer(), ["Impression: pneumonia .", "Question: effusion? Answer:"], ["yes", None])
    assert torch.equal(plain.input_ids, out.input_ids) and torch.equal(plain.labels, out.labels)
    assert plain.pool_index.tolist() == [3, 3]


def test_lm_inputs_refuses_a_pool_prefix_that_does_not_begin_the_prompt():
    with pytest.raises(ConfigError, match="does not begin the prompt") as err:
        lm_inputs(
            word_tokenizer(),
            ["Impression:", "Impression: pneumonia"],
            [None, None],
            pool_prefixes=["Impression:", "pneumonia"],
        )
    assert err.value.where == "lm inputs row 1"
    with pytest.raises(ConfigError, match="as many pool prefixes"):
        lm_inputs(word_tokenizer(), ["Impression:"], [None], pool_prefixes=[])


def test_the_guided_prompt_begins_with_the_plain_prompt_in_the_embedded_tokenizer():
    tok = build_tokenizer()
    prompt = guided_prompt(["sepsis", "pneumonia"])
    assert prompt == "Impression: [suspected: sepsis; pneumonia]"
    plain = [tok.bos_token_id] + tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)
    guided = [tok.bos_token_id] + tok.encode(prompt, add_special_tokens=False)
    assert guided[: len(plain)] == plain and len(guided) > len(plain)
    out = lm_inputs(tok, [prompt], ["sepsis."], pool_prefixes=[IMPRESSION_PROMPT])
    assert int(out.pool_index[0]) == len(plain) - 1
    assert (out.labels[0, : len(guided)] == -100).all()  # the guide is never a target
    assert out.labels[0, len(guided) :].tolist() == tok.encode(" sepsis.", add_special_tokens=False) + [
        tok.eos_token_id
    ]


def item(seed: int, study_id: str) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": torch.from_numpy(rng.random((1, 4, 4), dtype=np.float32)),
        "image_present": torch.tensor(seed % 2 == 0),
        "notes_ids": torch.from_numpy(rng.integers(0, 9, size=(2, 3))),
        "meta": {"study_id": study_id},
    }


def test_collate_stacks_tensors_and_lists_meta():
    items = [item(0, "a"), item(1, "b"), item(2, "c")]
    batch = collate(items)
    assert set(batch) == {"image", "image_present", "notes_ids", "meta"}
    np.testing.assert_array_equal(batch["image"].numpy(), np.stack([it["image"].numpy() for it in items]))
    assert batch["image"].shape == (3, 1, 4, 4) and batch["image"].dtype == torch.float32
    assert batch["image_present"].tolist() == [True, False, True]
    assert batch["notes_ids"].dtype == torch.int64 and batch["notes_ids"][1].tolist() == items[1]["notes_ids"].tolist()
    assert batch["meta"] == [{"study_id": "a"}, {"study_id": "b"}, {"study_id": "c"}]


def test_collate_names_the_key_that_does_not_fit():
    odd = item(1, "b")
    odd["image"] = torch.zeros(1, 5, 5)
    with pytest.raises(ConfigError, match="item 1 has \\(1, 5, 5\\)") as info:
        collate([item(0, "a"), odd])
    assert info.value.where == "batch key 'image'"
    short = item(1, "b")
    del short["notes_ids"]
    with pytest.raises(ConfigError, match="notes_ids"):
        collate([item(0, "a"), short])
    loose = item(0, "a")
    loose["image"] = loose["image"].numpy()
    with pytest.raises(ConfigError, match="expected a tensor"):
        collate([loose])
    with pytest.raises(ConfigError, match="empty"):
        collate([])


def test_to_device_moves_tensors_only():
    batch = collate([item(0, "a"), item(1, "b")])
    moved = to_device(batch, "meta")
    assert all(moved[k].device.type == "meta" for k in ("image", "image_present", "notes_ids"))
    assert moved["meta"] is batch["meta"]


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
