"""DICOM series: pick one series in a folder, read it as a 3-D volume, PET SUV scaling.

Used by :mod:`EDPSNLib.volume.io`; call :func:`EDPSNLib.volume.io.read_volume` instead.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from EDPSNLib.errors import InputError

__all__ = ["SeriesInfo", "list_series", "series_files", "read_dicom_series", "suv_factor"]

#: Slice positions may deviate this much (fraction of the slice step) from a uniform grid
#: before the series is refused as having missing slices (PET bed joins deviate ~1 %).
MAX_SLICE_DEVIATION = 0.25

_META_TAGS = {
    "Modality": "0008|0060",
    "SeriesInstanceUID": "0020|000e",
    "SeriesDescription": "0008|103e",
    "StudyInstanceUID": "0020|000d",
    "FrameOfReferenceUID": "0020|0052",
    "Units": "0054|1001",
}


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder."""

    uid: str
    description: str
    modality: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"  UID {self.uid}  description '{self.description}'  modality {self.modality or '?'}"
            f"  {len(self.files)} files"
        )


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Every DICOM series (GDCM series IDs) in ``folder``, with description, modality and files."""
    out = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        try:
            reader.ReadImageInformation()
            desc, mod = _tag(reader, "0008|103e"), _tag(reader, "0008|0060")
        except RuntimeError:
            desc, mod = "?", "?"
        out.append(SeriesInfo(uid, desc, mod, tuple(files)))
    return out


def series_files(
    path: str | os.PathLike, series_uid: str | None = None, series_description: str | None = None
) -> list[str]:
    """The sorted files of one series: the only one in a folder, the one chosen, or the one holding ``path``."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    found = list_series(folder)
    if not found:
        raise InputError(
            f"No DICOM series found in {folder}; point at a folder of DICOM files "
            "(or at a .nii/.nrrd/.mha volume file)."
        )
    chosen = found
    if series_uid is not None:
        chosen = [s for s in found if s.uid == series_uid]
    elif series_description is not None:
        chosen = [s for s in found if s.description == series_description]
    elif p.is_file():
        chosen = [s for s in found if any(Path(f).samefile(p) for f in s.files)]
    if len(chosen) != 1:
        listing = "\n".join(str(s) for s in found)
        what = "none matches the requested series" if not chosen else "choose one"
        raise InputError(
            f"{folder} holds {len(found)} DICOM series; {what} (by series UID or description):"
            f"\n{listing}"
        )
    return list(chosen[0].files)


def _slice_positions(reader: sitk.ImageSeriesReader, n: int, normal: np.ndarray) -> np.ndarray:
    pos = []
    for i in range(n):
        if not reader.HasMetaDataKey(i, "0020|0032"):
            return np.empty(0)
        ipp = [float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]
        pos.append(float(np.dot(ipp, normal)))
    return np.asarray(pos)


def _check_positions(pos: np.ndarray, step: float, source: str) -> float:
    """Refuse duplicated positions (4-D series) or gaps; return the largest deviation in mm."""
    if pos.size < 2:
        return 0.0
    order = np.sort(pos)
    unique = np.unique(np.round(order, 3))
    if unique.size < order.size:
        raise InputError(
            f"{source}: {order.size} slices at only {unique.size} positions; this is a 4-D "
            "(dynamic, gated or multi-echo) series or holds duplicates. Export one 3-D frame "
            "as its own series (or give its series UID) and load that."
        )
    grid = order[0] + np.arange(order.size) * step
    deviation = float(np.abs(order - grid).max())
    if deviation > MAX_SLICE_DEVIATION * abs(step):
        raise InputError(
            f"{source}: slice positions deviate up to {deviation:.2f} mm from a regular "
            f"{abs(step):.2f} mm grid (missing or unevenly spaced slices). Re-export the "
            "complete series, or resample it to regular slices in the scanner software."
        )
    return deviation


def damaged_files(folder: str | os.PathLike, readable: set[str] | None = None) -> list[Path]:
    """Files of ``folder`` that are not complete DICOM images (truncated or damaged).

    A file GDCM could not parse is left out of every series, so a damaged slice shows up as a
    gap; naming it tells the user which file to replace.

    Args:
        folder: the series folder.
        readable: paths known to be readable (skipped, to keep the check fast).

    Returns:
        The damaged files, sorted by name.
    """
    bad = []
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file() or f.name.startswith(".") or str(f) in (readable or set()):
            continue
        try:
            ds = pydicom.dcmread(f)
            if "PixelData" in ds:
                need = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
                need *= int(ds.get("SamplesPerPixel", 1)) * int(ds.get("NumberOfFrames", 1) or 1)
                if len(ds.PixelData) < need:
                    bad.append(f)
        except Exception:  # pydicom raises several types for damaged files
            bad.append(f)
    return bad


def _with_damaged_files(exc: InputError, path: str | os.PathLike, files: list[str]) -> InputError:
    """The error, naming the folder's damaged files when there are any (their likely cause)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    bad = damaged_files(folder, set(files))
    if not bad:
        return exc
    names = ", ".join(f.name for f in bad[:10]) + (" ..." if len(bad) > 10 else "")
    return InputError(
        f"{folder}: {len(bad)} file(s) are truncated or damaged and were left out of the "
        f"series: {names}. Replace them from the original export (the rest of the series: "
        f"{exc})"
    )


def read_dicom_series(
    path: str | os.PathLike, series_uid: str | None = None, series_description: str | None = None
) -> tuple[sitk.Image, dict[str, Any]]:
    """Read one DICOM series as a 3-D image (each slice's own rescale applied) plus metadata."""
    files = series_files(path, series_uid, series_description)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    # ITK prints a warning for PET bed joins; the deviation is measured and kept in meta instead.
    warn = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.GlobalWarningDisplayOff()
    try:
        image = reader.Execute()
        slopes = {
            reader.GetMetaData(i, "0028|1053").strip()
            for i in range(len(files))
            if reader.HasMetaDataKey(i, "0028|1053")
        }
        if len(slopes) > 1 and image.GetPixelID() in (
            sitk.sitkInt16,
            sitk.sitkUInt16,
            sitk.sitkInt32,
        ):
            # An integer pixel type picked from the first slice would round the other slices'
            # rescaled values: read again as float, each slice keeping its own slope.
            reader.SetOutputPixelType(sitk.sitkFloat32)
            image = reader.Execute()
    except RuntimeError as exc:
        raise _with_damaged_files(
            InputError(
                f"Cannot read the DICOM series in {path}: "
                f"{str(exc).strip().splitlines()[-1][:200]}. Check that the files are complete."
            ),
            path,
            [],
        ) from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn)
    meta: dict[str, Any] = {"format": "dicom", "n_files": len(files)}
    for name, key in _META_TAGS.items():
        if reader.HasMetaDataKey(0, key):
            meta[name] = reader.GetMetaData(0, key).strip()
    if image.GetDimension() == 3 and image.GetSize()[2] > 1:
        normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
        pos = _slice_positions(reader, len(files), normal)
        try:
            meta["slice_deviation_mm"] = _check_positions(pos, image.GetSpacing()[2], str(path))
        except InputError as exc:
            raise _with_damaged_files(exc, path, files) from None
    return image, meta


def _seconds(date: str, time: str) -> float:
    """DICOM DA + TM (HHMMSS.frac, colons tolerated) as POSIX-like seconds."""
    t = time.strip().replace(":", "")
    if len(t) < 2 or not t[:2].isdigit():
        raise ValueError(f"bad time {time!r}")
    hh, mm = int(t[:2]), int(t[2:4] or 0)
    ss = float(t[4:] or 0)
    day = dt.datetime.strptime(date.strip(), "%Y%m%d") if date.strip() else dt.datetime(1970, 1, 1)
    return day.replace(tzinfo=dt.timezone.utc).timestamp() + hh * 3600 + mm * 60 + ss


def _datetime_seconds(value: str) -> float:
    """DICOM DT (YYYYMMDDHHMMSS.frac[+ZZZZ]) as seconds."""
    v = value.strip().split("+")[0].split("-")[0]
    return _seconds(v[:8], v[8:] or "000000")


def suv_factor(
    dicom_path: str | os.PathLike,
    series_uid: str | None = None,
    series_description: str | None = None,
) -> float:
    """Body-weight SUV factor (g/Bq) of a PET series: SUVbw = value[Bq/ml] * factor.

    factor = weight[g] / (dose[Bq] * 2^(-t / half-life)), t from injection to the scan start
    (DecayCorrection START) or 0 (ADMIN); 1.0 when the series is already in SUVbw (Units GML).
    """
    files = series_files(dicom_path, series_uid, series_description)
    try:
        heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    except Exception as exc:  # pydicom raises several types for damaged files
        raise InputError(f"Cannot read DICOM headers in {dicom_path}: {exc}") from None
    ds = heads[0]
    if ds.get("Modality", "") != "PT":
        raise InputError(f"SUV needs a PET series; {dicom_path} has Modality {ds.get('Modality')}.")
    units = str(ds.get("Units", "")).upper()
    if units == "GML":
        return 1.0
    if units != "BQML":
        raise InputError(
            f"PET Units are '{units}', not BQML; SUV conversion needs activity concentration "
            "in Bq/ml. Read the volume without SUV conversion (leave out --suv)."
        )
    missing = []
    weight = float(ds.get("PatientWeight") or 0.0)
    if weight <= 0:
        missing.append("PatientWeight")
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    rp = seq[0] if seq else pydicom.Dataset()
    dose = float(rp.get("RadionuclideTotalDose") or 0.0)
    half_life = float(rp.get("RadionuclideHalfLife") or 0.0)
    if dose <= 0:
        missing.append("RadionuclideTotalDose")
    if half_life <= 0:
        missing.append("RadionuclideHalfLife")
    if missing:
        raise InputError(
            f"Cannot compute SUV for {dicom_path}: missing or zero {', '.join(missing)}. "
            "Read the volume without SUV conversion (leave out --suv) (values stay in Bq/ml)."
        )
    correction = str(ds.get("DecayCorrection", "")).upper()
    if correction == "ADMIN":
        decay_s = 0.0
    elif correction == "START":
        decay_s = _decay_seconds(heads, rp, str(dicom_path))
    else:
        raise InputError(
            f"PET DecayCorrection is '{correction}'; only START and ADMIN are supported for "
            "SUV. Read the volume without SUV conversion (leave out --suv)."
        )
    return weight * 1000.0 / (dose * 2.0 ** (-decay_s / half_life))


def _decay_seconds(heads: list[pydicom.Dataset], rp: pydicom.Dataset, source: str) -> float:
    """Seconds from injection to the scan start (SeriesTime, or the earliest AcquisitionTime
    when post-processing moved SeriesTime later, as QIBA recommends)."""
    ds = heads[0]
    try:
        scan = _seconds(ds.get("SeriesDate", ""), ds.SeriesTime)
        acq = [
            _seconds(h.get("AcquisitionDate", ""), h.AcquisitionTime)
            for h in heads
            if h.get("AcquisitionTime")
        ]
        if acq and min(acq) < scan:
            scan = min(acq)
        if rp.get("RadiopharmaceuticalStartDateTime"):
            inject = _datetime_seconds(rp.RadiopharmaceuticalStartDateTime)
        else:
            inject = _seconds(ds.get("SeriesDate", ""), rp.RadiopharmaceuticalStartTime)
    except (AttributeError, ValueError):
        raise InputError(
            f"Cannot compute SUV for {source}: the series or injection time is missing or "
            "malformed. Read the volume without SUV conversion (leave out --suv)."
        ) from None
    delta = scan - inject
    if delta < 0 and not rp.get("RadiopharmaceuticalStartDateTime"):
        delta += 86400.0  # injected before midnight, scanned after (time without date)
    if not 0 <= delta < 86400:
        raise InputError(f"Implausible injection-to-scan time {delta:.0f} s in {source}.")
    return delta
