"""TextBatcher: one LM row per case (impression or question-answer), with the pool index at the
end of the prompt and LM labels only on the target."""

from __future__ import annotations

import pytest
import torch

from medmm.backbone_tokenizer import build_tokenizer
from medmm.prompts import IMPRESSION_PROMPT, qa_prompt
from medmm.train.data import TextBatcher


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def item(k: int, impression: str, qa: list[tuple[str, str]]) -> dict:
    labels = torch.zeros(5)
    labels[k] = 1.0
    return {
        "labels": labels,
        "labels_known": torch.tensor(True),
        "notes_embeddings": torch.full((2, 3, 4), 0.5, dtype=torch.float16),
        "meta": {"impression": impression, "qa": qa},
    }


def expected_row(tok, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(ids, labels) of one row: BOS, prompt, " " + target, EOS; labels -100 on BOS and prompt."""
    p = [tok.bos_token_id] + tok.encode(prompt, add_special_tokens=False)
    t = tok.encode(" " + target, add_special_tokens=False) + [tok.eos_token_id]
    return p + t, [-100] * len(p) + t


def check_row(batch: dict, i: int, tok, prompt: str, target: str) -> None:
    ids, labels = expected_row(tok, prompt, target)
    n, width = len(ids), batch["input_ids"].shape[1]
    assert batch["input_ids"][i].tolist() == ids + [tok.pad_token_id] * (width - n)
    assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
    assert batch["lm_labels"][i].tolist() == labels + [-100] * (width - n)
    n_prompt = len(tok.encode(prompt, add_special_tokens=False)) + 1
    assert int(batch["pool_index"][i]) == n_prompt - 1  # the last prompt token
    assert batch["input_ids"][i, n_prompt].item() == ids[n_prompt]  # the target starts right after it


def test_impression_rows_when_qa_fraction_is_zero(tok):
    items = [
        item(0, "pneumonia (focal consolidation).", [("Is there sepsis?", "No, sepsis is unlikely.")]),
        item(4, "sepsis.", []),
    ]
    batch = TextBatcher(tok, qa_fraction=0.0, max_length=64)(items)
    check_row(batch, 0, tok, IMPRESSION_PROMPT, "pneumonia (focal consolidation).")
    check_row(batch, 1, tok, IMPRESSION_PROMPT, "sepsis.")
    assert batch["diagnosis_rows"].tolist() == [True, True]
    assert torch.equal(batch["labels"], torch.stack([items[0]["labels"], items[1]["labels"]]))
    assert batch["notes_embeddings"].dtype == torch.float32 and batch["notes_embeddings"].shape == (2, 2, 3, 4)
    assert float(batch["notes_embeddings"][1, 1, 2, 3]) == 0.5


def test_question_rows_when_qa_fraction_is_one(tok):
    items = [
        item(1, "heart failure.", [("Is there heart failure?", "Yes, heart failure is likely.")]),
        item(2, "pleural effusion.", []),  # no pairs: still an impression row
    ]
    batch = TextBatcher(tok, qa_fraction=1.0, max_length=64)(items)
    check_row(batch, 0, tok, qa_prompt("Is there heart failure?"), "Yes, heart failure is likely.")
    check_row(batch, 1, tok, IMPRESSION_PROMPT, "pleural effusion.")
    assert batch["diagnosis_rows"].tolist() == [False, True]  # the diagnosis loss reads impression rows only


def test_choices_follow_the_seed_and_the_fraction(tok):
    pairs = [(f"Is there q{i}?", f"a{i}.") for i in range(3)]
    items = [item(0, "pneumonia.", pairs) for _ in range(4)]

    def prompts(seed: int, fraction: float, calls: int) -> list[list[int]]:
        batcher = TextBatcher(tok, qa_fraction=fraction, seed=seed)
        return [batcher(items)["input_ids"].tolist() for _ in range(calls)]

    assert prompts(7, 0.5, 3) == prompts(7, 0.5, 3)
    assert prompts(7, 0.5, 3) != prompts(8, 0.5, 3)
    batcher = TextBatcher(tok, qa_fraction=0.5, seed=1)
    rows = torch.cat([batcher(items)["diagnosis_rows"] for _ in range(100)])  # 400 rows
    assert 0.4 < 1.0 - rows.float().mean().item() < 0.6
    asked = set()
    batcher = TextBatcher(tok, qa_fraction=1.0, seed=2)
    for _ in range(20):
        for ids in batcher(items)["input_ids"].tolist():
            asked.add(tok.decode([t for t in ids if t not in (tok.pad_token_id, tok.eos_token_id)], skip_special_tokens=True))
    assert len(asked) == 3  # every pair gets its turn


def test_long_rows_are_cut_but_keep_the_prompt(tok):
    batch = TextBatcher(tok, max_length=6)([item(0, "pneumonia (focal consolidation; fever and tachypnoea).", [])])
    n_prompt = len(tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)) + 1
    assert batch["input_ids"].shape == (1, 6) and n_prompt < 6
    assert int(batch["pool_index"][0]) == n_prompt - 1
    assert (batch["lm_labels"][0, :n_prompt] == -100).all() and (batch["lm_labels"][0, n_prompt:] != -100).all()
