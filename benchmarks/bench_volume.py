"""End-to-end volume fusion benchmark: read, register, fuse, metrics, write; time per stage and
peak memory (each size in a fresh process, so ru_maxrss is that run's own peak).

The volumes are real: Harvard MRI-PET slices of atlas cases 25, 30 and 41 stacked into a
256x256xN MRI and RGB PET pair (nominal spacing 1 x 1 x 2 mm); the PET's header is turned by
4 degrees and shifted by (6, -4, 4) mm so the rigid registration has real work to do.

Run: .venv/bin/python benchmarks/bench_volume.py --slices 45,90,180 [--method edpsn] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from EDPSNLib.data.harvard import list_pairs, load_pairs

STAGES = ("read", "register", "fuse", "metrics", "write")


def make_pair(n: int, folder: Path) -> tuple[Path, Path]:
    """Write an N-slice MRI + misaligned PET pair as NRRD files."""
    pairs = sorted(list_pairs("MRI-PET", "all"), key=lambda p: (p.name[:2], int(p.name)))[:n]
    mri, pet = load_pairs(pairs)
    angle = math.radians(4.0)
    rot = (math.cos(angle), -math.sin(angle), 0, math.sin(angle), math.cos(angle), 0, 0, 0, 1)
    paths = []
    for name, arr, vec in (("mri", mri, False), ("pet", pet, True)):
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=vec)
        img.SetSpacing((1.0, 1.0, 2.0))
        if vec:
            img.SetDirection(rot)
            img.SetOrigin((6.0, -4.0, 4.0))
        path = folder / f"{name}_{n}.nrrd"
        sitk.WriteImage(img, str(path), useCompression=True)
        paths.append(path)
    return paths[0], paths[1]


def child(mri_path: str, pet_path: str, method: str, device: str, out_dir: str) -> dict:
    """One end-to-end run; returns stage times and peak memory."""
    from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes
    from EDPSNLib.volume.io import Volume, read_volume, write_volume

    t0 = time.perf_counter()
    mri, pet = read_volume(mri_path), read_volume(pet_path)
    t_read = time.perf_counter() - t0
    opts = FusionOptions("PET", register="rigid", method=method, device=device)
    res = fuse_volumes(mri, pet, opts)
    t1 = time.perf_counter()
    write_volume(Volume.from_array(res.fused, mri), Path(out_dir) / "fused.nrrd", mri)
    write_volume(Volume.from_array(res.regions, mri), Path(out_dir) / "regions.nrrd", mri)
    t_write = time.perf_counter() - t1
    tm = res.info["timings"]
    return {
        "slices": mri.shape[0],
        "read": t_read,
        "register": tm["register_s"],
        "fuse": tm["fuse_s"],
        "metrics": tm["metrics_s"],
        "write": t_write,
        "total": time.perf_counter() - t0,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "mi_before": res.registration.metric_before,
        "mi_after": res.registration.final_metric,
        "device": res.info.get("device", "cpu"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", default="45,90,180")
    ap.add_argument("--method", default="edpsn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="write the Markdown table here too")
    ap.add_argument("--child", nargs=3, metavar=("MRI", "PET", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child[:2], args.method, args.device, args.child[2])))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.slices.split(",")):
            mri_path, pet_path = make_pair(n, Path(tmp))
            cmd = [
                sys.executable,
                __file__,
                "--method",
                args.method,
                "--device",
                args.device,
                "--child",
                str(mri_path),
                str(pet_path),
                tmp,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    head = (
        "| slices | "
        + " | ".join(f"{s} s" for s in STAGES)
        + " | total s | peak MiB | MI before -> after |"
    )
    lines = [head, "|" + "---:|" * (len(STAGES) + 4)]
    for r in rows:
        cells = " | ".join(f"{r[s]:.1f}" for s in STAGES)
        mi = f"{r['mi_before']:.3f} -> {r['mi_after']:.3f}"
        lines.append(f"| {r['slices']} | {cells} | {r['total']:.1f} | {r['peak_mib']:.0f} | {mi} |")
    table = "\n".join(lines)
    print(f"method {args.method}, device {rows[0]['device']}\n\n{table}")
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
