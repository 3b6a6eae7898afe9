"""Configuration and summary of a synthetic cohort run (`medmm synth`)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from medmm.codes import ETHNICITIES, RACES
from medmm.errors import ConfigError
from medmm.synth.diagnoses import DIAGNOSIS_NAMES

DEFAULT_PREVALENCE: Mapping[str, float] = {
    "pneumonia": 0.22,
    "heart_failure": 0.18,
    "pleural_effusion": 0.15,
    "pneumothorax": 0.08,
    "sepsis": 0.15,
}
BIAS_ATTRIBUTES = ("sex", "race", "ethnicity")
BIAS_KINDS = ("label_noise", "image_quality")
SEXES = ("female", "male")


def _default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the synthetic cohort; the same config and seed write identical files."""

    patients: int = 600
    """Number of patients."""
    seed: int = 0
    """Root seed: every random draw derives from (seed, patient index), so the same seed writes identical files."""
    image_size: int = 256
    """Radiograph size (rows = columns), in pixels."""
    ct_fraction: float = 0.0
    """Fraction of patients who also get a small chest CT volume."""
    ct_slices: int = 24
    """Slices per CT volume."""
    ct_size: int = 64
    """CT size (rows = columns), in pixels."""
    missing_image: float = 0.1
    """Probability that a patient has no imaging."""
    missing_notes: float = 0.1
    """Probability that a patient has no notes."""
    missing_vitals: float = 0.1
    """Probability that a patient has no vital signs."""
    prevalence: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PREVALENCE))
    """Prevalence of each diagnosis."""
    pair_fraction: float = 0.4
    """Share of the rarer partner's cases that come as pneumonia+sepsis / heart_failure+effusion."""
    evidence_rate: float = 0.65
    """Probability that each capable, present modality carries a diagnosis's evidence."""
    monochrome1_fraction: float = 0.3
    """Fraction of radiographs stored as MONOCHROME1 (inverted)."""
    compressed_fraction: float = 0.3
    """Fraction of radiographs stored compressed (RLE Lossless / JPEG 2000 Lossless)."""
    window_fraction: float = 0.6
    """Fraction of radiographs that carry WindowCenter / WindowWidth."""
    fhir_vitals_fraction: float = 0.2
    """Fraction of patients whose vitals are FHIR Observations instead of vitals.csv."""
    bias_attribute: str | None = None
    """Demographic attribute of the planted bias: sex, race or ethnicity."""
    bias_value: str | None = None
    """Group that receives the planted bias (e.g. race 2054-5, sex female)."""
    bias_kind: str = "label_noise"
    """Kind of planted bias: label_noise (labels without their evidence) or image_quality (noisy, blurred images)."""
    bias_strength: float = 0.0
    """Strength of the planted bias: 0 = none; label_noise: the rate; image_quality: the noise and blur."""
    train_fraction: float = 0.7
    """Training fraction of the split (stratified by race, sex, ethnicity and age band)."""
    val_fraction: float = 0.15
    """Validation fraction of the split."""
    test_fraction: float = 0.15
    """Test fraction of the split."""
    workers: int = field(default_factory=_default_workers)
    """Processes (default: all cores); the files do not depend on it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prevalence", dict(self.prevalence))
        _check(self)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready data, without `workers` (which never changes the output)."""
        data = asdict(self)
        data.pop("workers")
        data["prevalence"] = {name: float(self.prevalence[name]) for name in DIAGNOSIS_NAMES}
        return data

    @property
    def bias_active(self) -> bool:
        return self.bias_attribute is not None and self.bias_strength > 0.0


def _fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1]", where=name)


def _check(c: SynthConfig) -> None:
    if not isinstance(c.patients, int) or c.patients < 1:
        raise ConfigError("patients must be a positive integer", where="patients")
    if not isinstance(c.seed, int) or c.seed < 0:
        raise ConfigError("seed must be a non-negative integer", where="seed")
    if not isinstance(c.image_size, int) or not 32 <= c.image_size <= 4096:
        raise ConfigError("image_size must be an integer in [32, 4096]", where="image_size")
    if not isinstance(c.ct_slices, int) or not 4 <= c.ct_slices <= 512:
        raise ConfigError("ct_slices must be an integer in [4, 512]", where="ct_slices")
    if not isinstance(c.ct_size, int) or not 32 <= c.ct_size <= 1024:
        raise ConfigError("ct_size must be an integer in [32, 1024]", where="ct_size")
    for name in (
        "ct_fraction",
        "missing_image",
        "missing_notes",
        "missing_vitals",
        "pair_fraction",
        "evidence_rate",
        "monochrome1_fraction",
        "compressed_fraction",
        "window_fraction",
        "fhir_vitals_fraction",
        "bias_strength",
        "train_fraction",
        "val_fraction",
        "test_fraction",
    ):
        _fraction(name, getattr(c, name))
    unknown = sorted(set(c.prevalence) - set(DIAGNOSIS_NAMES))
    if unknown:
        raise ConfigError(
            f"prevalence names unknown diagnoses (expected {', '.join(DIAGNOSIS_NAMES)})", where="prevalence"
        )
    for name in DIAGNOSIS_NAMES:
        _fraction(f"prevalence[{name}]", c.prevalence.get(name, 0.0))
    c.prevalence.update({name: float(c.prevalence.get(name, 0.0)) for name in DIAGNOSIS_NAMES})
    if sum(label_set_probabilities(c).values()) > 1.0 + 1e-9:
        raise ConfigError(
            "prevalences are too high: the label sets they imply exceed probability 1", where="prevalence"
        )
    if abs(c.train_fraction + c.val_fraction + c.test_fraction - 1.0) > 1e-6:
        raise ConfigError("train_fraction + val_fraction + test_fraction must be 1", where="split fractions")
    if not isinstance(c.workers, int) or c.workers < 1:
        raise ConfigError("workers must be a positive integer", where="workers")
    if c.bias_kind not in BIAS_KINDS:
        raise ConfigError(f"bias_kind must be one of {', '.join(BIAS_KINDS)}", where="bias_kind")
    if c.bias_attribute is None:
        if c.bias_strength > 0.0:
            raise ConfigError("bias_strength > 0 needs bias_attribute and bias_value", where="bias_attribute")
        return
    allowed = {"sex": SEXES, "race": tuple(RACES), "ethnicity": tuple(ETHNICITIES)}.get(c.bias_attribute)
    if allowed is None:
        raise ConfigError(f"bias_attribute must be one of {', '.join(BIAS_ATTRIBUTES)}", where="bias_attribute")
    if c.bias_value not in allowed:
        raise ConfigError(f"bias_value for {c.bias_attribute} must be one of {', '.join(allowed)}", where="bias_value")


PAIRS: tuple[tuple[str, str], ...] = (("pneumonia", "sepsis"), ("heart_failure", "pleural_effusion"))


def label_set_probabilities(c: SynthConfig) -> dict[tuple[str, ...], float]:
    """Probability of each non-empty label set; the rest of the mass is 'no diagnosis'.

    Two clinically linked pairs co-occur: a pair takes `pair_fraction` of its rarer member's
    prevalence, and each member's remaining prevalence comes as a single diagnosis, so each
    diagnosis's marginal prevalence is exactly the configured one.
    """
    prev = {name: float(c.prevalence.get(name, 0.0)) for name in DIAGNOSIS_NAMES}
    sets: dict[tuple[str, ...], float] = {}
    single = dict(prev)
    for a, b in PAIRS:
        joint = c.pair_fraction * min(prev[a], prev[b])
        if joint > 0:
            sets[(a, b)] = joint
        single[a] -= joint
        single[b] -= joint
    for name in DIAGNOSIS_NAMES:
        if single[name] > 0:
            sets[(name,)] = single[name]
    return sets


@dataclass(frozen=True)
class SynthSummary:
    """What a run wrote: counts per diagnosis, modality and split, files, and time taken."""

    out: Path
    patients: int
    per_diagnosis: Mapping[str, int]
    per_modality: Mapping[str, int]
    per_split: Mapping[str, int]
    normal: int  # patients with no diagnosis
    files_written: int
    seconds: float

    def __str__(self) -> str:
        diag = ", ".join(f"{k} {v}" for k, v in self.per_diagnosis.items())
        mod = ", ".join(f"{k} {v}" for k, v in self.per_modality.items())
        split = ", ".join(f"{k} {v}" for k, v in self.per_split.items())
        return (
            f"patients: {self.patients} (no diagnosis: {self.normal})\n"
            f"diagnoses: {diag}\nmodalities: {mod}\nsplits: {split}\n"
            f"files: {self.files_written} in {self.seconds:.1f} s"
        )
