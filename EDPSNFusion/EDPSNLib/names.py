"""The names the whole product shares (metrics, methods, modalities...), in one torch-free place.

Every other list of these names is built from here (or, for the GUI enums, tested against it).
Order matters where a list is shown: tables, command-line choices and GUI lists follow it.
Plain tuples of strings only (no numpy, no torch): the Slicer modules import this at start-up.
"""

from __future__ import annotations

#: The seven fusion metrics, in table order.
METRIC_NAMES = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")
#: The classical baseline fusion methods, in table order.
BASELINE_NAMES = ("mean", "max", "pca", "dwt", "laplacian")
#: The method name of the EDPSN network itself (beside the baselines).
NETWORK_METHOD = "edpsn"

#: The modalities fused with an MRI (the "moving" volume of a fusion).
MODALITIES = ("CT", "PET", "SPECT")
#: The modality pairs, one per modality, e.g. "MRI-PET" (Harvard folders, weights, training).
PAIR_NAMES = tuple(f"MRI-{modality}" for modality in MODALITIES)

#: How the moving volume is brought onto the MRI: "none" when it is already aligned.
REGISTRATION_METHODS = ("rigid", "affine", "none")
#: Registration of a CHAOS CT to another patient's MR: never "none" (affine first: the default).
CHAOS_REGISTRATION_METHODS = ("affine", "rigid")
#: The slicing axes of a volume, by anatomical name.
AXES = ("axial", "coronal", "sagittal")
#: The entropy regions, in label order (labelmap values 1, 2, 3; 0 is outside the image).
REGION_NAMES = ("low", "mid", "high")
#: The devices a run can ask for ("auto": the GPU when usable, else the CPU).
DEVICES = ("auto", "cpu", "cuda")

#: The Harvard atlas palettes for scalar PET/SPECT (the colours the network was trained on).
HARVARD_COLORMAPS = ("harvard-pet", "harvard-spect")
#: The colour map a scalar functional volume gets when none is asked for.
DEFAULT_COLORMAP = {"PET": "harvard-pet", "SPECT": "harvard-spect"}
#: The colour maps offered in the GUI: "default" (the modality's palette), the Harvard
#: palettes, then a few matplotlib maps (the core takes any matplotlib name).
COLORMAP_CHOICES = ("default", *HARVARD_COLORMAPS, "hot", "inferno", "viridis", "gray")

#: The modalities of the CHAOS challenge data (its folder names).
CHAOS_MODALITIES = ("CT", "MR")
#: The CHAOS MR series that can be paired with the CTs (the first is the default).
CHAOS_SEQUENCES = ("T2SPIR", "T1DUAL-InPhase", "T1DUAL-OutPhase")
