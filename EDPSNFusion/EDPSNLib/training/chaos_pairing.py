"""MRI-CT training pairs from CHAOS, where CT and MR come from different patients.

Pairing rule: CT and MR patients are each sorted by id (numerically); the k-th usable CT is
paired with the (k mod n_MR)-th usable MR, so every CT is used once and MR volumes are reused
when there are fewer of them. A pairing file (CSV with ``ct_id,mr_id`` columns) overrides it.
Each CT is registered (affine by default, Mattes MI, started from the foreground centres of
mass) onto its MR, both are resampled onto one square axial grid around the MR, normalised as
the fusion pipeline does, and the slices with tissue in both become one case ``ct<i>_mr<j>``
of the ``MRI-CT`` set. Split: the last ``test_pairs`` planned pairs (in CT order) are test
cases, so test slices never come from a training pair. Every pair, used or skipped, is a row
of ``<out>/chaos_pairing.csv``; the manifest ``source`` holds the same record.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from EDPSNLib.atomic import write_text_atomic
from EDPSNLib.data.chaos import ChaosPatient, read_chaos_volume, usable_chaos_patients
from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.fusion.normalize import normalize_mri, to_uint8, window_ct
from EDPSNLib.names import CHAOS_REGISTRATION_METHODS
from EDPSNLib.training.dataset_writer import add_case, read_manifest, remove_case, tissue_slices
from EDPSNLib.volume.io import Volume
from EDPSNLib.volume.registration import ORIENTATIONS, RegistrationResult, register, resample_to
from EDPSNLib.volume.transforms import corner_points

PAIR = "MRI-CT"
PAIRING_FILE = "chaos_pairing.csv"
PAIRING_RULE = "CT k with MR (k mod n_MR), both sorted by patient id"
DEFAULT_WINDOW = "soft-tissue"
COLUMNS = (
    "case",
    "split",
    "status",
    "reason",
    "ct_id",
    "mr_id",
    "ct_path",
    "mr_path",
    "method",
    "orientation",
    "transform",
    "center",
    "metric_before",
    "final_metric",
    "overlap",
    "n_slices",
    "slices",
)


@dataclass
class PlannedPair:
    """One CT patient paired with one MR patient, and the split its slices go to."""

    ct: ChaosPatient
    mr: ChaosPatient
    split: str

    @property
    def case(self) -> str:
        """Case name in the data set, e.g. ``ct1_mr5``."""
        return f"ct{self.ct.id}_mr{self.mr.id}"


def read_pairing_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(ct_id, mr_id)`` rows of a user pairing CSV (header ``ct_id,mr_id``)."""
    p = Path(path).expanduser()
    try:
        rows = list(csv.DictReader(p.read_text().splitlines()))
    except OSError as exc:
        raise InputError(f"Cannot read pairing file {p}: {exc}.") from None
    if not rows or not {"ct_id", "mr_id"} <= set(rows[0]):
        raise InputError(f"Pairing file {p} needs a header 'ct_id,mr_id' and one row per pair.")
    return [(r["ct_id"].strip(), r["mr_id"].strip()) for r in rows]


def plan_pairs(
    cts: list[ChaosPatient],
    mrs: list[ChaosPatient],
    test_pairs: int,
    pairing: list[tuple[str, str]] | None = None,
) -> list[PlannedPair]:
    """Pairs by the rule (or ``pairing``); the last ``test_pairs`` of them are test pairs."""
    if pairing is None:
        chosen = [(ct, mrs[k % len(mrs)]) for k, ct in enumerate(cts)]
    else:
        by_ct, by_mr = {p.id: p for p in cts}, {p.id: p for p in mrs}
        unknown = [f"{c}/{m}" for c, m in pairing if c not in by_ct or m not in by_mr]
        if unknown:
            raise InputError(
                f"Pairing file names CT/MR ids that are not usable patients: {unknown[:8]}. "
                f"Usable CT: {sorted(by_ct)}; MR: {sorted(by_mr)}."
            )
        chosen = [(by_ct[c], by_mr[m]) for c, m in pairing]
    if not chosen:
        raise InputError("The pairing file lists no pairs; add 'ct_id,mr_id' rows.")
    if not 0 <= test_pairs < len(chosen):
        raise InputError(
            f"--test-pairs {test_pairs} must leave at least one of the {len(chosen)} pairs for "
            "training (and not be negative)."
        )
    n_train = len(chosen) - test_pairs
    return [
        PlannedPair(ct, mr, "train" if k < n_train else "test") for k, (ct, mr) in enumerate(chosen)
    ]


def default_test_pairs(n_pairs: int) -> int:
    """One pair in five for testing (at least one when there are two or more pairs)."""
    return 0 if n_pairs < 2 else max(1, round(n_pairs / 5))


def register_ct_to_mr(
    mr: Volume,
    ct: Volume,
    method: str = "affine",
    orientation: str = "trust",
    threads: int | None = None,
) -> RegistrationResult:
    """CT onto MR of another patient, started from the foreground centres of mass."""
    if method not in CHAOS_REGISTRATION_METHODS:
        raise InputError(f"Unknown registration '{method}' for CHAOS; choose affine or rigid.")
    if orientation not in ORIENTATIONS:
        raise InputError(f"Unknown orientation '{orientation}'; choose {', '.join(ORIENTATIONS)}.")
    # 'trust' by default: for different patients a 180-degree turned CT can fit slightly
    # better by chance, but a CHAOS scan's header orientation is right.
    return register(mr, ct, method, "moments", orientation=orientation, threads=threads)


def training_grid(mr: Volume, size: int) -> Volume:
    """An axial (LPS identity) grid of size x size pixels covering the MR's box, square in
    plane (so no slice is stretched), with the MR's slice spacing along z."""
    corners = corner_points(mr.image)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    z_axis = int(np.argmax(np.abs(mr.direction[2, :])))  # index axis closest to world z
    dz = float(mr.spacing[z_axis])
    fov = float(max(hi[0] - lo[0], hi[1] - lo[1]) + min(mr.spacing))
    dxy = fov / size
    nz = int(np.floor((hi[2] - lo[2]) / dz + 1e-3)) + 1
    centre = (lo + hi) / 2.0
    image = sitk.Image([size, size, nz], sitk.sitkFloat32)
    image.SetSpacing([dxy, dxy, dz])
    image.SetOrigin([centre[0] - dxy * (size - 1) / 2, centre[1] - dxy * (size - 1) / 2, lo[2]])
    return Volume(image, "MR", {})


def pair_slices(
    mr: Volume, ct: Volume, transform: sitk.Transform, size: int, window: str | tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 MR and CT axial slices (N, size, size) with tissue in both, and their indices."""
    grid = training_grid(mr, size)
    mr01 = normalize_mri(resample_to(grid, mr).array)
    ct01 = window_ct(resample_to(grid, ct, transform).array, window)
    keep = tissue_slices(mr01, ct01)
    return to_uint8(mr01[keep]), to_uint8(ct01[keep]), keep


def _slices_text(indices: np.ndarray) -> str:
    return " ".join(str(int(i)) for i in indices)


def _registration_record(r: RegistrationResult) -> dict[str, Any]:
    return {
        "method": r.method,
        "init": r.init,
        "orientation": r.orientation,
        "transform": " ".join(f"{v:.6g}" for v in r.transform.GetParameters()),
        "center": " ".join(f"{v:.6g}" for v in r.transform.GetFixedParameters()),
        "metric_before": round(r.metric_before, 6),
        "final_metric": round(r.final_metric, 6),
        "overlap": round(r.overlap, 4),
        "iterations": r.iterations,
    }


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_pairing_records(out: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``<out>/chaos_pairing.csv`` (empty when it does not exist yet)."""
    path = Path(out) / PAIRING_FILE
    return list(csv.DictReader(path.read_text().splitlines())) if path.is_file() else []


@dataclass
class ChaosOptions:
    """Settings of one CHAOS preparation (they also decide whether a case is re-done)."""

    sequence: str = "T2SPIR"
    window: str | tuple[float, float] = DEFAULT_WINDOW
    method: str = "affine"
    orientation: str = "trust"
    size: int = 256
    test_pairs: int | None = None
    threads: int | None = None

    def key(self) -> dict[str, Any]:
        """What a written case must match to be kept on a re-run."""
        window = self.window if isinstance(self.window, str) else [float(v) for v in self.window]
        return {
            "sequence": self.sequence,
            "window": window,
            "method": self.method,
            "orientation": self.orientation,
            "size": self.size,
        }


def prepare_chaos(
    mr_root: str | os.PathLike,
    out: str | os.PathLike,
    opts: ChaosOptions,
    ct_root: str | os.PathLike | None = None,
    pairing_file: str | os.PathLike | None = None,
    warn: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, int, str], None] = lambda d, t, m: None,
) -> dict[str, Any]:
    """Build (or resume) the MRI-CT data set in ``out``; returns a summary of pairs and slices."""
    out = Path(out).expanduser()
    mrs, mr_bad = usable_chaos_patients(mr_root, "MR", opts.sequence, warn, read=True)
    cts, ct_bad = usable_chaos_patients(ct_root or mr_root, "CT", None, warn, read=False)
    pairing = read_pairing_file(pairing_file) if pairing_file else None
    n_planned = len(pairing) if pairing is not None else len(cts)
    test = default_test_pairs(n_planned) if opts.test_pairs is None else opts.test_pairs
    plan = plan_pairs(cts, mrs, test, pairing)
    done = {e["case"]: e for e in read_manifest(out)["cases"] if e["pair"] == PAIR}
    old_rows = {r["case"]: r for r in read_pairing_records(out)}
    rows: list[dict[str, Any]] = []
    for k, p in enumerate(plan):
        progress(k, len(plan), f"{p.case}: CT {p.ct.id} onto MR {p.mr.id} {opts.sequence}")
        source = {
            "dataset": "CHAOS",
            "rule": PAIRING_RULE if pairing is None else f"file {pairing_file}",
            "ct": {"id": p.ct.id, "path": str(p.ct.path), "layout": p.ct.layout},
            "mr": {
                "id": p.mr.id,
                "path": str(p.mr.path),
                "layout": p.mr.layout,
                "sequence": opts.sequence,
            },
            "settings": opts.key(),
        }
        row = {
            "case": p.case,
            "split": p.split,
            "ct_id": p.ct.id,
            "mr_id": p.mr.id,
            "ct_path": str(p.ct.path),
            "mr_path": str(p.mr.path),
        }
        old = done.get(p.case)
        if old is not None and old["split"] == p.split and _same_source(old["source"], source):
            kept = {**row, "n_slices": len(old["slices"]), **old_rows.get(p.case, {})}
            rows.append({**kept, "status": "kept", "split": p.split, "reason": ""})
            _write_rows(out, rows)
            continue
        try:
            mr, ct = read_chaos_volume(p.mr), read_chaos_volume(p.ct)
            reg = register_ct_to_mr(mr, ct, opts.method, opts.orientation, opts.threads)
            row.update({k: v for k, v in _registration_record(reg).items() if k in COLUMNS})
            mr_u8, ct_u8, idx = pair_slices(mr, ct, reg.transform, opts.size, opts.window)
            if len(idx) == 0:
                raise RegistrationError(
                    "no slice has tissue in both MR and registered CT: the volumes do not "
                    "overlap after registration (different body regions?)"
                )
        except (InputError, RegistrationError) as exc:
            reason = str(exc).replace("\n", " ")
            warn(f"Skipping pair {p.case} (CT {p.ct.id}, MR {p.mr.id}): {reason}")
            if old is not None:  # its slices were made with other settings: not in the set now
                remove_case(out, PAIR, p.case)
                warn(f"Removed the earlier slices of {p.case} from the data set.")
            rows.append({**row, "status": "skipped", "reason": reason})
            _write_rows(out, rows)
            continue
        source["registration"] = _registration_record(reg)
        source["slices"] = [int(i) for i in idx]
        add_case(out, PAIR, p.case, mr_u8, ct_u8, idx.tolist(), p.split, source)
        rows.append({**row, "status": "ok", "n_slices": len(idx), "slices": _slices_text(idx)})
        _write_rows(out, rows)
    # CHAOS cases of an earlier plan that this one no longer has (e.g. fewer CTs, another
    # pairing file) would otherwise stay in the set; other sources' cases are left alone.
    for stale in sorted(set(done) - {p.case for p in plan}):
        if done[stale].get("source", {}).get("dataset") == "CHAOS":
            remove_case(out, PAIR, stale)
            warn(f"Removed case {stale} of an earlier run: it is not in this pairing plan.")
    progress(len(plan), len(plan), "done")
    used = [r for r in rows if r["status"] in ("ok", "kept")]
    if not used:
        raise InputError(
            f"No CHAOS pair could be used ({len(rows)} skipped; reasons in "
            f"{out / PAIRING_FILE}). Check that the CT and MR show the same body region."
        )
    slices = {
        s: sum(int(r.get("n_slices") or 0) for r in used if r["split"] == s)
        for s in ("train", "test")
    }
    return {
        "pairs_used": len(used),
        "pairs_skipped": len(rows) - len(used),
        "pairs_kept": sum(r["status"] == "kept" for r in rows),
        "patients_skipped": [p.label for p, _ in mr_bad + ct_bad],
        "slices": slices,
        "pairing_file": str(out / PAIRING_FILE),
        "dataset": str(out),
    }


def _same_source(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("ct", "mr", "settings")
    return all(old.get(k) == new.get(k) for k in keys)


def _write_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    """The pairing file after every pair, so an interrupted run leaves a true record."""
    write_text_atomic(out / PAIRING_FILE, _csv_text(rows))
