"""Phrase bank of the synthetic clinical notes: evidence per diagnosis, and distractors.

Phrases carry no demographics and no names. Evidence phrases are tagged with the section they
belong in; negations list every diagnosis they would contradict, so that a note never denies
what the patient has.
"""

from __future__ import annotations

from typing import Mapping

# diagnosis -> (phrase, section); sections: symptom, exam, imaging, lab, assessment
EVIDENCE: Mapping[str, tuple[tuple[str, str], ...]] = {
    "pneumonia": (
        ("productive cough with green sputum", "symptom"),
        ("cough productive of purulent sputum for four days", "symptom"),
        ("pleuritic chest pain on deep inspiration", "symptom"),
        ("fevers and sweats since yesterday", "symptom"),
        ("coarse focal crackles on auscultation", "exam"),
        ("bronchial breathing over one lower zone", "exam"),
        ("increased vocal resonance over the affected lobe", "exam"),
        ("dense airspace consolidation with air bronchograms", "imaging"),
        ("new lobar consolidation", "imaging"),
        ("community-acquired pneumonia, started on oral antibiotics", "assessment"),
        ("findings consistent with pneumonia", "assessment"),
    ),
    "heart_failure": (
        ("orthopnoea, now sleeping on three pillows", "symptom"),
        ("paroxysmal nocturnal dyspnoea", "symptom"),
        ("progressive exertional breathlessness with ankle swelling", "symptom"),
        ("weight up about three kilograms over the past week", "symptom"),
        ("bilateral pitting oedema to the mid shins", "exam"),
        ("jugular venous pressure raised to the earlobes", "exam"),
        ("fine bibasal inspiratory crackles", "exam"),
        ("third heart sound on auscultation", "exam"),
        ("cardiomegaly with upper lobe venous diversion", "imaging"),
        ("decompensated heart failure, intravenous furosemide started", "assessment"),
        ("acute on chronic congestive cardiac failure", "assessment"),
    ),
    "pleural_effusion": (
        ("gradually increasing breathlessness with a dull chest ache", "symptom"),
        ("stony dullness to percussion at one base", "exam"),
        ("reduced breath sounds at the base", "exam"),
        ("decreased tactile fremitus over the lower chest", "exam"),
        ("blunting of the costophrenic angle with a meniscus", "imaging"),
        ("moderate pleural effusion", "imaging"),
        ("pleural effusion, diagnostic thoracentesis planned", "assessment"),
    ),
    "pneumothorax": (
        ("sudden onset sharp chest pain while at rest", "symptom"),
        ("abrupt shortness of breath with pleuritic pain", "symptom"),
        ("absent breath sounds over one apex", "exam"),
        ("hyperresonant percussion note on the affected side", "exam"),
        ("visceral pleural line with no lung markings beyond it", "imaging"),
        ("apical pneumothorax", "imaging"),
        ("pneumothorax, chest drain inserted", "assessment"),
    ),
    "sepsis": (
        ("rigors overnight", "symptom"),
        ("new confusion, disoriented to time and place", "exam"),
        ("mottled skin with cool peripheries", "exam"),
        ("capillary refill time of four seconds", "exam"),
        ("hypotensive, responding to fluid resuscitation", "exam"),
        ("lactate 4.1 mmol/L", "lab"),
        ("suspected urinary source of infection", "assessment"),
        ("sepsis, blood cultures taken and broad-spectrum antibiotics given", "assessment"),
    ),
}

# (phrase, diagnoses it would contradict); the first is the one it is about.
NEGATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("denies cough", ("pneumonia",)),
    ("no sputum production", ("pneumonia",)),
    ("no focal consolidation", ("pneumonia",)),
    ("denies fever", ("pneumonia", "sepsis")),
    ("afebrile", ("sepsis", "pneumonia")),
    ("no orthopnoea", ("heart_failure",)),
    ("no ankle oedema", ("heart_failure",)),
    ("denies paroxysmal nocturnal dyspnoea", ("heart_failure",)),
    ("no dullness to percussion", ("pleural_effusion",)),
    ("breath sounds equal bilaterally", ("pleural_effusion", "pneumothorax")),
    ("no evidence of pneumothorax", ("pneumothorax",)),
    ("no chest pain", ("pneumothorax", "pneumonia")),
    ("denies shortness of breath", ("pneumothorax", "heart_failure", "pneumonia", "pleural_effusion")),
    ("no confusion", ("sepsis",)),
    ("no rigors", ("sepsis",)),
)

HEDGES: Mapping[str, tuple[str, ...]] = {
    "pneumonia": ("early consolidation cannot be excluded", "possible subtle basal infiltrate, likely atelectasis"),
    "heart_failure": ("borderline heart size, cannot exclude mild cardiomegaly",),
    "pleural_effusion": ("cannot exclude a small effusion", "possible trace effusion"),
    "pneumothorax": ("skin fold projecting over the apex, pneumothorax not excluded",),
    "sepsis": ("query early sepsis, to be reviewed if febrile",),
}

HISTORY: Mapping[str, tuple[str, ...]] = {
    "pneumonia": ("history of pneumonia in 2019", "treated for pneumonia as a child"),
    "heart_failure": ("family history of heart failure",),
    "pleural_effusion": ("pleural effusion drained in 2017, since resolved",),
    "pneumothorax": ("remote history of pneumothorax in 2015",),
    "sepsis": ("admitted with urosepsis in 2018",),
}

# Sentence templates per kind; "{p}" is the phrase, "{P}" the phrase with a capital first letter.
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "symptom": ("Reports {p}.", "Complains of {p}.", "Describes {p}."),
    "exam": ("On examination, {p}.", "{P}.", "Examination notable for {p}."),
    "imaging": ("Chest film shows {p}.", "Imaging: {p}."),
    "lab": ("Labs notable for {p}.", "Bloods: {p}."),
    "assessment": ("Impression: {p}.", "{P}."),
    "negated": ("{P}.",),
    "denied": ("{P}.", "The patient {p}."),  # negations that start with "denies"
    "hedged": ("Imaging: {p}.", "Radiology comment: {p}."),
    "historical": ("Past history: {p}.", "Background includes {p}."),
}

FILLERS: Mapping[str, tuple[str, ...]] = {
    "symptom": (
        "Admitted from the emergency department for assessment.",
        "Seen on the medical ward this morning.",
        "Referred by the primary care team.",
        "Symptoms reviewed with the patient.",
    ),
    "exam": (
        "Abdomen soft and non-tender.",
        "Oropharynx clear.",
        "Calves soft and non-tender.",
        "No rash.",
    ),
    "assessment": (
        "Medications reviewed and reconciled.",
        "Plan discussed with the patient and the nursing team.",
        "Continue current management and review in the morning.",
        "Observations reviewed.",
        "Encourage oral fluids and mobilisation.",
    ),
    "imaging": (
        "Single frontal chest radiograph.",
        "Comparison with no prior imaging.",
        "Bones and soft tissues unremarkable.",
    ),
}
