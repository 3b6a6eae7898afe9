"""What medmm understood of a study, as a JSON-able summary and as text (`medmm inspect`)."""

from __future__ import annotations

import numpy as np

from medmm.records import MODALITIES, Study


def describe(study: Study) -> dict:
    """A JSON-able summary of a study (shapes, counts, codes; note text is not included)."""
    demo = study.demographics
    info: dict = {
        "study_id": study.study_id,
        "study_time": study.time.isoformat() if study.time else None,
        "study_time_source": study.time_source,
        "modalities": list(study.modalities),
        "missing": [m for m in MODALITIES if m not in study.modalities],
        "demographics": None
        if demo is None
        else {
            "sex": demo.sex,
            "age_years": None if demo.age_years is None else round(demo.age_years, 2),
            "race": demo.race,
            "ethnicity": demo.ethnicity,
            "birth_sex": demo.birth_sex,
        },
        "series": [
            {
                "modality": s.modality,
                "shape": list(s.pixels.shape),
                "spacing_mm": [round(float(x), 4) for x in s.spacing],
                "photometric": s.photometric,
                "inverted": s.inverted,
                "window": None if s.window is None else [float(s.window[0]), float(s.window[1])],
                "transfer_syntax": s.transfer_syntax,
                "files": len(s.source_files),
                "value_range": [float(np.nanmin(s.pixels)), float(np.nanmax(s.pixels))] if s.pixels.size else None,
            }
            for s in study.images
        ],
        "notes": [
            {
                "type": n.type_code,
                "type_display": n.type_display,
                "time": n.time.isoformat() if n.time else None,
                "characters": len(n.text),
            }
            for n in study.notes
        ],
        "vitals": None,
        "labels": None
        if study.labels is None
        else [{"code": lab.code, "system": lab.system, "name": lab.name} for lab in study.labels],
        "warnings": [str(w) for w in study.warnings],
    }
    v = study.vitals
    if v is not None:
        channels = []
        for c, (name, unit) in enumerate(zip(v.channels, v.units)):
            observed = v.mask[:, c]
            vals = v.values[observed, c]
            channels.append(
                {
                    "channel": name,
                    "unit": unit,
                    "observed_steps": int(observed.sum()),
                    "min": round(float(vals.min()), 3) if vals.size else None,
                    "mean": round(float(vals.mean()), 3) if vals.size else None,
                    "max": round(float(vals.max()), 3) if vals.size else None,
                }
            )
        info["vitals"] = {
            "start": v.start.isoformat(),
            "steps": int(v.values.shape[0]),
            "step_minutes": None if v.per_encounter else v.step_seconds / 60.0,
            "per_encounter": v.per_encounter,
            "channels": channels,
            "dropped": [{"channel": d.channel, "reason": d.reason} for d in v.dropped],
        }
    return info


def render_text(info: dict) -> str:
    """A readable multi-line rendering of `describe`'s output (or of an error entry)."""
    lines = [f"== {info['path']}"]
    if info["status"] != "ok":
        lines.append(f"  error: {info['error_type']}: {info['message']}")
        return "\n".join(lines)
    lines.append(
        f"  study {info['study_id']}  time {info['study_time']} ({info['study_time_source'] or 'no date in the input'})"
    )
    lines.append(
        f"  modalities: {', '.join(info['modalities']) or 'none'}  missing: {', '.join(info['missing']) or 'none'}"
    )
    d = info["demographics"]
    if d:
        lines.append(
            f"  demographics: sex {d['sex']}, age {d['age_years']}, race {d['race']}, ethnicity {d['ethnicity']}"
        )
    for s in info["series"]:
        lines.append(
            f"  image {s['modality']} {'x'.join(map(str, s['shape']))} spacing {s['spacing_mm']} mm"
            f" {s['photometric']}{' (inverted)' if s['inverted'] else ''} window {s['window']} files {s['files']}"
        )
    for n in info["notes"]:
        lines.append(f"  note {n['type']} ({n['type_display']}) {n['time']} {n['characters']} chars")
    v = info["vitals"]
    if v:
        lines.append(f"  vitals: {v['steps']} steps of {v['step_minutes']:g} min from {v['start']}")
        for c in v["channels"]:
            lines.append(
                f"    {c['channel']:<12} {c['unit']:<7} observed {c['observed_steps']:>3}  min {c['min']}  mean {c['mean']}  max {c['max']}"
            )
        if v["dropped"]:
            lines.append(
                f"    dropped {len(v['dropped'])} value(s): "
                + "; ".join(sorted({f"{x['channel']} {x['reason']}" for x in v["dropped"]}))
            )
    if info["labels"] is not None:
        lines.append(
            "  labels: "
            + (", ".join(lab["name"] or f"{lab['system']}|{lab['code']}" for lab in info["labels"]) or "none")
        )
    for w in info["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
