"""Study -> model tensors (MONAI dictionary transforms)."""

from medmm.transforms.dictionary import NormalizeVitalsd, TokenizeNotesd, ToTorchd, WindowLeveld
from medmm.transforms.study import PreprocessConfig, StudyPreprocessor, primary_radiograph, primary_volume

__all__ = [
    "NormalizeVitalsd",
    "PreprocessConfig",
    "StudyPreprocessor",
    "TokenizeNotesd",
    "ToTorchd",
    "WindowLeveld",
    "primary_radiograph",
    "primary_volume",
]
