"""Study -> fixed-size tensors for the model, composed from MONAI dictionary transforms.

Every modality has a fixed-shape slot and a presence flag, so absent modalities batch like
present ones and are masked inside the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirstd, Resized

from medmm.io.window import CT_PRESETS, CT_VOLUME, series_window
from medmm.records import ImageSeries, Study
from medmm.tasks import DEFAULT_TASK, Task, load_task, task_to_dict
from medmm.transforms.dictionary import VITAL_REFERENCE, NormalizeVitalsd, TokenizeNotesd, ToTorchd, WindowLeveld

PROJECTION_MODALITIES = ("CR", "DX", "DR", "RG", "MG", "XA", "RF", "PX", "OT", "SC", "US")


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 128  # radiographs are resized to image_size x image_size
    use_volume: bool = False  # also build a CT/MR volume slot
    volume_size: tuple[int, int, int] = (32, 64, 64)  # (slices, rows, columns)
    max_notes: int = 3  # newest notes kept per study
    max_note_tokens: int = 128  # tokens per note
    window_hours: float = 48.0  # the vital-sign window before the study time
    step_minutes: float = 60.0
    encounter_steps: int = 0  # > 0: one step per encounter, the latest this many in the window (step_minutes unused)

    @property
    def vitals_steps(self) -> int:
        if self.encounter_steps > 0:
            return int(self.encounter_steps)
        return int(round(self.window_hours * 60.0 / self.step_minutes))

    @property
    def grid_kwargs(self) -> dict[str, float | int]:
        """The vital-sign grid as `medmm.io.load_study` takes it."""
        return {
            "window_hours": self.window_hours,
            "step_minutes": self.step_minutes,
            "encounter_steps": self.encounter_steps,
        }


def primary_radiograph(study: Study) -> ImageSeries | None:
    """The 2D image the model reads: a PA/AP projection radiograph when there is one."""
    candidates = [s for s in study.images if not _is_volume(s)]
    if not candidates:
        return None
    ranked = sorted(
        candidates, key=lambda s: (s.modality not in PROJECTION_MODALITIES, s.view_position not in ("PA", "AP"))
    )
    return ranked[0]


def primary_volume(study: Study) -> ImageSeries | None:
    volumes = [s for s in study.images if _is_volume(s)]
    return max(volumes, key=lambda s: s.pixels.shape[0]) if volumes else None


def _is_volume(series: ImageSeries) -> bool:
    return series.modality in ("CT", "MR", "PT", "NM") and series.is_volume and series.pixels.shape[0] > 1


def grey_2d(series: ImageSeries) -> np.ndarray:
    """The 2D greyscale image the model reads: colour averaged, the middle frame of several."""
    pixels = series.pixels
    if series.is_colour:
        pixels = pixels.mean(axis=-1)
    if pixels.ndim == 3:  # multi-frame projection: the middle frame
        pixels = pixels[pixels.shape[0] // 2]
    return pixels.astype(np.float32)


def _fits(series, steps: int) -> bool:
    """Whether a study's grid goes on the model's: the same length, or a per-encounter grid no longer."""
    return series.values.shape[0] <= steps if series.per_encounter else series.values.shape[0] == steps


def last_readings(series, channels) -> dict[str, list]:
    """Channel -> [its last observed value on the grid (float64 of the stored float32), unit], for the
    `channels` the series has a reading of, in that order."""
    out = {}
    for name in channels:
        if name not in series.channels:
            continue
        c = series.channels.index(name)
        steps = np.flatnonzero(series.mask[:, c] & np.isfinite(series.values[:, c]))
        if steps.size:
            out[name] = [float(series.values[int(steps[-1]), c]), series.units[c] if c < len(series.units) else ""]
    return out


def channel_reference(task: Task) -> dict[str, tuple[float, float]]:
    """(mean, SD) to z-score each task channel medmm has no reference statistics for: the middle of
    its plausible range, and a sixth of the range (the range as +-3 SD)."""
    return {
        c.name: ((c.low + c.high) / 2.0, (c.high - c.low) / 6.0) for c in task.channels if c.name not in VITAL_REFERENCE
    }


class StudyPreprocessor:
    """Callable Study -> dict of tensors (plus a small JSON-able "meta").

    Keys: image (1, S, S) float, image_present () bool, [volume (1, D, H, W), volume_present],
    notes_ids / notes_attention (M, L) long, notes_offsets (M, L, 2), notes_present (M,) bool,
    vitals (T, C) float, vitals_observed (T, C) bool, vitals_present () bool,
    labels (K,) float, labels_known () bool.
    """

    def __init__(self, config: PreprocessConfig, note_tokenizer, task: Task | None = None):
        self.config = config
        self.note_tokenizer = note_tokenizer
        # The task names the label vector's entries (matched on each Condition's codes) and the
        # vital-sign channels in grid order; the default is the synthetic cohort's task.
        self.task = task if task is not None else load_task(DEFAULT_TASK)
        self.channels = self.task.channel_names
        size = (config.image_size, config.image_size)
        self.image_tf = Compose(
            [
                WindowLeveld(keys="image", window_key="image_window"),
                EnsureChannelFirstd(keys="image", channel_dim="no_channel"),
                Resized(keys="image", spatial_size=size, mode="area"),
            ]
        )
        self.volume_tf = Compose(
            [
                WindowLeveld(keys="volume", window_key="volume_window"),
                EnsureChannelFirstd(keys="volume", channel_dim="no_channel"),
                Resized(keys="volume", spatial_size=config.volume_size, mode="trilinear"),
            ]
        )
        self.notes_tf = TokenizeNotesd(
            keys="notes", tokenizer=note_tokenizer, max_notes=config.max_notes, max_tokens=config.max_note_tokens
        )
        self.vitals_tf = NormalizeVitalsd(keys="vitals", channels=self.channels, reference=channel_reference(self.task))
        self.to_torch = ToTorchd(
            keys=[
                "image",
                "volume",
                "notes_ids",
                "notes_attention",
                "notes_offsets",
                "notes_present",
                "vitals",
                "vitals_observed",
            ],
            allow_missing_keys=True,
        )

    @property
    def grid_kwargs(self) -> dict:
        """How `medmm.io.load_study` reads a study for this preprocessor: the config's vital-sign grid, and the
        task's channels (read from FHIR and vitals tables by their LOINC codes, in the task's order)."""
        return {**self.config.grid_kwargs, "vital_signs": self.task.channels}

    @property
    def key(self) -> str:
        """A string naming these settings and tokenizer, for cache keys."""
        vocab = getattr(self.note_tokenizer, "vocab_size", 0)
        name = getattr(self.note_tokenizer, "name_or_path", type(self.note_tokenizer).__name__)
        task = {
            "labels": task_to_dict(self.task)["labels"],
            "inactive": self.task.inactive_conditions,
            "channels": list(self.channels),
        }
        blob = json.dumps(
            {"config": asdict(self.config), "tokenizer": [str(name).rsplit("/", 1)[-1], vocab], "task": task, "v": 2},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __call__(self, study: Study) -> dict:
        cfg = self.config
        out: dict = {}
        radiograph = primary_radiograph(study)
        if radiograph is not None:
            pixels = grey_2d(radiograph)
            d = self.image_tf({"image": pixels, "image_window": series_window(radiograph.window, pixels)})
            out["image"], out["image_present"] = d["image"], torch.tensor(True)
        else:
            out["image"], out["image_present"] = torch.zeros(1, cfg.image_size, cfg.image_size), torch.tensor(False)
        if cfg.use_volume:
            volume = primary_volume(study)
            if volume is not None:
                d = self.volume_tf(
                    {
                        "volume": volume.pixels.astype(np.float32),
                        "volume_window": CT_PRESETS[CT_VOLUME]
                        if volume.modality == "CT"
                        else series_window(volume.window, volume.pixels),
                    }
                )
                out["volume"], out["volume_present"] = d["volume"], torch.tensor(True)
            else:
                out["volume"], out["volume_present"] = torch.zeros(1, *cfg.volume_size), torch.tensor(False)

        out.update(self.notes_tf({"notes": [n.text for n in study.notes]}))

        steps = cfg.vitals_steps
        last: dict[str, list] = {}  # channel -> [last observed value in the window, unit], for the LM's record text
        if study.vitals is not None and _fits(study.vitals, steps) and bool(study.vitals.mask.any()):
            last = last_readings(study.vitals, self.channels)
            index = [study.vitals.channels.index(c) if c in study.vitals.channels else -1 for c in self.channels]
            values = np.full((steps, len(self.channels)), np.nan, dtype=np.float32)
            # a per-encounter grid of fewer steps fills the latest rows (row -1 is the last before the study)
            first = steps - study.vitals.values.shape[0]
            for c, src in enumerate(index):
                if src >= 0:
                    values[first:, c] = np.where(study.vitals.mask[:, src], study.vitals.values[:, src], np.nan)
            out.update(self.vitals_tf({"vitals": values}))
            out["vitals_present"] = torch.tensor(True)
        else:
            out["vitals"] = np.zeros((steps, len(self.channels)), dtype=np.float32)
            out["vitals_observed"] = np.zeros((steps, len(self.channels)), dtype=bool)
            out["vitals_present"] = torch.tensor(False)

        names = self.task.label_names
        labels = torch.zeros(len(names))
        for name in self.task.positives(study.labels):
            labels[names.index(name)] = 1.0
        out["labels"], out["labels_known"] = labels, torch.tensor(study.labels is not None)
        out = self.to_torch(out)
        out["meta"] = {"study_id": study.study_id, "modalities": list(study.modalities), "vitals_last": last}
        return out
