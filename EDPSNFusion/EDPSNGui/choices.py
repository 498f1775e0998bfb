"""The choices of the EDPSN parameter nodes.

A saved scene stores an enum parameter by its member name (parameterNodeWrapper's
EnumSerializer), so renaming a member breaks saved scenes; the values are what the commands get.
The enums are written out (a parameter node needs real Enum classes with stable member names);
Testing/test_names.py checks that their values are the lists of EDPSNLib.names, in order.
"""

import enum

from EDPSNLib import names

#: Colour maps of scalar PET/SPECT ("default": the modality's Harvard palette).
COLORMAPS = names.COLORMAP_CHOICES


class Modality(enum.Enum):
    CT = "CT"
    PET = "PET"
    SPECT = "SPECT"


class Registration(enum.Enum):
    RIGID = "rigid"
    AFFINE = "affine"
    NONE = "none"

    def label(self):
        return "Already aligned" if self is Registration.NONE else self.value.capitalize()


class Axis(enum.Enum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    def label(self):
        return self.value.capitalize()


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    def label(self):
        return {"auto": "Auto (GPU when usable)", "cpu": "CPU", "cuda": "GPU (CUDA)"}[self.value]


class DataSource(enum.Enum):
    HARVARD = "Harvard-layout folder"
    CHAOS = "CHAOS folder"
    SCENE = "Volumes in the scene"

    def label(self):
        return "MRI + moving volume in the scene" if self is DataSource.SCENE else self.value


class Pair(enum.Enum):
    MRI_CT = "MRI-CT"
    MRI_PET = "MRI-PET"
    MRI_SPECT = "MRI-SPECT"

    def label(self):
        return self.value

    @property
    def modality(self):
        return self.value.split("-", 1)[1]


class MrSequence(enum.Enum):
    """The CHAOS MR series paired with the CTs (EDPSNLib.names.CHAOS_SEQUENCES)."""

    T2SPIR = "T2SPIR"
    T1_IN_PHASE = "T1DUAL-InPhase"
    T1_OUT_PHASE = "T1DUAL-OutPhase"

    def label(self):
        return self.value.replace("T1DUAL-", "T1-DUAL ").replace("Phase", " phase")
