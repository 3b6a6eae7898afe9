"""The embedded tokenizer: deterministic, byte-level (every string round trips), saved and reloaded."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from medmm.codes import VITAL_SIGNS
from medmm.lm.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    VOCAB_SIZE,
    build_tokenizer,
    corpus_lines,
)
from medmm.synth.diagnoses import DIAGNOSES

SAMPLE = "Impression: right lower lobe pneumonia. SpO2 91 % on room air; denies fever. Température 38,5 °C ✓"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _digest(tok) -> str:
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()


def test_two_builds_are_identical(tokenizer):
    again = build_tokenizer()
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again(SAMPLE).input_ids == tokenizer(SAMPLE).input_ids
    assert _digest(again) == _digest(tokenizer)  # merges, pre-tokenizer, decoder, everything


def test_build_in_another_process_is_identical(tokenizer):
    code = (
        "import hashlib; from medmm.lm.tokenizer import build_tokenizer; "
        "print(hashlib.sha256(build_tokenizer().backend_tokenizer.to_str().encode()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == _digest(tokenizer)


def test_vocabulary_size_and_special_ids(tokenizer):
    assert len(tokenizer) == VOCAB_SIZE
    assert 2000 <= VOCAB_SIZE <= 4096
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        PAD_ID,
        BOS_ID,
        EOS_ID,
        UNK_ID,
    )
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]


def test_plain_format_starts_with_bos_only(tokenizer):
    ids = tokenizer("no cough").input_ids
    assert ids[0] == BOS_ID
    assert EOS_ID not in ids and PAD_ID not in ids
    assert tokenizer("no cough", add_special_tokens=False).input_ids == ids[1:]


def test_clinical_words_are_single_tokens_and_digits_split(tokenizer):
    for word in ("Ġpneumonia", "Ġpneumothorax", "Ġeffusion", "Ġconsolidation", "Impression"):
        assert word in tokenizer.get_vocab()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("heart rate 112 /min", add_special_tokens=False).input_ids)
    assert tokens == ["heart", "Ġrate", "Ġ", "1", "1", "2", "Ġ/", "min"]


def test_corpus_covers_the_clinical_vocabulary():
    text = "\n".join(corpus_lines()).lower()
    for d in DIAGNOSES:
        assert d.display.lower() in text and d.snomed in text and d.icd10.lower() in text
    for v in VITAL_SIGNS:
        assert v.loinc[0] in text and v.unit.lower() in text
    for phrase in ("denies", "no pneumothorax", "cannot exclude", "history of", "impression:", "question:"):
        assert phrase in text
    assert resources.files("medmm.assets").joinpath("clinical_corpus.txt").is_file()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_round_trips_without_unknowns(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert UNK_ID not in ids
    assert tokenizer.decode(ids) == text


def test_emoji_and_controls_round_trip(tokenizer):
    text = "\x00\t\r\n 😀 𝔘 日本語 \u200b e\u0301"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert len(ids) >= len(text.encode("utf-8")) // 4  # bytes, merged at most a few at a time


def test_save_and_reload_from_folder(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded(SAMPLE).input_ids == tokenizer(SAMPLE).input_ids
    assert loaded.decode(loaded(SAMPLE, add_special_tokens=False).input_ids) == SAMPLE
    assert (loaded.pad_token, loaded.bos_token, loaded.eos_token, loaded.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert loaded.model_max_length == tokenizer.model_max_length == 512
