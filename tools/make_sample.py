"""Build the shipped demo sample: Harvard atlas case 25 MRI + PET slices stacked into volumes.

The Harvard pairs are registered 2-D slices; those of case 25 (names 25015 ... 25110) are
consecutive coronal levels of one subject, from posterior to anterior, so stacking them gives
a small real MRI + PET volume pair. The geometry says so (LPS direction: columns to the
patient's left as in radiological display, rows downwards, slices towards anterior), so
Slicer shows the slices in its coronal view. Spacings are nominal (the atlas states none).

Run: .venv/bin/python tools/make_sample.py   (writes Resources/Sample/*.nrrd)
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.paths import repo_root

CASE = "25"
SPACING = (1.0, 1.0, 2.0)  # nominal mm: column, row, slice
#: Columns of the direction matrix: i -> +L, j -> -S (inferior), k -> -P (anterior).
DIRECTION = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0)


def main() -> None:
    pairs = [p for p in list_pairs("MRI-PET", "all") if p.name.startswith(CASE)]
    pairs.sort(key=lambda p: int(p.name))
    mri, pet = load_pairs(pairs)
    out = repo_root() / "Resources" / "Sample"
    out.mkdir(parents=True, exist_ok=True)
    for name, arr, is_rgb in (("MRI", mri, False), ("PET", pet, True)):
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=is_rgb)
        img.SetSpacing(SPACING)
        img.SetOrigin((0.0, 0.0, 0.0))
        img.SetDirection(DIRECTION)
        img.SetMetaData("Modality", "MR" if name == "MRI" else "PT")
        path = out / f"harvard_case{CASE}_{name}.nrrd"
        sitk.WriteImage(img, str(path), useCompression=True)
        print(f"{path}: {arr.shape} {arr.dtype}, {path.stat().st_size / 1e6:.2f} MB")
    (out / "slices.txt").write_text("\n".join(p.name for p in pairs) + "\n")


if __name__ == "__main__":
    main()
