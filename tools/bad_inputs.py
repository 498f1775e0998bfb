"""Run a list of bad inputs through ``edpsn fuse``, ``evaluate`` and ``train`` and write the
table of what a user sees: command, message, exit code, what is left on disk.

    nice -n 10 .venv/bin/python tools/bad_inputs.py            # writes docs/bad-inputs.md
    .venv/bin/python tools/bad_inputs.py --only dicom          # cases whose name has 'dicom'

Each case runs ``python -m EDPSNLib.cli`` in a subprocess in its own empty folder under a
temporary directory; inputs are built from the shipped sample and ../shared/data. Signals are
sent when the run announces a stage (JSON progress), and a full disk is a file-size limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "EDPSNFusion"))

from EDPSNLib.paths import data_root  # noqa: E402

DATA = data_root()
SAMPLE = ROOT / "Resources" / "Sample"
STS = DATA / "dicom" / "tcia_sts_001_petct"
VM = DATA / "volumes" / "visible_male_head"
PHANTOM = DATA / "volumes" / "mridir_porcine_phantom"

#: Runs ``edpsn`` under a file-size limit (SIGXFSZ ignored): writes past it fail as on a full disk.
LIMITED = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); "
    "from EDPSNLib.cli import main; sys.exit(main(sys.argv[2:]))"
)


@dataclass
class Case:
    """One bad input: the ``edpsn`` words ({in} and {out} are filled in) and how to run it."""

    name: str
    words: str
    signal_at: tuple[str, int, float] | None = None  # (stage, signal, delay s)
    file_limit: int | None = None  # bytes per file, as a disk that fills
    note: str = ""
    setup: Callable[[Path], None] | None = field(default=None, repr=False)


def _write(vol_image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(vol_image, str(path))


def build_inputs(folder: Path) -> None:
    """The inputs every case may use, in ``folder`` (never the shared data itself)."""
    mri = sitk.ReadImage(str(SAMPLE / "harvard_case25_MRI.nrrd"))
    pet = sitk.ReadImage(str(SAMPLE / "harvard_case25_PET.nrrd"))
    _write(mri[:, :, 40:52], folder / "mri.nrrd")
    _write(pet[:, :, 40:52], folder / "pet.nrrd")
    _write(mri[:, :, 40:43], folder / "mri3.nrrd")
    flat = sitk.Image(mri[:, :, 40:52])
    flat = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(flat).shape, 7, np.int16))
    flat.CopyInformation(mri[:, :, 40:52])
    _write(flat, folder / "constant.nrrd")
    arr = sitk.GetArrayFromImage(mri[:, :, 40:52]).astype(np.float32)
    arr[3, 10, 10] = np.nan
    nan = sitk.GetImageFromArray(arr)
    nan.CopyInformation(mri[:, :, 40:52])
    _write(nan, folder / "nan.nrrd")
    small = sitk.Image(mri[:, :, 40:52])
    small.SetSpacing([s * 0.1 for s in small.GetSpacing()])
    _write(sitk.Cast(small, sitk.sitkFloat32), folder / "spacing01.nrrd")
    flipped = sitk.Flip(mri[:, :, 40:52], [False, False, True], flipAboutOrigin=False)
    d = np.asarray(flipped.GetDirection()).reshape(3, 3)
    d[:, 2] *= -1
    flipped.SetDirection(d.ravel().tolist())
    _write(flipped, folder / "flipped.nrrd")
    for name in ("CT_crop", "PT_SUV_crop"):
        shutil.copytree(STS / name, folder / name)
    shutil.copytree(STS / "CT_crop", folder / "ct_truncated")
    damaged = folder / "ct_truncated" / "000030.dcm"
    damaged.chmod(0o644)
    with open(damaged, "r+b") as fh:
        fh.truncate(40000)
    shutil.copytree(STS / "CT_crop", folder / "ct_gap")
    (folder / "ct_gap" / "000030.dcm").unlink()
    png = next((DATA / "harvard" / "MRI-CT" / "MRI").glob("*.png"))
    shutil.copy(png, folder / "slice.png")
    _harvard(folder / "harvard_rgb", colour=False)
    _harvard(folder / "harvard_colour", colour=True)


def _harvard(root: Path, colour: bool, pair: str = "MRI-CT", n: int = 3) -> None:
    """A Harvard-layout folder of real pairs whose MRIs are stored as RGB."""
    src = DATA / "harvard" / pair
    names = sorted(p.stem for p in (src / "MRI").glob("*.png"))[:n]
    for sub in ("MRI", "CT"):
        (root / pair / sub).mkdir(parents=True)
    for name in names:
        shutil.copy(src / "CT" / f"{name}.png", root / pair / "CT")
        grey = np.asarray(Image.open(src / "MRI" / f"{name}.png").convert("L"))
        rgb = np.stack([grey, grey // 2 if colour else grey, grey], axis=-1)
        Image.fromarray(rgb).save(root / pair / "MRI" / f"{name}.png")
    (root / "splits" / pair).mkdir(parents=True)
    (root / "splits" / pair / "test.txt").write_text("\n".join(f"{n}.png" for n in names))
    (root / "splits" / pair / "train.txt").write_text("\n".join(f"{n}.png" for n in names))


FUSE = "fuse --out {out}/fused.nrrd --regions {out}/regions.nrrd --metrics {out}/metrics.csv"
PAIR = "--mri {in}/mri.nrrd --moving {in}/pet.nrrd --modality PET --axis coronal"
QUICK = f"{FUSE} {PAIR} --register none --method max"
PHANTOM_PAIR = (
    f"--mri {PHANTOM}/MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz "
    f"--moving {PHANTOM}/CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz --modality CT"
)
VM_PAIR = f"--mri {VM}/vm_head_mri.mha --moving {VM}/vm_head_ct.mha --modality CT"

CASES = [
    Case(
        "missing input file",
        f"{FUSE} --mri {{in}}/nope.nrrd --moving {{in}}/pet.nrrd --modality PET",
    ),
    Case(
        "2-D image as the MRI",
        f"{FUSE} --mri {{in}}/slice.png --moving {{in}}/pet.nrrd --modality PET",
    ),
    Case("output is an input", f"fuse {PAIR} --out {{in}}/mri.nrrd"),
    Case("output ending .png", f"fuse {PAIR} --out {{out}}/fused.png"),
    Case("two outputs, one path", f"fuse {PAIR} --out {{out}}/a.nrrd --regions {{out}}/a.nrrd"),
    Case(
        "unknown modality",
        "fuse --mri {in}/mri.nrrd --moving {in}/pet.nrrd --modality XR --out {out}/f.nrrd",
    ),
    Case("--batch-size 0", f"{QUICK} --batch-size 0"),
    Case("--batch-size -3", f"{QUICK} --batch-size -3"),
    Case("--pet-range empty", f"{QUICK} --pet-range 5 1"),
    Case("--ct-window not LEVEL,WIDTH", f"{QUICK} --ct-window 40;80"),
    Case("unknown colour map", f"{QUICK} --colormap rainbowz"),
    Case(
        "RGB volume as the MRI",
        f"{FUSE} --mri {{in}}/pet.nrrd --moving {{in}}/pet.nrrd --modality PET --register none",
    ),
    Case(
        "constant volume",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/constant.nrrd --modality PET",
    ),
    Case("NaN voxels", f"{FUSE} --mri {{in}}/nan.nrrd --moving {{in}}/pet.nrrd --modality PET"),
    Case(
        "PET DICOM given as CT",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/PT_SUV_crop --modality CT",
    ),
    Case(
        "CT DICOM given as the MRI",
        f"{FUSE} --mri {{in}}/CT_crop --moving {{in}}/PT_SUV_crop --modality PET",
    ),
    Case(
        "truncated DICOM file",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/ct_truncated --modality CT",
    ),
    Case(
        "DICOM series with a missing slice",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/ct_gap --modality CT",
    ),
    Case("--suv on a NRRD", f"{QUICK} --suv"),
    Case(
        "weights file missing", f"{FUSE} {PAIR} --register none --weights {{in}}/none.safetensors"
    ),
    Case(
        "MRI of 3 slices, registration on",
        f"{FUSE} --mri {{in}}/mri3.nrrd --moving {{in}}/pet.nrrd --modality PET --method max --axis coronal",
    ),
    Case(
        "volume registered to itself",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/mri.nrrd --modality CT --axis coronal --method max",
    ),
    Case(
        "moving spacing x0.1",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/spacing01.nrrd --modality CT --method max --axis coronal",
    ),
    Case(
        "moving with a flipped direction",
        f"{FUSE} --mri {{in}}/mri.nrrd --moving {{in}}/flipped.nrrd --modality CT --method max --axis coronal",
    ),
    Case("phantom CT/MR, header orientation", f"{FUSE} {PHANTOM_PAIR} --method max"),
    Case(
        "Visible Male CT (not HU), orientation search",
        f"{FUSE} {VM_PAIR} --orientation search --method max",
    ),
    Case(
        "Ctrl-C during registration",
        f"{FUSE} {PHANTOM_PAIR} --orientation search --method max --json-progress",
        signal_at=("fuse", signal.SIGINT, 1.5),
    ),
    Case(
        "SIGTERM (Slicer's Cancel) while writing",
        f"{FUSE} {PAIR} --register none --method max --json-progress",
        signal_at=("write", signal.SIGTERM, 0.0),
    ),
    Case(
        "disk full part-way (0.5 MB per file)",
        "fuse --mri {in}/mri.nrrd --moving {in}/mri.nrrd --modality CT --register none --method max --axis coronal --out {out}/fused.nrrd --regions {out}/regions.nii --metrics {out}/metrics.csv",
        file_limit=500_000,
    ),
    Case(
        "evaluate: data folder missing",
        "evaluate --data {in}/nowhere --pair MRI-CT --method max --out {out}",
    ),
    Case("evaluate: unknown method", "evaluate --pair MRI-CT --method maxx --out {out}"),
    Case(
        "evaluate: MRI PNGs stored as RGB (equal channels)",
        "evaluate --data {in}/harvard_rgb --pair MRI-CT --method max --out {out}",
    ),
    Case(
        "evaluate: colour PNG where grey is expected",
        "evaluate --data {in}/harvard_colour --pair MRI-CT --method max --out {out}",
    ),
    Case(
        "train: --batch-size 0",
        "train --pair MRI-CT --data {in}/harvard_rgb --epochs 1 --batch-size 0 --out {out}",
    ),
    Case("train: --epochs 0", "train --pair MRI-CT --data {in}/harvard_rgb --epochs 0 --out {out}"),
    Case(
        "train: data folder missing",
        "train --pair MRI-CT --data {in}/nowhere --epochs 1 --out {out}",
    ),
    Case(
        "train: crop larger than the images",
        "train --pair MRI-CT --data {in}/harvard_rgb --epochs 1 --crop 512 --out {out}",
    ),
]


def _message(stderr: str) -> str:
    """What a user reads: the error (or interrupt) line, with the number of warnings before it;
    else the warnings; else the last line."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    warned = [ln for ln in lines if ln.startswith("edpsn ") and ": warning: " in ln]
    failed = [
        ln
        for ln in lines
        if (ln.startswith("edpsn ") and ln not in warned)
        or ln.startswith("Traceback")
        or "Error" in ln.split(":")[0]
    ]
    if failed:
        more = f" (after {len(warned)} warning(s))" if warned else ""
        return " / ".join(failed[-2:]) + more
    if warned:
        return " / ".join(warned)
    return lines[-1] if lines else ""


def _listing(folder: Path) -> str:
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if not names:
        return "nothing"
    sizes = [f"{n} ({(folder / n).stat().st_size / 1e6:.1f} MB)" for n in names[:6]]
    return ", ".join(sizes) + (f" + {len(names) - 6} more" if len(names) > 6 else "")


def run_case(case: Case, inputs: Path, work: Path) -> dict:
    """Run one case in ``work`` and describe what the user sees."""
    out = work / "out"
    out.mkdir(parents=True)
    words = shlex.split(case.words.replace("{in}", str(inputs)).replace("{out}", str(out)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "EDPSNFusion")}
    cmd = [sys.executable, "-m", "EDPSNLib.cli", *words]
    if case.file_limit:
        cmd = [sys.executable, "-c", LIMITED, str(case.file_limit), *words]
    clock = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        env=env,
        encoding="utf-8",
        errors="replace",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout_lines = []
    if case.signal_at is not None:
        stage, sig, delay = case.signal_at
        for line in proc.stdout:
            stdout_lines.append(line)
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "stage" and event.get("stage") == stage:
                time.sleep(delay)
                proc.send_signal(sig)
                break
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    stdout = "".join(stdout_lines) + stdout
    warnings = [
        json.loads(ln)["message"]
        for ln in stdout.splitlines()
        if ln.startswith('{"event": "warning"')
    ]
    message = _message(stderr) or " / ".join(warnings)
    if proc.returncode == 0 and not message.startswith("edpsn "):
        message = "(done; no warning)"  # the last line was a progress bar or a result row
    return {
        "name": case.name,
        "command": "edpsn "
        + " ".join(words)
        .replace(str(inputs), "IN")
        .replace(str(out), "OUT")
        .replace(str(DATA), "DATA"),
        "message": message.replace(str(inputs), "IN")
        .replace(str(out), "OUT")
        .replace(str(DATA), "DATA"),
        "rc": proc.returncode,
        "left": _listing(out),
        "seconds": time.perf_counter() - clock,
    }


def markdown(rows: list[dict], command: str) -> str:
    """The table of docs/bad-inputs.md."""
    head = [
        "# Bad inputs: what a user sees",
        "",
        "Generated by `tools/bad_inputs.py` (rerun it after a change to messages or checks):",
        "",
        f"    {command}",
        "",
        "Each case runs `python -m EDPSNLib.cli` in its own empty folder; `IN` is the folder of",
        "inputs the script builds (slabs of the shipped sample, copies of the real DICOM series,",
        "Harvard pairs saved as RGB), `OUT` the case's output folder, `DATA` `../shared/data`.",
        "Exit codes: 0 done, 2 refused with a message, 130 interrupted. *Left on disk* lists the",
        "files in `OUT` afterwards (hidden temporaries included); the inputs are never changed.",
        "",
        "| case | command | message | exit | left on disk |",
        "|---|---|---|---|---|",
    ]

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    body = [
        f"| {cell(r['name'])} | `{cell(r['command'])}` | {cell(r['message'])} | {r['rc']} | {cell(r['left'])} |"
        for r in rows
    ]
    return "\n".join(head + body) + "\n"


def main() -> int:
    """Build the inputs, run the cases, write the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the cases whose name contains this text")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bad-inputs.md"))
    args = ap.parse_args()
    cases = [c for c in CASES if not args.only or args.only.lower() in c.name.lower()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="edpsn-bad-") as tmp:
        inputs = Path(tmp) / "in"
        build_inputs(inputs)
        for i, case in enumerate(cases):
            row = run_case(case, inputs, Path(tmp) / f"case{i:02d}")
            rows.append(row)
            print(
                f"{row['rc']:>4}  {row['seconds']:6.1f} s  {case.name}: {row['message'][:150]}",
                flush=True,
            )
    command = "nice -n 10 .venv/bin/python tools/bad_inputs.py"
    Path(args.out).write_text(markdown(rows, command))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
