"""Ground truth of a synthetic patient: truth.json plus the mask arrays it names.

Masks go into .npz archives readable with ``np.load(path, allow_pickle=False)``. They are
written like ``np.savez_compressed`` but with fixed zip timestamps, so that the same seed
gives byte-identical archives.
"""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medmm.codes import ETHNICITIES, RACES
from medmm.synth.config import SynthConfig
from medmm.synth.ct import CtVolume
from medmm.synth.notes import NoteDraft
from medmm.synth.plan import PatientPlan
from medmm.synth.radiograph import Radiograph
from medmm.synth.vitals_gen import VitalsDraft

LESIONS_FILE = "truth-lesions.npz"
CT_FILE = "truth-ct.npz"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays as a compressed .npz with reproducible bytes (no wall-clock timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def write_json(path: Path, data: Any, *, compact: bool = False) -> None:
    """JSON with a trailing newline: indented for people, or compact for large bundles."""
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1)
    path.write_text(text + "\n", encoding="utf-8")


def build_truth(
    config: SynthConfig,
    plan: PatientPlan,
    files: Mapping[str, Any],
    radiograph: Radiograph | None,
    ct: CtVolume | None,
    notes: tuple[NoteDraft, ...],
    note_refs: list[str],
    vitals: VitalsDraft | None,
) -> dict[str, Any]:
    """The truth record of one patient (JSON-ready)."""
    evidence: dict[str, Any] = {}
    for d in plan.labels:
        entry: dict[str, Any] = {
            "modalities": list(plan.evidence.get(d, ())),
            "strength": plan.strength[d],
            "image": None,
            "vitals": None,
            "notes": None,
        }
        if radiograph is not None and "image" in entry["modalities"]:
            finding = next(f for f in radiograph.findings if f.diagnosis == d)
            entry["image"] = {
                "file": files["image"][0],
                "mask_file": LESIONS_FILE,
                "mask_key": finding.mask_key,
                "bbox": dict(finding.bbox),
                "side": finding.side,
                "zone": finding.zone,
                "detail": dict(finding.detail),
            }
            if ct is not None and d in ct.lesions:
                entry["image"]["ct"] = {"mask_file": CT_FILE, "mask_key": d, **dict(ct.findings.get(d, {}))}
        if vitals is not None and d in vitals.windows:
            w = vitals.windows[d]
            entry["vitals"] = {"start_hour": w.start_hour, "end_hour": w.end_hour, "channels": list(w.channels)}
        if notes and "notes" in entry["modalities"]:
            entry["notes"] = {
                "spans": [_span(s) for n in notes for s in n.spans if s.diagnosis == d and s.kind == "evidence"]
            }
        evidence[d] = entry
    distractors = {
        "notes": [
            _span(s) | {"kind": s.kind, "diagnosis": s.diagnosis}
            for n in notes
            for s in n.spans
            if s.kind != "evidence"
        ],
        "vitals": [{"channel": c, "hour": h} for c, h in (vitals.outliers if vitals else ())],
    }
    image_info = None
    if radiograph is not None:
        image_info = {
            "file": files["image"][0],
            "modality": plan.dicom_modality,
            "photometric": "MONOCHROME1" if plan.monochrome1 else "MONOCHROME2",
            "transfer_syntax": files["image_syntax"],
            "spacing_mm": radiograph.spacing_mm,
            "rows": int(radiograph.pixels.shape[0]),
            "columns": int(radiograph.pixels.shape[1]),
            "cardiothoracic_ratio": round(radiograph.ctr, 4),
            "mask_file": LESIONS_FILE,
            "anatomy_keys": ["lungs", "heart"],
        }
    return {
        "patient_id": plan.patient_id,
        "labels": list(plan.labels),
        "study_time": plan.study_time.isoformat(),
        "split": plan.split,
        "demographics": {
            "sex": plan.sex,
            "birth_sex": "F" if plan.sex == "female" else "M",
            "birth_date": plan.birth_date.isoformat(),
            "age_years": plan.age_years,
            "race": plan.race,
            "race_display": RACES[plan.race],
            "ethnicity": plan.ethnicity,
            "ethnicity_display": ETHNICITIES[plan.ethnicity],
        },
        "modalities": {m: plan.has(m) for m in ("image", "notes", "vitals")},
        "evidence": evidence,
        "distractors": distractors,
        "image": image_info,
        "ct": None
        if ct is None
        else {
            "files": list(files["ct"]),
            "slices": int(ct.hu.shape[0]),
            "mask_file": CT_FILE,
            "slice_order": "ascending position along the slice normal (index 0 most inferior)",
        },
        "notes": [
            {"index": i, "reference": ref, "type": n.type_code, "time": n.time.isoformat(), "characters": len(n.text)}
            for i, (n, ref) in enumerate(zip(notes, note_refs))
        ],
        "vitals": None
        if vitals is None
        else {
            "source": "fhir" if plan.vitals_in_fhir else "csv",
            "grid_hours": 48,
            "grid_start": (plan.study_time - timedelta(hours=48)).isoformat(),
        },
        "bias": {
            "attribute": config.bias_attribute,
            "value": config.bias_value,
            "kind": config.bias_kind if config.bias_active else None,
            "strength": config.bias_strength,
            "member": plan.bias_member,
            "applied": bool(plan.evidence_removed) or (plan.image_degradation > 0 and radiograph is not None),
            "evidence_removed": list(plan.evidence_removed),
            "image_degradation": plan.image_degradation,
        },
    }


def _span(s) -> dict[str, Any]:
    return {"note": s.note, "start": s.start, "end": s.end, "text": s.text}
