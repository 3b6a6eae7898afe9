"""Synthetic multimodal cohort (`medmm synth`): real DICOM, FHIR R4 and vitals files from documented rules.

Each diagnosis leaves evidence in more than one modality, the ground truth behind every case
is saved beside it, and knobs plant missing modalities and subgroup bias. See
governance/datasheet.md for the generative rules.
"""

from medmm.synth.cohort import MARKER, synthesize
from medmm.synth.config import SynthConfig, SynthSummary

__all__ = ["MARKER", "SynthConfig", "SynthSummary", "synthesize"]
