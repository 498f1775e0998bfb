"""The registration checks measured on the real volumes of shared/data (issue 13).

Run:  .venv/bin/python benchmarks/bench_registration_checks.py [--out docs/figures] [--threads 2]

(1) the cost of each orientation mode on the porcine phantom (full resolution); (2) the
Visible Male CT slab, refused, with a picture of the refused placement; (3) how much MI an
exact match loses to a sub-voxel move (the keep-start tolerance) and volumes registered to
themselves; (4) the outline Dice of correct and wrong results (the refusal bounds); (5) the
odd inputs of issue 13. Writes <out>/registration_checks.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from EDPSNLib.errors import EDPSNError  # noqa: E402
from EDPSNLib.paths import data_root  # noqa: E402
from EDPSNLib.volume.io import Volume, read_volume  # noqa: E402
from EDPSNLib.volume.registration import (  # noqa: E402
    mattes_mi,
    register,
    registration_image,
    resample_to,
)

VOL = data_root() / "volumes"
PHANTOM = VOL / "mridir_porcine_phantom"
VM = VOL / "visible_male_head"
RIRE_MR = VOL / "rire_patient001" / "training_001_mr_T1.mha"
SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Sample"


def _run(fixed: Volume, moving: Volume, **kwargs) -> dict:
    """register() timed (wall and process CPU); its figures or its refusal."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        out = register(fixed, moving, **kwargs).figures()
    except EDPSNError as exc:
        out = {"refused": str(exc)}
        result = getattr(exc, "result", None)
        if result is not None:
            out["outline_dice"] = round(result.outline_dice, 3)
    out["wall_s"] = round(time.perf_counter() - wall, 1)
    out["cpu_s"] = round(time.process_time() - cpu, 1)
    return out


def _phantom() -> tuple[Volume, Volume]:
    mr = read_volume(PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz", modality="MR")
    ct = read_volume(PHANTOM / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz", modality="CT")
    return mr, ct


def orientation_cost() -> dict:
    mr, ct = _phantom()
    return {o: _run(mr, ct, orientation=o) for o in ("header", "auto", "search", "trust")}


def visible_male(out: Path) -> dict:
    mr = read_volume(VM / "vm_head_mri.mha", modality="MR")
    ct = read_volume(VM / "vm_head_ct.mha", modality="CT")
    found = {o: _run(mr, ct, orientation=o) for o in ("search", "auto")}
    try:
        register(mr, ct, orientation="search")
    except EDPSNError as exc:  # draw what was refused: the slab where the search put it
        placed = resample_to(mr, ct, exc.result.transform, default_value=0.0).array
        rows = np.flatnonzero(placed.reshape(len(placed), -1).max(1) > 0)
        k = int(rows[len(rows) // 2])
        m = np.clip(mr.array[k] / np.percentile(mr.array, 99.5), 0, 1)
        c = np.clip(placed[k] / np.percentile(ct.array, 99.5), 0, 1)
        right = np.clip(ct.array[4] / np.percentile(ct.array, 99.5), 0, 1)
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
        axes[0].imshow(np.stack([c, m, c], -1))
        axes[0].set_title(
            f"refused: CT slab placed at MR slice {k} (Dice {exc.result.outline_dice:.2f})"
        )
        axes[1].imshow(right, cmap="gray")
        axes[1].set_title("the CT slab itself (skull vertex, table below)")
        for a in axes:
            a.set_xticks([])
            a.set_yticks([])
        fig.suptitle("Visible Male: MR green, CT magenta")
        fig.tight_layout()
        fig.savefig(out / "registration_vm_refused.png", dpi=72)
        plt.close(fig)
        found["figure"] = "registration_vm_refused.png"
    return found


def keep_start() -> dict:
    out = {}
    paths = {
        "RIRE MR-T1": RIRE_MR,
        "VM MR": VM / "vm_head_mri.mha",
        "phantom MR-T2": PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz",
    }
    for name, path in paths.items():
        vol = read_volume(path, modality="MR")
        img = registration_image(vol)
        exact = mattes_mi(img, img, sitk.Euler3DTransform())
        loss = {}
        for voxels in (0.005, 0.01, 0.02, 0.05, 0.1, 0.5):
            t = sitk.TranslationTransform(3, (voxels * vol.spacing[0], 0.0, 0.0))
            loss[voxels] = round(100 * (mattes_mi(img, img, t) - exact) / abs(exact), 2)
        out[name] = {
            "mi_loss_percent_at_shift_voxels": loss,
            "self": _run(vol, vol),
            "self_moments": _run(vol, vol, init="moments"),
        }
    return out


def outline_dice() -> dict:
    mr, ct = _phantom()
    petct = data_root() / "dicom" / "tcia_sts_001_petct"
    sample = [read_volume(SAMPLE / f"harvard_case25_{m}.nrrd") for m in ("MRI", "PET")]
    return {
        "phantom CT -> MR, auto (correct)": _run(mr, ct),
        "phantom CT -> MR, trust (wrong turn)": _run(mr, ct, orientation="trust"),
        "STS_001 PET -> CT (correct)": _run(
            read_volume(petct / "CT_crop"), read_volume(petct / "PT_FDG_original", suv=True)
        ),
        "Harvard case 25 PET (atlas-aligned), none": _run(*sample, method="none"),
    }


def odd_inputs() -> dict:
    mr = read_volume(RIRE_MR, modality="MR")
    mr = Volume(sitk.BinShrink(mr.image, [2, 2, 1]), "MR")
    out = {}
    for n in (2, 3):
        out[f"MRI of {n} slices"] = _run(Volume(mr.image[:, :, 12 : 12 + n], "MR"), mr)
    tiny = sitk.Image(mr.image)
    tiny.SetSpacing([s / 10 for s in mr.spacing])
    out["moving spacing x0.1"] = _run(mr, Volume(tiny, "CT"))
    flipped = sitk.Image(mr.image)
    d = np.array(mr.direction)
    d[:, 2] *= -1
    flipped.SetDirection(d.ravel().tolist())
    out["moving z direction flipped"] = _run(mr, Volume(flipped, "CT"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures"
    )
    ap.add_argument("--threads", type=int, default=2, help="SimpleITK threads (default 2)")
    ap.add_argument("--only", help="one section: orientation, vm, keep_start, dice, odd")
    args = ap.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    sections = {
        "orientation": orientation_cost,
        "vm": lambda: visible_male(args.out),
        "keep_start": keep_start,
        "dice": outline_dice,
        "odd": odd_inputs,
    }
    path = args.out / "registration_checks.json"
    results = json.loads(path.read_text()) if args.only and path.is_file() else {}
    for name, fn in sections.items():
        if args.only in (None, name):
            results[name] = fn()
            print(json.dumps({name: results[name]}, indent=1), flush=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
