"""The command lines of the Slicer modules against the real ``edpsn`` parser, and one real run."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from EDPSNLib import harvard
from EDPSNLib.cli import build_parser
from EDPSNLib.errors import InputError
from EDPSNLib.jobs import (
    FuseJob,
    evaluate_arguments,
    fuse_arguments,
    fuse_files,
    harvard_folder,
    metric_rows,
    read_evaluation,
    train_arguments,
    weights_choices,
)
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.paths import data_root, repo_root
from EDPSNLib.process import BackgroundProcess, child_environment, module_command
from EDPSNLib.synthetic import synthetic_harvard, synthetic_mri_pet
from EDPSNLib.volume_io import read_volume, write_volume
from EDPSNLib.volume_metrics import ijk_to_ras_matrix, volume_from_ijk_to_ras


def _parse(args: list[str]):
    return build_parser(only=args[0]).parse_args(args)


def test_fuse_arguments_parse_with_the_real_cli(tmp_path):
    files = fuse_files(tmp_path)
    job = FuseJob("PET", register="affine", colormap="hot", axis="coronal", device="cpu",
                  batch_size=4, model="method:max")  # fmt: skip
    ns = _parse(fuse_arguments(job, files))
    assert (ns.mri, ns.moving, ns.out) == (
        str(files["mri"]),
        str(files["moving"]),
        str(files["fused"]),
    )
    assert (ns.regions, ns.metrics, ns.transform) == tuple(
        str(files[k]) for k in ("regions", "metrics", "transform")
    )
    assert (ns.modality, ns.register, ns.colormap, ns.axis) == ("PET", "affine", "hot", "coronal")
    assert (ns.device, ns.batch_size, ns.method, ns.weights, ns.json_progress) == (
        "cpu",
        4,
        "max",
        None,
        True,
    )
    # Already aligned: no transform is asked for; a weights file goes to --weights.
    ns = _parse(
        fuse_arguments(
            FuseJob("CT", register="none", ct_window="bone", model="/w/x.safetensors"), files
        )
    )
    assert (ns.transform, ns.register, ns.ct_window, ns.colormap) == (None, "none", "bone", None)
    assert (ns.weights, ns.method) == ("/w/x.safetensors", "edpsn")


def test_train_and_evaluate_arguments_parse_with_the_real_cli(tmp_path):
    (tmp_path / "harvard").mkdir()
    ns = _parse(train_arguments(pair="MRI-SPECT", out=tmp_path / "run", data=tmp_path, epochs=3,
                                batch_size=2, lr=2.5e-5, crop=96, device="cpu", init="/w/base.safetensors"))  # fmt: skip
    assert (ns.pair, ns.out, ns.data) == (
        "MRI-SPECT",
        str(tmp_path / "run"),
        str(tmp_path / "harvard"),
    )
    assert (ns.epochs, ns.batch_size, ns.lr, ns.crop, ns.device) == (3, 2, 2.5e-5, 96, "cpu")
    assert (ns.init, ns.resume, ns.json_progress) == ("/w/base.safetensors", None, True)
    ns = _parse(train_arguments(pair="MRI-PET", out="o", data=None, epochs=1, batch_size=1, lr=1e-4,
                                crop=64, device="auto", init="i", resume="o/checkpoint.pt", max_steps_per_epoch=2))  # fmt: skip
    assert (ns.resume, ns.init, ns.data, ns.max_steps_per_epoch) == (
        "o/checkpoint.pt",
        None,
        None,
        2,
    )
    ns = _parse(
        evaluate_arguments(pair="MRI-CT", weights="w.safetensors", out="e", data=None, device="cpu")
    )
    assert (ns.pair, ns.split, ns.method, ns.weights, ns.no_images) == (
        "MRI-CT",
        "test",
        "edpsn",
        "w.safetensors",
        True,
    )
    assert harvard_folder(tmp_path / "harvard") == tmp_path / "harvard" == harvard_folder(tmp_path)


def test_metric_rows_and_evaluation_summary(tmp_path):
    done = {"event": "done", "volume_metrics": dict.fromkeys(METRIC_NAMES, 1.0),
            "region_metrics": {r: dict.fromkeys(METRIC_NAMES, 2.0) for r in ("low", "mid", "high")}}  # fmt: skip
    rows = metric_rows(json.loads(json.dumps(done)))
    assert [r["scope"] for r in rows] == ["volume", "region: low", "region: mid", "region: high"]
    with pytest.raises(InputError):
        metric_rows({"event": "done"})
    (tmp_path / "summary.csv").write_text(
        "pair,split,method,n,EN,SD,SCD,Qabf,VIF,PSNR,SSIM\nMRI-PET,test,edpsn,24,5.1,60.2,1.3,0.6,0.4,63.0,0.7\n"
    )
    assert read_evaluation(tmp_path) == dict(
        zip(METRIC_NAMES, (5.1, 60.2, 1.3, 0.6, 0.4, 63.0, 0.7))
    )
    with pytest.raises(InputError, match="No evaluation summary"):
        read_evaluation(tmp_path / "missing")


def test_weights_choices_list_only_weights_for_the_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    (tmp_path / "mine.json").write_text(json.dumps({"pair": "MRI-PET"}))
    (tmp_path / "ct.safetensors").write_bytes(b"x")
    (tmp_path / "ct.json").write_text(json.dumps({"pair": "MRI-CT"}))
    (tmp_path / "orphan.safetensors").write_bytes(b"x")  # no sidecar: cannot be checked
    choices = weights_choices("MRI-PET")
    assert choices[0][1] == "" and choices[0][0].startswith("Default EDPSN weights for MRI-PET")
    assert ("mine (user)", str(tmp_path / "mine.safetensors")) in choices
    values = [v for _, v in choices]
    assert (
        str(tmp_path / "ct.safetensors") not in values
        and str(tmp_path / "orphan.safetensors") not in values
    )
    assert "method:max" in values


def test_synthetic_harvard_folder_is_read_by_the_real_loader(tmp_path):
    root = synthetic_harvard(tmp_path, "MRI-SPECT", n_train=10, n_test=3, size=48)
    assert len(harvard.list_pairs("MRI-SPECT", "test", root)) == 3
    assert (
        len(harvard.list_pairs("MRI-SPECT", "train", root))
        + len(harvard.list_pairs("MRI-SPECT", "val", root))
        == 10
    )
    mri, func = harvard.load_pair(harvard.list_pairs("MRI-SPECT", "test", root)[0])
    assert mri.shape == (48, 48) and func.shape == (48, 48, 3) and mri.max() > 100


@pytest.mark.slow
def test_the_fusion_the_module_starts_runs_and_lands_on_the_mri_grid(tmp_path):
    # The module's path without Slicer: volumes as the module exports them, the same command
    # line, run by the same BackgroundProcess, outputs read back as the module reads them.
    mri, mri_m, pet, pet_m = synthetic_mri_pet()
    files = fuse_files(tmp_path)
    ref = write_volume(volume_from_ijk_to_ras(mri, mri_m), files["mri"])
    write_volume(volume_from_ijk_to_ras(pet, pet_m), files["moving"])
    job = FuseJob("PET", register="none", device="cpu", model="method:max")
    env = child_environment(pythonpath=[repo_root() / "EDPSNFusion"])
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.cli", *fuse_arguments(job, files)), env=env
    )
    proc.start()
    assert proc.wait(timeout=300) == 0, proc.stderr_tail
    events = proc.poll()
    kinds = [e["event"] for e in events]
    assert "stage" in kinds and "progress" in kinds and kinds[-1] == "exit"
    done = next(e for e in events if e["event"] == "done")
    fused = read_volume(done["outputs"]["fused"], validate=False)
    regions = read_volume(done["outputs"]["regions"], validate=False)
    assert fused.array.shape == mri.shape + (3,) and fused.array.dtype == np.uint8
    np.testing.assert_allclose(ijk_to_ras_matrix(fused), mri_m, atol=1e-6)
    np.testing.assert_allclose(
        ijk_to_ras_matrix(regions), ijk_to_ras_matrix(read_volume(ref)), atol=1e-6
    )
    assert set(np.unique(regions.array)) <= {0, 1, 2, 3} and regions.array.dtype == np.uint8
    rows = metric_rows(done)
    assert len(rows) == 4 and all(np.isfinite(rows[0][k]) for k in METRIC_NAMES)
    assert "transform" not in done["outputs"]  # already aligned: nothing to register


def test_real_data_folder_is_the_default_harvard_root():
    assert harvard_folder(data_root()) == data_root() / "harvard"


@pytest.mark.slow
def test_the_training_chain_the_module_starts_trains_then_scores_the_new_weights(tmp_path):
    # EDPSN Training's chain without Slicer: edpsn train, then edpsn evaluate of its weights.
    root = synthetic_harvard(tmp_path / "data", "MRI-PET", n_train=10, n_test=3, size=64)
    env = child_environment(pythonpath=[repo_root() / "EDPSNFusion"])
    run = tmp_path / "runs" / "tiny"
    train = train_arguments(pair="MRI-PET", out=run, data=root, epochs=1, batch_size=2, lr=1e-4,
                            crop=32, device="cpu", max_steps_per_epoch=2)  # fmt: skip
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.cli", *train), env=env
    ).start()
    assert proc.wait(timeout=600) == 0, proc.stderr_tail
    kinds = [e["event"] for e in proc.poll()]
    assert kinds.count("step") == 2 and kinds.count("epoch") == 1 and "done" in kinds
    weights = run / "EDPSN_MRI-PET.safetensors"
    assert json.loads(weights.with_suffix(".json").read_text())["pair"] == "MRI-PET"
    evaluate = evaluate_arguments(
        pair="MRI-PET", weights=weights, out=run / "after", data=root, device="cpu"
    )
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.cli", *evaluate), env=env
    ).start()
    assert proc.wait(timeout=600) == 0, proc.stderr_tail
    scores = read_evaluation(run / "after")
    assert set(scores) == set(METRIC_NAMES) and all(np.isfinite(v) for v in scores.values())
