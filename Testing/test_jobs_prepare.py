"""Data preparation from CHAOS and scene pairs: arguments, resume markers, the scene chain."""

from __future__ import annotations

import json
import sys
import time

import pytest
from helpers import parse_cli

from EDPSNLib.data.synthetic import synthetic_harvard, synthetic_mri_pet
from EDPSNLib.errors import InputError
from EDPSNLib.fusion.scoring import volume_from_ijk_to_ras
from EDPSNLib.jobs.prepare import (
    case_name,
    check_chaos_inputs,
    dataset_folder,
    is_prepared,
    mark_prepared,
    prepare_chaos_arguments,
    prepare_files,
    prepare_volumes_arguments,
    resumable,
    split_size,
)
from EDPSNLib.jobs.process import BackgroundProcess, child_environment, module_command
from EDPSNLib.jobs.train import (
    TrainJob,
    cancel_file,
    check_training_inputs,
    run_folder,
    training_steps,
)
from EDPSNLib.paths import data_root, repo_root
from EDPSNLib.volume.io import write_volume


# ------------------------------------------------------------ CHAOS and scene-pair sources
def test_prepare_arguments_are_exact_and_parse_with_the_real_cli(tmp_path):
    args = prepare_chaos_arguments(
        chaos=tmp_path / "CHAOS", out=tmp_path / "ds", mr_sequence="T1DUAL-InPhase"
    )
    assert args == [
        "prepare",
        "chaos",
        "--chaos",
        str(tmp_path / "CHAOS"),
        "--out",
        str(tmp_path / "ds"),
        "--mr-sequence",
        "T1DUAL-InPhase",
        "--json-progress",
    ]
    files = prepare_files(tmp_path)
    vol = prepare_volumes_arguments(
        mri=files["mri"],
        moving=files["moving"],
        modality="SPECT",
        out=tmp_path / "ds",
        case="MR_T2_1",
        register="none",
    )
    assert vol == [
        "prepare",
        "volumes",
        "--mri",
        str(tmp_path / "mri.nrrd"),
        "--moving",
        str(tmp_path / "moving.nrrd"),
        "--modality",
        "SPECT",
        "--out",
        str(tmp_path / "ds"),
        "--case",
        "MR_T2_1",
        "--register",
        "none",
        "--json-progress",
    ]
    for bad, match in (
        (lambda: prepare_chaos_arguments(chaos="c", out="o", mr_sequence="T1"), "MR sequence"),
        (
            lambda: prepare_volumes_arguments(
                mri="a", moving="b", modality="MR", out="o", case="c"
            ),
            "modality",
        ),
        (
            lambda: prepare_volumes_arguments(
                mri="a", moving="b", modality="CT", out="o", case="c", register="bspline"
            ),
            "registration",
        ),
        (
            lambda: prepare_volumes_arguments(
                mri="a", moving="b", modality="CT", out="o", case="a b"
            ),
            "Case name",
        ),
    ):
        with pytest.raises(InputError, match=match):
            bad()
    ns = parse_cli(args)
    assert (ns.chaos, ns.out, ns.mr_sequence, ns.json_progress) == (
        str(tmp_path / "CHAOS"),
        str(tmp_path / "ds"),
        "T1DUAL-InPhase",
        True,
    )
    ns = parse_cli(vol)
    assert (ns.mri, ns.moving, ns.modality, ns.case, ns.register, ns.json_progress) == (
        str(files["mri"]),
        str(files["moving"]),
        "SPECT",
        "MR_T2_1",
        "none",
        True,
    )
    assert ns.test_fraction == 0.0
    held_out = prepare_volumes_arguments(
        mri="a", moving="b", modality="CT", out="o", case="c", test_fraction=0.15
    )
    assert (
        held_out[-2:] == ["--test-fraction", "0.15"] and parse_cli(held_out).test_fraction == 0.15
    )
    with pytest.raises(InputError, match="Held-out fraction"):
        prepare_volumes_arguments(
            mri="a", moving="b", modality="CT", out="o", case="c", test_fraction=1.5
        )


def test_case_names_from_node_names_are_accepted():
    assert case_name("MR T2 (1)") == "MR_T2_1" and case_name("t1.nrrd") == "t1.nrrd"
    assert case_name("..") == case_name("") == "scene" and case_name("_a-b") == "a-b"
    prepare_volumes_arguments(mri="a", moving="b", modality="CT", out="o", case=case_name("ß ü?"))


def test_prepared_runs_are_recognised_for_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    assert dataset_folder("r") == tmp_path / "runs" / "r" / "dataset"
    assert not resumable("r") and not is_prepared("r")
    root = synthetic_harvard(dataset_folder("r"), "MRI-PET", n_train=4, n_test=2, size=32)
    assert split_size(root, "MRI-PET") == 2 and split_size(root, "MRI-CT") == 0
    assert (
        split_size(root, "MRI-PET", "train") == 4 and split_size(tmp_path / "none", "MRI-PET") == 0
    )
    assert not resumable("r")  # a data set without its manifest is not a prepared one
    (dataset_folder("r") / "dataset.json").write_text("{}")
    assert resumable("r") and not is_prepared("r")  # a cut preparation: resume prepares again
    marker = mark_prepared("r", {"source": "scene", "mri": "MR"})
    assert is_prepared("r") and json.loads(marker.read_text())["mri"] == "MR"
    (run_folder("s")).mkdir(parents=True)
    (run_folder("s") / "checkpoint.pt").write_bytes(b"x")
    assert resumable("s") and not is_prepared("s")


def test_chaos_inputs_are_checked_before_anything_starts(tmp_path):
    chaos = data_root() / "chaos"
    assert check_chaos_inputs(chaos, "MRI-CT", "run") is None
    assert "MRI-CT pairs only" in check_chaos_inputs(chaos, "MRI-PET", "run")
    assert "Pick the CHAOS folder" in check_chaos_inputs(tmp_path / "none", "MRI-CT", "run")
    assert "Pick the CHAOS folder" in check_chaos_inputs("", "MRI-CT", "run")
    assert "Name the new weights" in check_chaos_inputs(chaos, "MRI-CT", "a b")


@pytest.mark.slow
def test_the_scene_pair_chain_prepares_trains_and_cancels_through_the_file(tmp_path, monkeypatch):
    # EDPSN Training's scene-pair chain without Slicer: the pair exported as the module does,
    # `edpsn prepare volumes`, then `edpsn train` stopped through its cancel file.
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path / "models"))
    mri, mri_m, pet, pet_m = synthetic_mri_pet()
    files = prepare_files(tmp_path)
    write_volume(volume_from_ijk_to_ras(mri, mri_m), files["mri"])
    write_volume(volume_from_ijk_to_ras(pet, pet_m), files["moving"])
    env = child_environment(pythonpath=[repo_root() / "EDPSNFusion"])
    args = prepare_volumes_arguments(
        mri=files["mri"],
        moving=files["moving"],
        modality="PET",
        out=dataset_folder("scene"),
        case=case_name("MRI scan"),
        register="none",
    )
    proc = BackgroundProcess(module_command(sys.executable, "EDPSNLib.cli", *args), env=env)
    assert proc.start().wait(timeout=300) == 0, proc.stderr_tail
    assert all("event" in e for e in proc.poll())
    mark_prepared("scene", {"source": "scene"})
    assert is_prepared("scene") and resumable("scene")
    data = dataset_folder("scene")
    assert check_training_inputs(data, "MRI-PET", "scene") is None
    assert split_size(data, "MRI-PET", "train") > 0
    job = TrainJob(
        "scene",
        "MRI-PET",
        data=data,
        epochs=50,
        batch_size=2,
        crop=32,
        device="cpu",
        cancel_file=cancel_file("scene"),
    )
    steps = training_steps(job, score=split_size(data, "MRI-PET") > 0)
    train = next(a for _, a in steps if a[0] == "train")
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.cli", *train, "--threads", "1"), env=env
    )
    proc.start()
    kinds, deadline = [], time.monotonic() + 300
    while "step" not in kinds and proc.running and time.monotonic() < deadline:
        kinds += [e["event"] for e in proc.poll()]
        time.sleep(0.05)
    cancel_file("scene").touch()  # what Cancel does first (portable; no signal)
    assert proc.wait(timeout=300) == 130, proc.stderr_tail
    assert not proc.cancelled and (run_folder("scene") / "checkpoint.pt").is_file()
