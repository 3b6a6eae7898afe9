"""The five diagnoses of the synthetic chest cohort, with the codes `medmm synth` writes for them.

This is the synthetic world's own table (what the generator plants and codes); everything else
reads labels from a task (medmm.tasks), the shipped `synthetic-cxr` task being the one whose
value sets match these codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    name: str  # medmm's label name, also the column name in outputs
    display: str
    snomed: str
    icd10: str


DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis("pneumonia", "Pneumonia", "233604007", "J18.9"),
    Diagnosis("heart_failure", "Heart failure", "84114007", "I50.9"),
    Diagnosis("pleural_effusion", "Pleural effusion", "60046008", "J90"),
    Diagnosis("pneumothorax", "Pneumothorax", "36118008", "J93.9"),
    Diagnosis("sepsis", "Sepsis", "91302008", "A41.9"),
)
DIAGNOSIS_NAMES: tuple[str, ...] = tuple(d.name for d in DIAGNOSES)


def diagnosis_for_code(system: str | None, code: str | None) -> Diagnosis | None:
    """The medmm diagnosis a SNOMED CT or ICD-10-CM code stands for, or None.

    ICD-10 codes match on their category too (J18.1 -> pneumonia), since exports vary in
    how specific they are.
    """
    if not code:
        return None
    code = code.strip()
    sys_ = (system or "").lower()
    for d in DIAGNOSES:
        if code == d.snomed and ("snomed" in sys_ or not sys_):
            return d
        if "icd" in sys_ or not sys_:
            if code.upper() == d.icd10 or code.upper().split(".")[0] == d.icd10.split(".")[0]:
                return d
    return None
