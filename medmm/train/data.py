"""Training data: a cohort split preprocessed once (disk cache), held in memory, batched with text.

With a frozen notes encoder the note token embeddings are computed once here, so training
never runs the (large) text encoder again; with a cache folder they are also kept on disk,
keyed by the encoder's weights and each case's note tokens, so the next training stage and the
evaluation read them instead of encoding again.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from medmm.data import collate, lm_inputs
from medmm.errors import MedmmError
from medmm.grounding.record import signs_of, value_pairs
from medmm.io.cohort import Cohort, CohortDataset
from medmm.prompts import IMPRESSION_PROMPT, qa_prompt
from medmm.train.targets import case_text, guided_pair, load_truth

log = logging.getLogger(__name__)


class CaseSet(torch.utils.data.Dataset):
    """Preprocessed cases of one cohort (split) in memory, each with its text targets."""

    def __init__(
        self,
        cohort: Cohort,
        preprocessor,
        *,
        cache_dir: str | Path | None = None,
        note_encoder=None,
        progress: bool = True,
        desc: str = "cases",
    ):
        dataset = CohortDataset(
            cohort,
            preprocessor,
            cache_dir,
            preprocessor.key,
            load_kwargs=preprocessor.grid_kwargs,
        )
        self.items: list[dict] = []
        self.failed: list[tuple[str, str, str]] = []  # (patient_id, error type, message)
        names = preprocessor.task.label_names  # the label vector's entries
        displays = preprocessor.task.displays
        signs = signs_of(preprocessor.task.channel_names)  # the vital signs a value question may ask about
        for i in tqdm(range(len(dataset)), desc=f"preprocess {desc}", disable=not progress, leave=False):
            entry = cohort.entries[i]
            try:
                item = dataset[i]
            except MedmmError as err:
                self.failed.append((entry.patient_id, type(err).__name__, str(err)))
                continue
            labels = [names[k] for k in item["labels"].nonzero().flatten().tolist()]
            text = case_text(labels, set(item["meta"]["modalities"]), load_truth(entry.folder), displays)
            item["meta"] = {
                **item["meta"],
                "patient_id": entry.patient_id,
                "key": entry.key,
                "text": text,
                "impression": text.impression,
                "qa": [(q.question, q.answer) for q in text.qa],
                "value_qa": value_pairs(item["meta"].get("vitals_last") or {}, signs),
            }
            self.items.append(item)
        if self.failed:
            log.warning(
                "%d case(s) could not be read and are left out (first: %s)", len(self.failed), self.failed[0][1]
            )
        if note_encoder is not None and getattr(note_encoder.config, "frozen", False):
            store = Path(cache_dir) / f"notes-{encoder_fingerprint(note_encoder)}.safetensors" if cache_dir else None
            self._embed_notes(note_encoder, progress, store)

    @torch.no_grad()
    def _embed_notes(self, encoder, progress: bool, store: Path | None, chunk: int = 32) -> None:
        known = load_file(str(store)) if store is not None and store.is_file() else {}
        keys = [_notes_key(it) for it in self.items]
        todo = [it for it, key in zip(self.items, keys) if key not in known]
        for start in tqdm(
            range(0, len(todo), chunk), desc="embed notes", disable=not progress or not todo, leave=False
        ):
            items = todo[start : start + chunk]
            ids = torch.stack([it["notes_ids"] for it in items])  # (b, M, L)
            attn = torch.stack([_note_mask(it) for it in items])  # (b, M, L)
            width = max(int(attn.sum(dim=-1).max()), 1)  # padding past the longest note is not encoded
            tokens, _ = encoder.embed_notes(ids[..., :width], attn[..., :width])  # (b, M, width, D)
            for it, emb in zip(items, tokens):
                own = max(int(_note_mask(it).sum(dim=-1).max()), 1)
                known[_notes_key(it)] = emb[:, :own].to(torch.float16).contiguous()  # (M, own, D): no padding on disk
        for it, key in zip(self.items, keys):
            emb = known[key]  # (M, own, D)
            it["notes_embeddings"] = torch.nn.functional.pad(
                emb, (0, 0, 0, it["notes_ids"].shape[-1] - emb.shape[1])
            )  # (M, L, D)
        if store is not None and todo:
            tmp = store.with_name(store.name + ".tmp")
            save_file(known, str(tmp))
            tmp.replace(store)  # atomic: a half-written store is never read

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _note_mask(item: dict) -> torch.Tensor:
    return item["notes_attention"] * item["notes_present"][:, None]  # (M, L)


def _notes_key(item: dict) -> str:
    """The identity of a case's encoder input: its note tokens under their mask."""
    ids = (item["notes_ids"] * _note_mask(item)).to(torch.int64).contiguous()  # (M, L)
    return hashlib.sha256(ids.numpy().tobytes() + str(tuple(ids.shape)).encode()).hexdigest()[:32]


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over a module's parameter names, shapes and values."""
    h = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


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
