"""One list of each name (EDPSNLib.names): every command, checker, table and GUI choice uses it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
from slicer_wheel import require_slicer_core

from EDPSNGui import choices
from EDPSNLib import names
from EDPSNLib.cli import build_parser
from EDPSNLib.data import chaos, harvard
from EDPSNLib.errors import InputError
from EDPSNLib.fusion.baselines import BASELINES
from EDPSNLib.fusion.methods import method_names
from EDPSNLib.fusion.montage import REGION_COLORS
from EDPSNLib.fusion.normalize import apply_colormap
from EDPSNLib.jobs.prepare import prepare_chaos_arguments, prepare_volumes_arguments
from EDPSNLib.metrics import fusion_metrics_batch
from EDPSNLib.models.lookup import default_weights_path
from EDPSNLib.paths import data_root


def _choices(*command: str, option: str) -> tuple[str, ...]:
    """The choices the real ``edpsn`` parser offers for one option of a command."""
    parser = build_parser(only=command[0])
    for part in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[part]
    action = next(a for a in parser._actions if option in a.option_strings)
    return tuple(action.choices)


def test_names_load_without_numpy_or_torch():
    # The Slicer modules import names before torch exists; the lists are plain tuples.
    code = "import sys, EDPSNLib.names; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_gui_enums_offer_the_names_in_order():
    assert [m.value for m in choices.Modality] == list(names.MODALITIES)
    assert [m.value for m in choices.Pair] == list(names.PAIR_NAMES)
    assert [m.value for m in choices.Registration] == list(names.REGISTRATION_METHODS)
    assert [m.value for m in choices.Axis] == list(names.AXES)
    assert [m.value for m in choices.Device] == list(names.DEVICES)
    assert [m.value for m in choices.MrSequence] == list(names.CHAOS_SEQUENCES)
    assert tuple(choices.COLORMAPS) == names.COLORMAP_CHOICES
    # A pair's modality is the moving modality a fusion of that pair gets.
    assert [p.modality for p in choices.Pair] == list(names.MODALITIES)


def test_every_gui_colour_map_is_one_the_core_draws():
    ramp = np.linspace(0.0, 1.0, 5)
    drawn = {}
    for name in names.COLORMAP_CHOICES:
        if name == "default":  # the module passes no --colormap: the modality's default
            continue
        rgb = apply_colormap(ramp, name)
        assert rgb.shape == (5, 3) and np.isfinite(rgb).all(), name
        drawn[name] = rgb
    for modality, name in names.DEFAULT_COLORMAP.items():
        assert modality in names.MODALITIES and name in names.HARVARD_COLORMAPS
    assert not np.allclose(drawn["harvard-pet"], drawn["harvard-spect"])
    with pytest.raises(InputError, match="harvard-pet, harvard-spect"):
        apply_colormap(ramp, "no-such-map")


@pytest.mark.parametrize(
    ("command", "option", "expected"),
    [
        (("fuse",), "--modality", names.MODALITIES),
        (("fuse",), "--register", names.REGISTRATION_METHODS),
        (("fuse",), "--axis", names.AXES),
        (("demo",), "--register", names.REGISTRATION_METHODS),
        (("train",), "--pair", names.PAIR_NAMES),
        (("prepare", "volumes"), "--register", names.REGISTRATION_METHODS),
        (("prepare", "volumes"), "--modality", names.MODALITIES),
        (("prepare", "chaos"), "--mr-sequence", names.CHAOS_SEQUENCES),
        (("prepare", "chaos"), "--register", names.CHAOS_REGISTRATION_METHODS),
    ],
)
def test_the_command_line_offers_the_names(command, option, expected):
    assert _choices(*command, option=option) == tuple(expected)


def test_the_job_builders_accept_exactly_the_names():
    for method in names.REGISTRATION_METHODS:
        args = prepare_volumes_arguments(
            mri="a", moving="b", modality="CT", out="o", case="c", register=method
        )
        assert args[args.index("--register") + 1] == method
    for modality in names.MODALITIES:
        prepare_volumes_arguments(mri="a", moving="b", modality=modality, out="o", case="c")
    for sequence in names.CHAOS_SEQUENCES:
        prepare_chaos_arguments(chaos="c", out="o", mr_sequence=sequence)
    with pytest.raises(InputError):
        prepare_volumes_arguments(mri="a", moving="b", modality="MRI", out="o", case="c")
    assert set(names.CHAOS_REGISTRATION_METHODS) < set(names.REGISTRATION_METHODS)


def test_every_pair_has_data_and_default_weights():
    for pair in names.PAIR_NAMES:
        assert harvard.list_pairs(pair, "test"), pair
        assert default_weights_path(pair).is_file(), pair
    with pytest.raises(InputError, match="MRI-CT, MRI-PET, MRI-SPECT"):
        harvard.list_pairs("MRI-MRI", "test")


def test_chaos_readers_take_the_names():
    root = data_root() / "chaos"
    first, *others = names.CHAOS_SEQUENCES
    assert chaos.list_chaos_patients(root, "MR", first), "the shared CHAOS data holds T2SPIR"
    for sequence in others:  # not in the shared data: the reader names the folder it looked for
        with pytest.raises(InputError, match=f"MR-{sequence}/image_<id>"):
            chaos.list_chaos_patients(root, "MR", sequence)
    with pytest.raises(InputError, match=", ".join(names.CHAOS_SEQUENCES)):
        chaos.list_chaos_patients(root, "MR", "T3")
    with pytest.raises(InputError, match=" or ".join(names.CHAOS_MODALITIES)):
        chaos.list_chaos_patients(root, "PET")


def test_methods_metrics_and_regions_come_out_under_the_names():
    assert tuple(BASELINES) == names.BASELINE_NAMES
    assert method_names() == [*names.BASELINE_NAMES, names.NETWORK_METHOD]
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 255, (2, 1, 48, 48))
    scores = fusion_metrics_batch(a, b, (a + b) / 2)
    assert tuple(scores) == names.METRIC_NAMES
    # The region labelmap's colour table: 0 is background, then one label per region name.
    assert [label for label, _ in REGION_COLORS[1:]] == [
        f"{region} information" for region in names.REGION_NAMES
    ]


def test_dicom_modalities_map_onto_the_names():
    require_slicer_core()
    from EDPSNGui.scene_io import DICOM_MODALITY

    assert set(DICOM_MODALITY.values()) == set(names.MODALITIES)
