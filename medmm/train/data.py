"""Training text: each case's targets (impression, diagnosis and value questions) and the batcher
that turns cases into LM rows. The cases themselves are medmm.cases.CaseSet."""

from __future__ import annotations

import random

import torch

from medmm.cases import CaseSet, collate
from medmm.grounding.record import signs_of, value_pairs
from medmm.lm.prompts import IMPRESSION_PROMPT, qa_prompt
from medmm.lm.text import lm_inputs
from medmm.train.targets import case_text, guided_pair, load_truth


def with_text_targets(cases: CaseSet, task) -> CaseSet:
    """`cases`, each case's meta given its training text (in place): "text" (medmm.train.targets.CaseText),
    "impression", "qa" (diagnosis questions) and "value_qa" (value questions about its last vital signs)."""
    names = task.label_names  # the label vector's entries
    signs = signs_of(task.channel_names)  # the vital signs a value question may ask about
    for item, entry in zip(cases.items, cases.entries):
        labels = [names[k] for k in item["labels"].nonzero().flatten().tolist()]
        text = case_text(labels, set(item["meta"]["modalities"]), load_truth(entry.folder), task.displays)
        item["meta"] = {
            **item["meta"],
            "text": text,
            "impression": text.impression,
            "qa": [(q.question, q.answer) for q in text.qa],
            "value_qa": value_pairs(item["meta"].get("vitals_last") or {}, signs),
        }
    return cases


class TextBatcher:
    """Collate function: tensors stacked, plus one LM row per case (impression, or a QA pair).

    A QA row is drawn from the case's diagnosis questions (meta "qa") and its value questions
    (meta "value_qa": the record line, then a question about a vital sign's value; see
    medmm.grounding.record), all equally likely.

    With `guide`, an impression row of a case with known labels has the guided prompt naming its
    true diagnoses, each dropped with chance `guide_drop`, plus each false one with chance
    `guide_add`; the diagnosis head still pools at the end of "Impression:".
    """

    def __init__(
        self,
        tokenizer,
        *,
        qa_fraction: float = 0.0,
        seed: int = 0,
        max_length: int = 128,
        guide: bool = False,
        guide_drop: float = 0.1,
        guide_add: float = 0.05,
    ):
        self.tokenizer = tokenizer
        self.qa_fraction = qa_fraction
        self.rng = random.Random(seed)
        self.max_length = max_length
        self.guide = guide
        self.guide_drop = guide_drop
        self.guide_add = guide_add

    def _impression_row(self, item: dict) -> tuple[str, str]:
        """(prompt, target) of an impression row: guided (the impression in the guide's order) or plain."""
        meta = item["meta"]
        if not self.guide or not bool(item["labels_known"]):
            return IMPRESSION_PROMPT, meta["impression"]
        return guided_pair(meta["text"], self.rng, self.guide_drop, self.guide_add)

    def __call__(self, items: list[dict]) -> dict:
        batch = collate(items)
        if "notes_embeddings" in batch:
            batch["notes_embeddings"] = batch["notes_embeddings"].float()
        prompts, targets, is_impression = [], [], []
        for it in items:
            meta = it["meta"]
            pairs = [(qa_prompt(q), a) for q, a in meta["qa"]] + [tuple(pair) for pair in meta.get("value_qa", ())]
            if self.qa_fraction > 0 and pairs and self.rng.random() < self.qa_fraction:
                prompt, answer = self.rng.choice(pairs)
                prompts.append(prompt)
                targets.append(answer)
                is_impression.append(False)
            else:
                prompt, target = self._impression_row(it)
                prompts.append(prompt)
                targets.append(target)
                is_impression.append(True)
        # impression rows pool at the end of "Impression:", before any guide; QA rows at their prompt's end
        pools = [IMPRESSION_PROMPT if imp else p for p, imp in zip(prompts, is_impression)]
        lm = lm_inputs(self.tokenizer, prompts, targets, self.max_length, pool_prefixes=pools)
        batch.update(
            input_ids=lm.input_ids, attention_mask=lm.attention_mask, pool_index=lm.pool_index, lm_labels=lm.labels
        )
        batch["diagnosis_rows"] = torch.tensor(is_impression)
        return batch
