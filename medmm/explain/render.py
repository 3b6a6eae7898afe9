"""Explanations drawn for people: image overlays, a vital-signs plot, notes with highlighted words.

Every view carries a caption naming the diagnosis, its probability and the method, and says
that medmm is for research use only. Figures are drawn with matplotlib's object API (no
pyplot state), so rendering is safe from any thread. Heat is relevance as a fraction of the
map's maximum, so the strongest evidence is always full colour.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from medmm.explain.capture import IMPRESSION
from medmm.explain.explainer import METHOD_LABELS
from medmm.explain.mapping import ImageMap, NotesMap, VitalsMap, model_pixels
from medmm.io.window import apply_window, series_window
from medmm.records import ImageSeries, Study, VitalSeries

DISCLAIMER = "Research use only; not a medical device."
HEAT = "inferno"
_NOTE_RGB = (220, 38, 38)
MIN_SHADE = 0.005  # words below half a percent of the strongest stay unmarked (invisible anyway)


def caption(target: str, probability: float | None, method: str, display: str | None = None) -> str:
    """E.g. "Pneumonia (probability 83%): attention (gradient-weighted)"; `display` names the target (default: its name)."""
    name = "Impression" if target == IMPRESSION else (display or target)
    prob = "" if probability is None else f" (probability {probability:.0%})"
    return f"{name}{prob}: {METHOD_LABELS.get(method, method)}"


def heat_fraction(relevance: np.ndarray) -> np.ndarray:
    """Relevance as a fraction of its maximum (all 0 for an all-zero map)."""
    top = float(np.max(relevance)) if relevance.size else 0.0
    return relevance / top if top > 0 else np.zeros_like(relevance, dtype=np.float64)


def overlay(grey: np.ndarray, relevance: np.ndarray, *, opacity: float = 0.6) -> np.ndarray:
    """RGB (H, W, 3) in [0, 1]: the grey image blended with the heat colour, weight opacity * relevance/max."""
    heat = heat_fraction(relevance)  # (H, W)
    colour = colormaps[HEAT](heat)[..., :3]  # (H, W, 3)
    weight = opacity * heat[..., None]  # (H, W, 1)
    return (1.0 - weight) * np.repeat(grey[..., None], 3, axis=-1) + weight * colour


def _colour_bar(fig: Figure, ax, label: str = "relevance (fraction of maximum)") -> None:
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[HEAT]), ax=ax, fraction=0.046, pad=0.04, label=label)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100)
    return path


def slice_to_draw(relevance: np.ndarray) -> int:
    """The slice of a volume map (S, H, W) holding the most relevance (the first on ties)."""
    return int(np.argmax(relevance.reshape(relevance.shape[0], -1).sum(axis=1)))


def render_image(series: ImageSeries, image: ImageMap, text: str, path: str | Path) -> Path:
    """PNG: the windowed image with the relevance heat map, a colour bar and the caption.

    For a volume the slice that holds the most relevance is drawn, and named in the caption.
    """
    pixels = model_pixels(series) if image.relevance.ndim == 2 else series.pixels.astype(np.float32)
    relevance = image.relevance
    if relevance.ndim == 3:
        index = slice_to_draw(relevance)
        pixels, relevance = pixels[index], relevance[index]
        text = f"{text} (slice {index + 1} of {image.relevance.shape[0]})"
    grey = apply_window(pixels, series_window(series.window, pixels))
    fig = Figure(figsize=(6.0, 6.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(overlay(grey, relevance), interpolation="nearest")
    ax.set_axis_off()
    _colour_bar(fig, ax)
    fig.suptitle(text, fontsize=10)
    fig.text(0.5, 0.01, DISCLAIMER, ha="center", fontsize=7, color="0.4")
    return _save(fig, Path(path))


def render_vitals(series: VitalSeries, vitals: VitalsMap, text: str, path: str | Path) -> Path:
    """PNG: one band per observed channel, shaded per time step by relevance, with the channel's values drawn across it.

    Each band scales its channel between the channel's lowest and highest value, which are
    written beside it with the unit, so shapes over time stay readable on one shared axis.
    """
    heat = heat_fraction(vitals.relevance)  # (T, C)
    # a per-encounter grid is drawn one encounter per unit, oldest first (its gaps are uneven)
    per_encounter = vitals.step_times is not None
    step = 1.0 if per_encounter else vitals.step_seconds / 3600.0
    x = np.arange(vitals.relevance.shape[0], dtype=np.float64) if per_encounter else vitals.hours
    end = vitals.relevance.shape[0] * step
    rows = [c for c, name in enumerate(vitals.channels) if name in series.channels and vitals.observed[:, c].any()]
    fig = Figure(figsize=(8.0, 0.6 * max(len(rows), 1) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        # band i covers y in [i, i + 1); step t covers x in [t * step, (t + 1) * step)
        ax.imshow(
            heat[:, rows].T,
            extent=(0.0, end, len(rows), 0.0),
            aspect="auto",
            cmap=HEAT,
            vmin=0.0,
            vmax=1.0,
            alpha=0.75,
            interpolation="nearest",
        )
    for i, c in enumerate(rows):
        src = series.channels.index(vitals.channels[c])
        observed = series.mask[:, src]
        values = series.values[observed, src].astype(np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = 0.5 if high == low else (values - low) / (high - low)
        y = i + 0.9 - 0.8 * np.asarray(scaled, dtype=np.float64)  # higher values drawn higher in the band
        ax.plot(x[observed] + step / 2, np.broadcast_to(y, values.shape), "o-", color="cyan", markersize=2, linewidth=1)
        ax.text(end * 1.01, i + 0.5, f"{low:g}-{high:g} {series.units[src]}", va="center", fontsize=7)
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [vitals.channels[c] for c in rows], fontsize=8)
    ax.set_ylim(max(len(rows), 1), 0)
    ax.set_xlim(0.0, end if end > 0 else 1.0)
    ax.set_xlabel(
        f"encounters from {vitals.start.date().isoformat()} (oldest first)"
        if per_encounter
        else f"hours from {vitals.start.isoformat()}",
        fontsize=8,
    )
    ax.tick_params(axis="x", labelsize=7)
    fig.subplots_adjust(left=0.14, right=0.70, top=0.85, bottom=0.2)
    bar = fig.add_axes((0.88, 0.2, 0.02, 0.65))
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[HEAT]), cax=bar, label="relevance (fraction of maximum)")
    fig.suptitle(text, fontsize=10)
    fig.text(0.5, 0.01, DISCLAIMER, ha="center", fontsize=7, color="0.4")
    return _save(fig, Path(path))


def notes_html(study: Study, notes: NotesMap, text: str) -> str:
    """A standalone HTML page: the notes the model read, each word shaded by relevance / maximum."""
    top = max((w.relevance for w in notes.words), default=0.0)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(text)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}"
        "pre{white-space:pre-wrap;font-family:inherit;line-height:1.6}"
        "mark{color:inherit;border-radius:2px}.unread{color:#999}.caption{font-weight:bold}"
        ".disclaimer{color:#666;font-size:small}</style></head><body>",
        f'<p class="caption">{html.escape(text)}</p>',
        f'<p class="disclaimer">{html.escape(DISCLAIMER)} Shading: relevance as a fraction of the strongest word; '
        "grey text lies after the token limit and was not read.</p>",
    ]
    for index in notes.notes:
        note = study.notes[index]
        title = " ".join(
            x for x in (note.type_display or note.type_code or "note", note.time.isoformat() if note.time else "") if x
        )
        parts.append(f'<section class="note" data-note="{index}"><h3>{html.escape(title)}</h3><pre>')
        parts.append(highlight(note.text, notes.for_note(index), top))
        parts.append("</pre></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def highlight(text: str, words, top: float) -> str:
    """`text` escaped, each word with relevance / top >= MIN_SHADE wrapped in <mark> (alpha = relevance / top), unread words greyed."""
    out, pos = [], 0
    for w in words:
        out.append(html.escape(text[pos : w.start]))
        word = html.escape(text[w.start : w.end])
        if not w.read:
            out.append(f'<span class="unread">{word}</span>')
        elif top > 0 and w.relevance / top >= MIN_SHADE:
            alpha = w.relevance / top
            r, g, b = _NOTE_RGB
            out.append(
                f'<mark style="background-color: rgba({r}, {g}, {b}, {alpha:.3f})" title="relevance {w.relevance:.4f}">{word}</mark>'
            )
        else:
            out.append(word)
        pos = w.end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def render_notes(study: Study, notes: NotesMap, text: str, path: str | Path) -> Path:
    """Write `notes_html` to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notes_html(study, notes, text), encoding="utf-8")
    return path
