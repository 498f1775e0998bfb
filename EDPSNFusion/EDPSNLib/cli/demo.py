"""``edpsn demo``: fuse the shipped MRI + PET sample with the default weights, write a montage."""

from __future__ import annotations

import argparse
from pathlib import Path

from EDPSNLib.names import REGISTRATION_METHODS
from EDPSNLib.paths import repo_root

SAMPLE_DIR = repo_root() / "Resources" / "Sample"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn demo``."""
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--method", default="edpsn", help="edpsn (default weights) or a baseline")
    # The atlas pairs are registered slice by slice already; rigid MI registration of the
    # stacked (nominally spaced, smooth-PET) volumes drifts by a few mm and degrees, so the
    # demo trusts the atlas alignment. Registration itself is shown in docs/registration.md.
    parser.add_argument("--register", default="none", choices=REGISTRATION_METHODS)


def run(args: argparse.Namespace) -> int:
    """Run ``edpsn fuse`` on the sample, then save a montage of four slices."""
    import numpy as np
    from PIL import Image

    from EDPSNLib.cli.fuse import add_arguments as fuse_arguments
    from EDPSNLib.cli.fuse import run as fuse_run
    from EDPSNLib.fusion.montage import fusion_montage, pick_slices
    from EDPSNLib.fusion.normalize import normalize_mri
    from EDPSNLib.volume.io import read_volume

    out = Path(args.out)
    mri_path = SAMPLE_DIR / "harvard_case25_MRI.nrrd"
    pet_path = SAMPLE_DIR / "harvard_case25_PET.nrrd"
    parser = argparse.ArgumentParser()
    fuse_arguments(parser)
    fuse_args = parser.parse_args(
        [
            "--mri",
            str(mri_path),
            "--moving",
            str(pet_path),
            "--modality",
            "PET",
            "--out",
            str(out / "fused.nrrd"),
            "--regions",
            str(out / "regions.nrrd"),
            "--metrics",
            str(out / "metrics.csv"),
            "--transform",
            str(out / "pet_to_mri.tfm"),
            "--register",
            args.register,
            "--axis",
            "coronal",
            "--device",
            args.device,
            "--method",
            args.method,
        ]
    )
    fuse_run(fuse_args)
    mri = read_volume(mri_path).array
    pet = read_volume(pet_path).array
    fused = read_volume(out / "fused.nrrd").array
    regions = read_volume(out / "regions.nrrd").array
    tissue = (regions > 0).sum(axis=(1, 2)) > 0
    montage = fusion_montage(normalize_mri(mri), pet, fused, regions, pick_slices(tissue, 4))
    Image.fromarray(np.ascontiguousarray(montage)).save(out / "montage.png")
    print(f"Wrote {out}/fused.nrrd, regions.nrrd, metrics.csv and montage.png")
    return 0
