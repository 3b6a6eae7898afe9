"""Per-patient plan: demographics, labels, modalities present and where each diagnosis's evidence lives.

Every random draw of a patient comes from generators seeded by (seed, patient index, purpose),
so a patient's files never depend on the number of workers or on other patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Mapping

import numpy as np

from medmm.synth.config import SynthConfig, label_set_probabilities
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.tasks.load import DEFAULT_AGE_BANDS
from medmm.tasks.task import age_band_label

MODALITY_NAMES = ("image", "notes", "vitals")
# Which modalities can carry each diagnosis's evidence (see the clinical reference).
CAPABLE: Mapping[str, tuple[str, ...]] = {
    "pneumonia": ("image", "vitals", "notes"),
    "heart_failure": ("image", "vitals", "notes"),
    "pleural_effusion": ("image", "notes"),
    "pneumothorax": ("image", "vitals", "notes"),
    "sepsis": ("vitals", "notes"),
}
RACE_WEIGHTS: Mapping[str, float] = {"2106-3": 0.40, "2054-5": 0.20, "2028-9": 0.16, "1002-5": 0.12, "2076-8": 0.12}
HISPANIC_RATE = 0.25
EPOCH = datetime(2021, 1, 4, tzinfo=timezone.utc)  # study times start here, shifted by the seed

# Purposes of the per-patient random streams.
PLAN, IMAGE, CT, NOTES, VITALS, FHIR, FILES = range(7)


def patient_rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    """The random stream of one patient for one purpose."""
    return np.random.default_rng([seed, index, purpose])


def patient_id_for(index: int) -> str:
    """Pseudonymous patient identifier of the patient at `index`."""
    return f"SYN{index:05d}"


@dataclass(frozen=True)
class PatientPlan:
    """All decisions about one patient that more than one writer needs."""

    seed: int
    index: int
    patient_id: str
    split: str
    study_time: datetime  # UTC
    sex: str  # female | male
    birth_date: date
    age_years: int
    race: str  # OMB race code
    ethnicity: str  # OMB ethnicity code
    labels: tuple[str, ...]  # recorded diagnoses, in medmm order
    present: tuple[str, ...]  # modalities written, in medmm order
    evidence: Mapping[str, tuple[str, ...]]  # diagnosis -> modalities carrying its evidence
    strength: Mapping[str, float]  # diagnosis -> evidence strength in [0.5, 1]
    bias_member: bool
    evidence_removed: tuple[str, ...]  # label_noise bias: labels whose evidence was removed
    image_degradation: float  # image_quality bias: 0 = none, 1 = heavy noise and blur
    dicom_modality: str  # CR | DX
    monochrome1: bool
    compression: str  # "" | "rle" | "j2k"
    has_window: bool
    has_ct: bool
    vitals_in_fhir: bool
    temperature_in_f: bool  # FHIR vitals: temperatures in [degF]
    weight_in_lb: bool  # FHIR vitals: weights in [lb_av]
    transaction_bundle: bool

    def evidence_in(self, modality: str) -> tuple[str, ...]:
        """Diagnoses whose evidence is planted in `modality`."""
        return tuple(d for d in self.labels if modality in self.evidence.get(d, ()))

    def has(self, modality: str) -> bool:
        return modality in self.present


def assign_splits(config: SynthConfig) -> list[str]:
    """Split of every patient: exact counts from the fractions, stratified by the audited attributes.

    Patients are ordered by race, sex, ethnicity and age band (the default audit's attributes, race
    first as its groups are the smallest), in a seeded random order inside each stratum, and the
    splits are dealt along that order so that every prefix holds each split in proportion (within
    one patient). A run of patients of one race therefore holds each split in proportion to within
    two patients, and so does a sex inside a race: a 35% test split of 90 patients of one race
    holds 30 to 33 of them rather than whatever an unstratified draw gives."""
    n = config.patients
    n_train = int(round(config.train_fraction * n))
    n_val = min(n - n_train, int(round(config.val_fraction * n)))
    counts = {"train": n_train, "val": n_val, "test": n - n_train - n_val}
    shuffle = np.random.default_rng([config.seed, 0x5EED]).permutation(n)
    keys = [(*stratum_of(config, i), int(shuffle[i])) for i in range(n)]
    order = sorted(range(n), key=lambda i: keys[i])
    dealt = deal(counts, n)
    out = [""] * n
    for position, index in enumerate(order):
        out[index] = dealt[position]
    return out


def deal(counts: Mapping[str, int], n: int) -> list[str]:
    """A sequence of `n` split names holding exactly `counts`, every prefix in proportion.

    Each place goes to the split furthest behind its share of the places so far (ties to the
    earlier split), so every prefix of length k holds each split within one of k * count / n."""
    given = dict.fromkeys(counts, 0)
    out: list[str] = []
    for k in range(1, n + 1):
        name = max(counts, key=lambda s: (k * counts[s] / n - given[s], -list(counts).index(s)))
        given[name] += 1
        out.append(name)
    return out


def stratum_of(config: SynthConfig, index: int) -> tuple[str, str, str, str]:
    """(race, sex, ethnicity, age band) of patient `index`: the same draws `draw_plan` makes."""
    rng = patient_rng(config.seed, index, PLAN)
    study_time = _draw_study_time(rng, config)
    sex, _, age, race, ethnicity = _draw_demographics(rng, study_time.date())
    return race, sex, ethnicity, age_band_label(age, DEFAULT_AGE_BANDS) or ""


def _draw_study_time(rng: np.random.Generator, config: SynthConfig) -> datetime:
    offset_min = int(rng.integers(0, 3 * 365 * 24 * 60))
    return EPOCH + timedelta(days=config.seed % 997, minutes=offset_min)


def _draw_labels(rng: np.random.Generator, config: SynthConfig) -> tuple[str, ...]:
    sets = label_set_probabilities(config)
    keys = list(sets)
    probs = np.array([sets[k] for k in keys] + [max(0.0, 1.0 - sum(sets.values()))])
    pick = int(rng.choice(len(probs), p=probs / probs.sum()))
    chosen = keys[pick] if pick < len(keys) else ()
    return tuple(d for d in DIAGNOSIS_NAMES if d in chosen)


def _draw_present(rng: np.random.Generator, config: SynthConfig) -> tuple[str, ...]:
    rates = (config.missing_image, config.missing_notes, config.missing_vitals)
    keep = [bool(rng.random() >= r) for r in rates]
    rescue = int(rng.integers(3))  # drawn always, so later draws do not shift
    if not any(keep):
        keep[rescue] = True
    return tuple(m for m, k in zip(MODALITY_NAMES, keep) if k)


def _draw_demographics(rng: np.random.Generator, study_day: date) -> tuple[str, date, int, str, str]:
    sex = "female" if rng.random() < 0.5 else "male"
    races = list(RACE_WEIGHTS)
    race = races[int(rng.choice(len(races), p=np.array([RACE_WEIGHTS[r] for r in races])))]
    ethnicity = "2135-2" if rng.random() < HISPANIC_RATE else "2186-5"
    age_target = 18 + int(77 * rng.beta(2.0, 1.6))  # 18..95, older-skewed like inpatients
    days = int((age_target + rng.uniform(0.02, 0.97)) * 365.2425)
    birth = study_day - timedelta(days=days)
    age = study_day.year - birth.year - ((study_day.month, study_day.day) < (birth.month, birth.day))
    return sex, birth, age, race, ethnicity


def _bias_member(config: SynthConfig, sex: str, race: str, ethnicity: str) -> bool:
    if config.bias_attribute is None:
        return False
    value = {"sex": sex, "race": race, "ethnicity": ethnicity}[config.bias_attribute]
    return value == config.bias_value


def draw_plan(config: SynthConfig, index: int, split: str) -> PatientPlan:
    """Draw the plan of patient `index` (deterministic in (config, index))."""
    rng = patient_rng(config.seed, index, PLAN)
    study_time = _draw_study_time(rng, config)
    sex, birth, age, race, ethnicity = _draw_demographics(rng, study_time.date())
    labels = _draw_labels(rng, config)
    present = _draw_present(rng, config)
    member = _bias_member(config, sex, race, ethnicity)

    removed: list[str] = []
    evidence: dict[str, tuple[str, ...]] = {}
    strength: dict[str, float] = {}
    for d in DIAGNOSIS_NAMES:  # fixed number of draws per diagnosis keeps streams aligned
        flips = rng.random(4)
        noise_draw = rng.random()
        s = float(rng.uniform(0.5, 1.0))
        if d not in labels:
            continue
        strength[d] = round(s, 3)
        if member and config.bias_kind == "label_noise" and noise_draw < config.bias_strength:
            removed.append(d)
            evidence[d] = ()
            continue
        capable = [m for m in CAPABLE[d] if m in present]
        chosen = [m for m, u in zip(capable, flips) if u < config.evidence_rate]
        if not chosen and capable:
            chosen = [capable[int(flips[3] * len(capable)) % len(capable)]]
        evidence[d] = tuple(m for m in MODALITY_NAMES if m in chosen)

    compressed = rng.random() < config.compressed_fraction
    codec = "rle" if rng.random() < 0.5 or not _j2k_available() else "j2k"
    return PatientPlan(
        seed=config.seed,
        index=index,
        patient_id=patient_id_for(index),
        split=split,
        study_time=study_time,
        sex=sex,
        birth_date=birth,
        age_years=age,
        race=race,
        ethnicity=ethnicity,
        labels=labels,
        present=present,
        evidence=evidence,
        strength=strength,
        bias_member=member,
        evidence_removed=tuple(removed),
        image_degradation=config.bias_strength if member and config.bias_kind == "image_quality" else 0.0,
        dicom_modality="DX" if rng.random() < 0.5 else "CR",
        monochrome1=bool(rng.random() < config.monochrome1_fraction),
        compression=codec if compressed else "",
        has_window=bool(rng.random() < config.window_fraction),
        has_ct=bool(rng.random() < config.ct_fraction) and "image" in present,
        vitals_in_fhir=bool(rng.random() < config.fhir_vitals_fraction),
        temperature_in_f=bool(rng.random() < 0.5),
        weight_in_lb=bool(rng.random() < 0.5),
        transaction_bundle=bool(rng.random() < 0.25),
    )


def _j2k_available() -> bool:
    from pydicom.pixels.encoders import JPEG2000LosslessEncoder

    return bool(JPEG2000LosslessEncoder.is_available)
