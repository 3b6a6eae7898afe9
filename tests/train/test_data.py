"""TextBatcher: one LM row per case (impression or question-answer), with the pool index at the
end of the prompt (of "Impression:" when the prompt is guided) and LM labels only on the target."""

from __future__ import annotations

import pytest
import torch

from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt, impression_text, qa_prompt
from medmm.lm.tokenizer import build_tokenizer
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.train.data import TextBatcher
from medmm.train.targets import CaseText


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def item(k: int | list[int], impression: str, qa: list[tuple[str, str]], *, known: bool = True) -> dict:
    labels = torch.zeros(5)
    labels[k] = 1.0
    return {
        "labels": labels,
        "labels_known": torch.tensor(known),
        "notes_embeddings": torch.full((2, 3, 4), 0.5, dtype=torch.float16),
        "meta": {
            "impression": impression,
            "qa": qa,
            "text": CaseText(impression, (), tuple(DIAGNOSIS_NAMES[i] for i in ([k] if isinstance(k, int) else k)), {}),
        },
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
            asked.add(
                tok.decode([t for t in ids if t not in (tok.pad_token_id, tok.eos_token_id)], skip_special_tokens=True)
            )
    assert len(asked) == 3  # every pair gets its turn


def test_value_questions_are_drawn_beside_the_diagnosis_questions(tok):
    from medmm.grounding.record import value_pairs

    readings = {"heart_rate": [112.4, "/min"]}
    case = item(4, "sepsis.", [("Is there sepsis?", "Yes, sepsis is likely.")])
    case["meta"]["value_qa"] = value_pairs(readings, ("heart_rate", "weight"))
    batcher = TextBatcher(tok, qa_fraction=1.0, seed=3, max_length=96)
    seen = {}
    for _ in range(30):
        batch = batcher([case])
        seen[row_text(tok, batch, 0)] = batch
    heart = "Record, last vital signs: heart rate 112 /min. Question: What is the heart rate? Answer:"
    assert set(seen) == {
        f"{qa_prompt('Is there sepsis?')} Yes, sepsis is likely.",
        f"{heart} Heart rate 112 /min (last reading).",
        "Record, last vital signs: heart rate 112 /min. Question: What is the patient's weight? Answer: No weight reading in the window.",
    }
    batch = seen[f"{heart} Heart rate 112 /min (last reading)."]
    check_row(batch, 0, tok, heart, "Heart rate 112 /min (last reading).")  # LM labels on the answer only
    assert batch["diagnosis_rows"].tolist() == [False]


def test_long_rows_are_cut_but_keep_the_prompt(tok):
    batch = TextBatcher(tok, max_length=6)([item(0, "pneumonia (focal consolidation; fever and tachypnoea).", [])])
    n_prompt = len(tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)) + 1
    assert batch["input_ids"].shape == (1, 6) and n_prompt < 6
    assert int(batch["pool_index"][0]) == n_prompt - 1
    assert (batch["lm_labels"][0, :n_prompt] == -100).all() and (batch["lm_labels"][0, n_prompt:] != -100).all()


def row_text(tok, batch: dict, i: int) -> str:
    """Row i's text without BOS, EOS and padding."""
    ids = [t for t, m in zip(batch["input_ids"][i].tolist(), batch["attention_mask"][i].tolist()) if m]
    return tok.decode(ids, skip_special_tokens=True)


def guide_of(tok, batch: dict, i: int) -> list[str]:
    """The diagnoses row i's guide names, in its order."""
    display = {n.replace("_", " "): n for n in DIAGNOSIS_NAMES}
    named = row_text(tok, batch, i).split("[suspected: ", 1)[1].split("]", 1)[0]
    return [] if named == "none" else [display[x] for x in named.split("; ")]


def check_guided_row(batch: dict, i: int, tok, names: set[str], labels: list[str]) -> None:
    """Row i is BOS, a guided prompt naming the set `names`, then the impression of `labels` naming the guide's
    diagnoses in its reverse order, EOS; pooled at the end of "Impression:"."""
    order = guide_of(tok, batch, i)
    assert set(order) == set(names) and len(order) == len(names)
    prompt, target = guided_prompt(order), impression_text(labels, {}, order=order[::-1])
    ids, labels = expected_row(tok, prompt, target)
    n, width = len(ids), batch["input_ids"].shape[1]
    assert batch["input_ids"][i].tolist() == ids + [tok.pad_token_id] * (width - n)
    assert batch["lm_labels"][i].tolist() == labels + [-100] * (width - n)  # the guide is never a target
    assert row_text(tok, batch, i) == f"{prompt} {target}"
    plain = [tok.bos_token_id] + tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)
    assert int(batch["pool_index"][i]) == len(plain) - 1
    assert batch["input_ids"][i, : len(plain)].tolist() == plain


def test_guided_rows_name_exactly_the_true_diagnoses_without_noise(tok):
    items = [
        item([0, 4], "pneumonia, sepsis.", [("Is there sepsis?", "Yes, sepsis is likely.")]),
        item([], "no acute cardiopulmonary diagnosis.", []),
        item([1], "no acute cardiopulmonary diagnosis.", [], known=False),  # unknown labels: no guide
    ]
    batch = TextBatcher(tok, max_length=64, guide=True, guide_drop=0.0, guide_add=0.0)(items)
    check_guided_row(batch, 0, tok, {"pneumonia", "sepsis"}, ["pneumonia", "sepsis"])
    check_guided_row(batch, 1, tok, set(), [])
    assert row_text(tok, batch, 1).startswith("Impression: [suspected: none]")
    check_row(batch, 2, tok, IMPRESSION_PROMPT, "no acute cardiopulmonary diagnosis.")
    assert batch["diagnosis_rows"].tolist() == [True, True, True]


def test_guided_rows_with_every_true_diagnosis_dropped_say_none(tok):
    items = [item([1, 2], "heart failure, pleural effusion.", []), item([3], "pneumothorax.", [])]
    batch = TextBatcher(tok, max_length=64, guide=True, guide_drop=1.0, guide_add=0.0)(items)
    check_guided_row(batch, 0, tok, set(), ["heart_failure", "pleural_effusion"])
    check_guided_row(batch, 1, tok, set(), ["pneumothorax"])
    batch = TextBatcher(tok, max_length=64, guide=True, guide_drop=1.0, guide_add=1.0)(items)
    check_guided_row(
        batch, 0, tok, {"pneumonia", "pneumothorax", "sepsis"}, ["heart_failure", "pleural_effusion"]
    )  # every false one added


def test_question_rows_are_unchanged_by_the_guide(tok):
    items = [item([1], "heart failure.", [("Is there heart failure?", "Yes, heart failure is likely.")])]
    batch = TextBatcher(tok, qa_fraction=1.0, max_length=64, guide=True, guide_drop=0.0, guide_add=0.0)(items)
    check_row(batch, 0, tok, qa_prompt("Is there heart failure?"), "Yes, heart failure is likely.")
    assert batch["diagnosis_rows"].tolist() == [False]


def test_guide_noise_follows_the_seed_and_its_rates(tok):
    items = [item([0, 1], "pneumonia, heart failure.", []) for _ in range(4)]

    def texts(seed: int, calls: int) -> list[str]:
        batcher = TextBatcher(tok, seed=seed, guide=True, guide_drop=0.3, guide_add=0.2)
        return [row_text(tok, batcher(items), i) for _ in range(calls) for i in range(len(items))]

    assert texts(3, 5) == texts(3, 5)
    assert texts(3, 5) != texts(4, 5)
    named = {n: 0 for n in DIAGNOSIS_NAMES}
    rows = texts(5, 100)  # 400 guided rows
    display = {n: n.replace("_", " ") for n in DIAGNOSIS_NAMES}
    for text in rows:
        guide = text.split("[suspected: ", 1)[1].split("]", 1)[0]
        for n in DIAGNOSIS_NAMES:
            named[n] += display[n] in guide.split("; ")
    assert (
        0.62 < named["pneumonia"] / len(rows) < 0.78 and 0.62 < named["heart_failure"] / len(rows) < 0.78
    )  # kept: 1 - 0.3
    for n in ("pleural_effusion", "pneumothorax", "sepsis"):
        assert 0.13 < named[n] / len(rows) < 0.27  # added: 0.2
