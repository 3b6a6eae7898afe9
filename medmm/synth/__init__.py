"""Synthetic multimodal cohort (`medmm synth`): real DICOM, FHIR R4 and vitals files from documented rules.

Each diagnosis leaves evidence in more than one modality, the ground truth behind every case
is saved beside it, and knobs plant missing modalities and subgroup bias. See
governance/datasheet.md for the generative rules.
"""

from medmm.synth.config import SynthConfig, SynthSummary


def __getattr__(name: str):
    """`synthesize` and `MARKER` load the writers (pydicom, images) only when asked for, so reading the
    config (the command line's help does) stays light."""
    if name in ("MARKER", "synthesize"):
        from medmm.synth import cohort

        return getattr(cohort, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MARKER", "SynthConfig", "SynthSummary", "synthesize"]
