"""Cases: a cohort's studies preprocessed (disk cache), held in memory, and stacked into batches.

`CohortDataset` preprocesses one study at a time and caches the tensors as safetensors keyed by
the patient's file contents and the preprocessing settings. `CaseSet` holds a split's cases in
memory; with a frozen notes encoder it also computes the note token embeddings once (kept on
disk keyed by the encoder's weights and each case's note tokens), so neither training nor
evaluation runs the text encoder again. `collate` stacks cases into a batch. Training adds its
text targets on top (medmm.train.data); evaluation and prediction read the cases as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from medmm.errors import ConfigError, MedmmError
from medmm.io.cohort import Cohort
from medmm.records import Study

log = logging.getLogger(__name__)


def content_hash(folder: Path, salt: str = "") -> str:
    """SHA-256 over every file's relative path and bytes under `folder`, plus `salt`."""
    h = hashlib.sha256(salt.encode())
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class CohortDataset(torch.utils.data.Dataset):
    """A torch Dataset over a cohort that caches preprocessed tensors on disk.

    `preprocess(study)` returns a mapping of tensors (and JSON-able extras under "meta").
    Cache entries are safetensors files keyed by the hash of the patient's files and
    `preprocess_key` (a string naming the preprocessing settings), so a changed file or
    changed settings miss the cache and nothing stale is read. Nothing is unpickled.
    """

    def __init__(
        self,
        cohort: Cohort,
        preprocess: Callable[[Study], Mapping[str, object]],
        cache_dir: str | Path | None = None,
        preprocess_key: str = "",
        load_kwargs: Mapping[str, object] | None = None,
    ):
        self.cohort = cohort
        self.load_kwargs = dict(load_kwargs or {})
        self.preprocess = preprocess
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.preprocess_key = preprocess_key
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.cohort)

    def __getitem__(self, index: int) -> dict:
        entry = self.cohort.entries[index]
        if self.cache_dir is None:
            return dict(self.preprocess(self.cohort.load(index, **self.load_kwargs)))
        key = content_hash(
            entry.folder,
            f"{self.preprocess_key}|{entry.patient_id}|{entry.study_time}|{sorted(self.load_kwargs.items())}",
        )
        path = self.cache_dir / f"{key}.safetensors"
        if path.exists():
            tensors = load_file(str(path))
            meta = json.loads((self.cache_dir / f"{key}.json").read_text())
            return {**tensors, "meta": meta}
        item = dict(self.preprocess(self.cohort.load(index, **self.load_kwargs)))
        tensors = {k: v.contiguous() for k, v in item.items() if isinstance(v, torch.Tensor)}
        meta = item.get("meta", {})
        tmp = path.with_suffix(".tmp")
        (self.cache_dir / f"{key}.json").write_text(json.dumps(meta))
        save_file(tensors, str(tmp))
        tmp.replace(path)  # atomic: a half-written entry is never read
        return item


class CaseSet(torch.utils.data.Dataset):
    """Preprocessed cases of one cohort (split) in memory; `entries[i]` is the cohort entry of `items[i]`.

    A case that cannot be read is left out and listed in `failed` (patient, error type, message)."""

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
        self.entries: list = []
        self.failed: list[tuple[str, str, str]] = []  # (patient_id, error type, message)
        for i in tqdm(range(len(dataset)), desc=f"preprocess {desc}", disable=not progress, leave=False):
            entry = cohort.entries[i]
            try:
                item = dataset[i]
            except MedmmError as err:
                self.failed.append((entry.patient_id, type(err).__name__, str(err)))
                continue
            item["meta"] = {**item["meta"], "patient_id": entry.patient_id, "key": entry.key}
            self.items.append(item)
            self.entries.append(entry)
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


def collate(items: Sequence[dict]) -> dict:
    """Stack the tensors of preprocessed items; gather their "meta" dicts in a list.

    Every item must have the same keys and tensor shapes (one preprocessing setting per batch);
    a mismatch is a ConfigError naming the key and the item, never a silent drop.
    """
    if not items:
        raise ConfigError("cannot collate an empty list of items", where="batch")
    keys = set(items[0])
    batch: dict = {}
    for index, item in enumerate(items[1:], start=1):
        if set(item) != keys:
            differ = sorted(keys.symmetric_difference(item))
            raise ConfigError(f"item {index} has keys that differ from item 0: {differ}", where="batch")
    for key in items[0]:
        if key == "meta":
            batch["meta"] = [item.get("meta", {}) for item in items]
            continue
        first = items[0][key]
        if not isinstance(first, Tensor):
            raise ConfigError(f"expected a tensor, got {type(first).__name__}", where=f"batch key {key!r}")
        for index, item in enumerate(items):
            value = item[key]
            if not isinstance(value, Tensor) or value.shape != first.shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ConfigError(
                    f"item {index} has {got}, item 0 has {tuple(first.shape)}", where=f"batch key {key!r}"
                )
        batch[key] = torch.stack([item[key] for item in items])  # (B, ...)
    return batch


def to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with every tensor moved to `device` (other values unchanged)."""
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
