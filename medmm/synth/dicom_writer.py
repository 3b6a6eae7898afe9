"""Write synthetic radiographs and CT volumes as DICOM Part-10 files.

UIDs come from the seed and the patient (pydicom's generate_uid with entropy sources) and
every date from the planned study time, so the same seed writes byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

from medmm.codes import SOP_CR, SOP_CT, SOP_DX
from medmm.synth.ct import CtVolume
from medmm.synth.plan import PatientPlan
from medmm.synth.radiograph import Radiograph

MANUFACTURER = "medmm synthetic cohort"
CODECS = {"": ExplicitVRLittleEndian, "rle": RLELossless, "j2k": JPEG2000Lossless}
_PLUGINS = {"rle": "pydicom", "j2k": "pylibjpeg"}


@dataclass(frozen=True)
class WrittenImage:
    """Where an image went and how it was encoded."""

    files: tuple[str, ...]  # paths relative to the patient folder
    sop_class: str
    series_uid: str
    transfer_syntax: str
    photometric: str


def uid_for(plan: PatientPlan, *parts: object) -> UID:
    """A UID fixed by the seed, the patient and `parts`."""
    return generate_uid(entropy_srcs=["medmm-synth", str(plan.seed), plan.patient_id, *map(str, parts)])


def _da(t: datetime) -> str:
    return t.strftime("%Y%m%d")


def _tm(t: datetime) -> str:
    return t.strftime("%H%M%S")


def _base_dataset(plan: PatientPlan, sop_class: str, sop_uid: UID, modality: str, series: int) -> Dataset:
    """Patient, study, series, equipment and SOP common modules shared by every image."""
    t = plan.study_time
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if modality != "CT" else ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = _da(t)
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = _tm(t)
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.AccessionNumber = f"A{plan.seed % 1000:03d}{plan.index:06d}"
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "medmm-synth"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CHEST"
    ds.PatientName = ""  # synthetic and pseudonymous: no names anywhere
    ds.PatientID = plan.patient_id
    ds.PatientBirthDate = plan.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "F" if plan.sex == "female" else "M"
    ds.PatientAge = f"{plan.age_years:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = uid_for(plan, "study")
    ds.SeriesInstanceUID = uid_for(plan, "series", modality)
    ds.StudyID = f"{plan.index:06d}"
    ds.SeriesNumber = series
    return ds


def _pixel_module(ds: Dataset, photometric: str, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0


def _save(path: Path, ds: Dataset, pixels: np.ndarray, codec: str) -> str:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if codec:
        ds.compress(CODECS[codec], pixels, encoding_plugin=_PLUGINS[codec], generate_instance_uid=False)
    else:
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return str(ds.file_meta.TransferSyntaxUID)


def write_radiograph(folder: Path, plan: PatientPlan, image: Radiograph, view: str) -> WrittenImage:
    """Write the chest radiograph (CR or DX) of `plan` under folder/images/."""
    dx = plan.dicom_modality == "DX"
    sop_class = SOP_DX if dx else SOP_CR
    ds = _base_dataset(plan, sop_class, uid_for(plan, "radiograph"), plan.dicom_modality, 1)
    ds.SeriesDescription = f"CHEST {view}"
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"]  # PA display: columns towards the patient's left, rows to the feet
    ds.InstanceNumber = 1
    rows, cols = image.pixels.shape
    photometric = "MONOCHROME1" if plan.monochrome1 else "MONOCHROME2"
    _pixel_module(ds, photometric, rows, cols)
    spacing = [f"{image.spacing_mm:.4f}", f"{image.spacing_mm:.4f}"]
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImagerPixelSpacing = spacing
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        # +1: lower values mean less beam intensity (denser), i.e. the MONOCHROME1 storage.
        ds.PixelIntensityRelationshipSign = 1 if plan.monochrome1 else -1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    else:
        ds.PixelSpacing = spacing
    stored = (4095 - image.pixels) if plan.monochrome1 else image.pixels  # MONOCHROME1: inverted storage
    if plan.has_window:
        lo, hi = np.percentile(image.pixels, [1, 99])
        centre = (lo + hi) / 2 if not plan.monochrome1 else 4095 - (lo + hi) / 2  # in stored values
        ds.WindowCenter, ds.WindowWidth = str(int(round(centre))), str(int(round(max(hi - lo, 1))))
    name = "images/radiograph.dcm"
    syntax = _save(folder / name, ds, stored.astype(np.uint16), plan.compression)
    return WrittenImage((name,), sop_class, str(ds.SeriesInstanceUID), syntax, photometric)


def write_ct(folder: Path, plan: PatientPlan, volume: CtVolume, rng: np.random.Generator) -> WrittenImage:
    """Write the CT volume as one file per slice, in shuffled order under meaningless names."""
    s_n, rows, cols = volume.hu.shape
    stored = np.clip(volume.hu.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)  # (S, H, W)
    order = rng.permutation(s_n)
    names = [f"images/ct/{int(k):08x}.dcm" for k in rng.integers(0, 2**32, s_n)]
    z0 = float(rng.uniform(-250, -150))
    origin_x = -cols * volume.pixel_mm / 2
    origin_y = -rows * volume.pixel_mm / 2
    written = []
    syntax = ""
    for k in order:  # writing order is deliberately not the anatomical order
        ds = _base_dataset(plan, SOP_CT, uid_for(plan, "ct", int(k)), "CT", 2)
        ds.SeriesDescription = "CHEST AXIAL"
        ds.FrameOfReferenceUID = uid_for(plan, "frame")
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.InstanceNumber = int(k) + 1
        z = z0 + k * volume.slice_mm
        ds.ImagePositionPatient = [f"{origin_x:.3f}", f"{origin_y:.3f}", f"{z:.3f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{z:.3f}"
        ds.SliceThickness = f"{volume.slice_mm:.3f}"
        ds.PixelSpacing = [f"{volume.pixel_mm:.4f}", f"{volume.pixel_mm:.4f}"]
        ds.KVP = "120"
        _pixel_module(ds, "MONOCHROME2", rows, cols)
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
        syntax = _save(folder / names[k], ds, stored[k], "")
        written.append(names[k])
    return WrittenImage(tuple(written), SOP_CT, uid_for(plan, "series", "CT"), syntax, "MONOCHROME2")
