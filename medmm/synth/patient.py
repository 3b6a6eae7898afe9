"""Write one synthetic patient folder: images, record.json, vitals.csv and ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medmm.codes import VITAL_SIGNS
from medmm.synth.config import SynthConfig
from medmm.synth.ct import render_ct
from medmm.synth.dicom_writer import write_ct, write_radiograph
from medmm.synth.fhir_writer import build_bundle, instant
from medmm.synth.notes import compose_notes
from medmm.synth.plan import CT, FHIR, IMAGE, NOTES, VITALS, PatientPlan, draw_plan, patient_rng
from medmm.synth.planted import TRUTH_FILE
from medmm.synth.radiograph import render_radiograph
from medmm.synth.truth import CT_FILE, LESIONS_FILE, build_truth, save_npz, write_json
from medmm.synth.vitals_gen import LOINC_OF, VitalsDraft, generate_vitals

UNITS = {v.name: v.unit for v in VITAL_SIGNS}  # vitals.csv is written in canonical units


@dataclass(frozen=True)
class PatientResult:
    """One manifest row plus how many files the patient took."""

    index: int
    patient_id: str
    split: str
    study_time: str  # ISO 8601 UTC
    sex: str
    age_years: int
    race: str
    ethnicity: str
    labels: tuple[str, ...]
    has_image: bool
    has_notes: bool
    has_vitals: bool
    has_ct: bool
    bias_applied: bool
    files_written: int


def write_vitals_csv(path: Path, vitals: VitalsDraft) -> None:
    """Long-format vitals: time,code,value,unit (LOINC code, UCUM unit, time with offset)."""
    lines = ["time,code,value,unit"]
    lines += [f"{instant(t)},{LOINC_OF[c]},{v:.1f},{UNITS[c]}" for t, c, v in vitals.rows()]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def write_patient(root: Path, config: SynthConfig, index: int, split: str) -> PatientResult:
    """Draw and write patient `index` under root/<patient_id>/ (deterministic in config and index)."""
    plan: PatientPlan = draw_plan(config, index, split)
    folder = root / plan.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, object] = {}
    count = 0
    radiograph = ct = None
    image_evidence = {d: plan.strength[d] for d in plan.evidence_in("image")}
    if plan.has("image"):
        rng = patient_rng(config.seed, index, IMAGE)
        radiograph = render_radiograph(rng, config.image_size, image_evidence, plan.image_degradation)
        view = "AP" if rng.random() < 0.2 else "PA"
        written = write_radiograph(folder, plan, radiograph, view)
        files["image"], files["image_syntax"] = written.files, written.transfer_syntax
        save_npz(folder / LESIONS_FILE, {"lungs": radiograph.lungs, "heart": radiograph.heart, **radiograph.lesions})
        count += 2
        if plan.has_ct:
            rng_ct = patient_rng(config.seed, index, CT)
            ct = render_ct(rng_ct, config.ct_slices, config.ct_size, image_evidence)
            files["ct"] = write_ct(folder, plan, ct, rng_ct).files
            save_npz(folder / CT_FILE, {"lungs": ct.lungs, **ct.lesions})
            count += len(files["ct"]) + 1
    notes = compose_notes(patient_rng(config.seed, index, NOTES), plan) if plan.has("notes") else ()
    vitals = None
    if plan.has("vitals"):
        vitals = generate_vitals(patient_rng(config.seed, index, VITALS), plan)
    in_bundle = vitals if plan.vitals_in_fhir else None
    bundle, note_refs = build_bundle(patient_rng(config.seed, index, FHIR), plan, notes, in_bundle)
    write_json(folder / "record.json", bundle, compact=True)
    count += 1
    if vitals is not None and not plan.vitals_in_fhir:
        write_vitals_csv(folder / "vitals.csv", vitals)
        count += 1
    truth = build_truth(config, plan, files, radiograph, ct, notes, note_refs, vitals)
    write_json(folder / TRUTH_FILE, truth)
    count += 1
    return PatientResult(
        index=index,
        patient_id=plan.patient_id,
        split=plan.split,
        study_time=plan.study_time.isoformat(),
        sex=plan.sex,
        age_years=plan.age_years,
        race=plan.race,
        ethnicity=plan.ethnicity,
        labels=plan.labels,
        has_image=plan.has("image"),
        has_notes=bool(notes),
        has_vitals=vitals is not None,
        has_ct=ct is not None,
        bias_applied=bool(truth["bias"]["applied"]),
        files_written=count,
    )
