"""De-identification (`medmm deid`): DICOM by the PS3.15 Annex E profile, FHIR, vitals and manifests.

`deidentify(src, dst, mapping_path=...)` writes de-identified copies and a separate mapping
file that lets the data owner, and only the holder of that file, re-identify the patients.
"""

from medmm.deid.mapping import DeidMapping, PatientEntry, load_mapping
from medmm.deid.run import DeidReport, RefusedFile, deidentify

__all__ = ["DeidMapping", "DeidReport", "PatientEntry", "RefusedFile", "deidentify", "load_mapping"]
