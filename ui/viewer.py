"""A small in-page image viewer: zoom, pan, drag window/level, orientation markers, smooth scaling.

Written for this project rather than built on Gradio's image tools because (1) dragging the
window needs the real pixel values in the browser, and gr.Image only shows an 8-bit picture
already windowed on the server, with no zoom or pan as an output; (2) gr.Image serves its
picture through Gradio's file route from a shared cache folder, whereas this viewer's data
travel only in the event stream of the session that asked for them, so nothing of the patient
lies in a URL another session could fetch; (3) it has no share button to switch off. It is a
`gr.HTML` whose value is a JSON payload and whose `js_on_load` (ui.viewer_js) draws it on a canvas.

Grey payloads carry the frame as 16-bit values over [lo, hi] (the real values, HU for CT),
downsampled to at most MAX_SIDE pixels a side; colour payloads (overlays) carry a PNG.
"""

from __future__ import annotations

import base64
import io
import json

import gradio as gr
import numpy as np
from PIL import Image

from medmm.records import ImageSeries
from ui.viewer_js import VIEWER_JS

MAX_SIDE = 1024  # longest displayed side; larger images are averaged down (box filter) before they are sent
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}


def viewer(elem_id: str, *, height: int = 460, elem_classes: list[str] | None = None) -> gr.HTML:
    """An empty viewer component (its value: a payload from `grey_payload` or `colour_payload`, or "")."""
    return gr.HTML(
        "",
        html_template='<div class="mv-empty">No image</div>',
        js_on_load=VIEWER_JS,
        apply_default_css=False,
        elem_id=elem_id,
        elem_classes=["medmm-viewer", *(elem_classes or [])],
        min_height=height + 60,
        padding=False,
        container=False,
    )


def direction_label(vector: tuple[float, float, float], threshold: float = 0.25) -> str:
    """The patient direction a unit vector in DICOM patient coordinates points to, e.g. "L", "LP" (strongest first).

    Patient coordinates (LPS): +x towards the patient's left, +y posterior, +z head.
    Components below `threshold` are left out (an oblique view names up to three letters).
    """
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    parts = sorted(
        ((abs(v), pos if v > 0 else neg) for v, (pos, neg) in zip(vector, letters) if abs(v) >= threshold), reverse=True
    )
    return "".join(letter for _, letter in parts)


def _opposite(label: str) -> str:
    return "".join(_OPPOSITE.get(c, "") for c in label)


def orientation_markers(
    series: ImageSeries, patient_orientation: tuple[str, ...] | None = None
) -> tuple[dict[str, str] | None, str]:
    """(markers for the four edges, note): from ImageOrientationPatient, else PatientOrientation, else none.

    The row direction (left to right on screen) names the right edge and its opposite the left
    edge; the column direction (top to bottom) names the bottom edge and its opposite the top.
    """
    if series.orientation is not None and len(series.orientation) == 6:
        row, col = series.orientation[:3], series.orientation[3:]
        right, bottom = direction_label(row), direction_label(col)
        if right and bottom:
            return {
                "left": _opposite(right),
                "right": right,
                "top": _opposite(bottom),
                "bottom": bottom,
            }, "orientation from ImageOrientationPatient"
    if patient_orientation and len(patient_orientation) == 2:
        right, bottom = (str(x).strip().upper() for x in patient_orientation)
        if right and bottom and set(right + bottom) <= set(_OPPOSITE):
            return {
                "left": _opposite(right),
                "right": right,
                "top": _opposite(bottom),
                "bottom": bottom,
            }, "orientation from PatientOrientation"
    return None, "orientation not stated in the file: no side markers"


def _downsample(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """The frame averaged down so its longest side is at most MAX_SIDE; (frame, factor)."""
    factor = int(np.ceil(max(frame.shape[:2]) / MAX_SIDE))
    if factor <= 1:
        return frame, 1
    size = (max(frame.shape[1] // factor, 1), max(frame.shape[0] // factor, 1))
    if frame.ndim == 2:
        return np.asarray(
            Image.fromarray(frame.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX)
        ), factor
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX)), factor


def _aspect(series: ImageSeries) -> float:
    """Height of a displayed pixel over its width (row spacing / column spacing)."""
    row, col = float(series.spacing[-2]), float(series.spacing[-1])
    return row / col if row > 0 and col > 0 and 0.1 < row / col < 10 else 1.0


def grey_payload(
    series: ImageSeries,
    frame: np.ndarray,
    window: tuple[float, float],
    *,
    key: str,
    preset: str,
    caption: str,
    markers: dict[str, str] | None,
    note: str,
) -> str:
    """A grey frame (H, W) in its real units, to be windowed in the browser starting at `window` (center, width)."""
    values, factor = _downsample(np.asarray(frame, dtype=np.float32))
    finite = np.nan_to_num(values, nan=float(np.nanmin(values)) if np.isfinite(values).any() else 0.0)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    quantised = np.round((finite - lo) / (hi - lo) * 65535.0).astype("<u2")
    if factor > 1:
        caption = f"{caption} (shown at 1/{factor} of its {frame.shape[1]} x {frame.shape[0]} pixels)"
    return json.dumps(
        {
            "kind": "grey",
            "key": key,
            "preset": preset,
            "w": int(values.shape[1]),
            "h": int(values.shape[0]),
            "data": base64.b64encode(quantised.tobytes()).decode("ascii"),
            "lo": lo,
            "hi": hi,
            "center": float(window[0]),
            "width": float(max(window[1], 1e-6)),
            "unit": "HU" if series.modality == "CT" else "",
            "aspect": _aspect(series),
            "markers": markers,
            "note": note,
            "caption": caption,
        }
    )


def colour_payload(
    rgb: np.ndarray,
    *,
    key: str,
    caption: str,
    aspect: float = 1.0,
    markers: dict[str, str] | None = None,
    note: str = "",
) -> str:
    """A colour picture (H, W, 3) uint8 (an overlay): zoom and pan only."""
    picture, _ = _downsample(np.asarray(rgb, dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return json.dumps(
        {
            "kind": "rgb",
            "key": key,
            "preset": "",
            "w": int(picture.shape[1]),
            "h": int(picture.shape[0]),
            "data": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "aspect": aspect,
            "markers": markers,
            "note": note,
            "caption": caption,
        }
    )


def payload_aspect(series: ImageSeries) -> float:
    """The displayed pixel aspect of a series (for overlays drawn on it)."""
    return _aspect(series)
