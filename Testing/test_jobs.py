"""The fusion and scoring command lines of the Slicer modules against the real ``edpsn`` parser."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from helpers import copy_default_weights, parse_cli

from EDPSNLib.cli import COMMANDS, build_parser, main
from EDPSNLib.data import harvard
from EDPSNLib.data.synthetic import synthetic_harvard, synthetic_mri_pet
from EDPSNLib.errors import InputError
from EDPSNLib.fusion.baselines import BASELINES
from EDPSNLib.fusion.scoring import ijk_to_ras_matrix, volume_from_ijk_to_ras
from EDPSNLib.jobs.fuse import (
    FuseJob,
    fuse_arguments,
    fuse_files,
    metric_rows,
    score_arguments,
    score_files,
    weights_choices,
)
from EDPSNLib.jobs.process import BackgroundProcess, child_environment, module_command
from EDPSNLib.jobs.results import read_evaluation
from EDPSNLib.jobs.train import (
    TrainJob,
    evaluate_arguments,
    run_folder,
    train_arguments,
)
from EDPSNLib.metrics.table import metrics_csv_text, read_metrics_csv, slice_series
from EDPSNLib.names import METRIC_NAMES
from EDPSNLib.paths import data_root, harvard_root, repo_root
from EDPSNLib.volume.io import read_volume, write_volume


def test_fuse_arguments_parse_with_the_real_cli(tmp_path):
    files = fuse_files(tmp_path)
    job = FuseJob(
        "PET",
        register="affine",
        colormap="hot",
        axis="coronal",
        device="cpu",
        batch_size=4,
        model="method:max",
    )
    ns = parse_cli(fuse_arguments(job, files))
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
    ns = parse_cli(
        fuse_arguments(
            FuseJob("CT", register="none", ct_window="bone", model="/w/x.safetensors"), files
        )
    )
    assert (ns.transform, ns.register, ns.ct_window, ns.colormap) == (None, "none", "bone", None)
    assert (ns.weights, ns.method) == ("/w/x.safetensors", "edpsn")


def test_train_and_evaluate_arguments_parse_with_the_real_cli(tmp_path):
    (tmp_path / "harvard").mkdir()
    ns = parse_cli(
        train_arguments(
            TrainJob(
                "r",
                "MRI-SPECT",
                data=tmp_path,
                epochs=3,
                batch_size=2,
                lr=2.5e-5,
                crop=96,
                device="cpu",
                base="/w/base.safetensors",
            ),
            tmp_path / "run",
        )
    )
    assert (ns.pair, ns.out, ns.data) == (
        "MRI-SPECT",
        str(tmp_path / "run"),
        str(tmp_path / "harvard"),
    )
    assert (ns.epochs, ns.batch_size, ns.lr, ns.crop, ns.device) == (3, 2, 2.5e-5, 96, "cpu")
    assert (ns.init, ns.resume, ns.json_progress) == ("/w/base.safetensors", None, True)
    ns = parse_cli(
        train_arguments(
            TrainJob(
                "r",
                "MRI-PET",
                epochs=1,
                batch_size=1,
                crop=64,
                base="i",
                max_steps_per_epoch=2,
            ),
            "o",
            resume="o/checkpoint.pt",
        )
    )
    assert (ns.resume, ns.init, ns.data, ns.max_steps_per_epoch) == (
        "o/checkpoint.pt",
        None,
        None,
        2,
    )
    # A TrainJob's defaults are those of `edpsn train`; its run folder is the default --out.
    ns, default = (
        parse_cli(train_arguments(TrainJob("r", "MRI-CT"))),
        build_parser().parse_args(["train", "--pair", "MRI-CT", "--out", "o"]),
    )
    assert [getattr(ns, k) for k in ("epochs", "batch_size", "lr", "crop", "device")] == [
        getattr(default, k) for k in ("epochs", "batch_size", "lr", "crop", "device")
    ]
    assert ns.out == str(run_folder("r")) and ns.init is None
    ns = parse_cli(
        evaluate_arguments(pair="MRI-CT", weights="w.safetensors", out="e", data=None, device="cpu")
    )
    assert (ns.pair, ns.split, ns.method, ns.weights, ns.no_images) == (
        "MRI-CT",
        "test",
        "edpsn",
        "w.safetensors",
        True,
    )
    assert harvard_root(tmp_path / "harvard") == tmp_path / "harvard" == harvard_root(tmp_path)


def test_score_arguments_and_metrics_csv_round_trip(tmp_path):
    files = score_files(tmp_path)
    args = score_arguments(files, "CT", ct_window="40,80", axis="coronal", moving_to_mri=np.eye(4))
    assert args[args.index("--moving-to-mri") + 1] == ",".join(
        repr(float(v)) for v in np.eye(4).ravel()
    )
    assert args[args.index("--regions") + 1] == str(files["regions"]) and "--colormap" not in args
    assert "--regions" not in score_arguments(files, "PET", regions=False, colormap="hot")
    with pytest.raises(InputError, match="4x4"):
        score_arguments(files, "PET", moving_to_mri=np.eye(3))
    rows = [
        {"scope": "volume", **dict(zip(METRIC_NAMES, range(7)))},
        {"scope": "slice 7", **dict.fromkeys(METRIC_NAMES, float("nan"))},
    ]
    (tmp_path / "m.csv").write_text(metrics_csv_text(rows))
    back = read_metrics_csv(tmp_path / "m.csv")
    assert back[0] == {"scope": "volume", **{k: float(v) for k, v in zip(METRIC_NAMES, range(7))}}
    x, series = slice_series(back)
    assert x == [7] and np.isnan(series["EN"][0])
    with pytest.raises(InputError, match="Cannot read the metrics"):
        read_metrics_csv(tmp_path / "none.csv")


def test_metric_rows_and_evaluation_summary(tmp_path):
    done = {
        "event": "done",
        "volume_metrics": dict.fromkeys(METRIC_NAMES, 1.0),
        "region_metrics": {r: dict.fromkeys(METRIC_NAMES, 2.0) for r in ("low", "mid", "high")},
    }
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


def test_weights_choices_list_only_valid_weights_for_the_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    copy_default_weights("MRI-PET", tmp_path / "mine.safetensors")
    copy_default_weights("MRI-CT", tmp_path / "ct.safetensors")
    copy_default_weights("MRI-PET", tmp_path / "orphan.safetensors")
    (tmp_path / "orphan.json").unlink()  # no sidecar: cannot be checked
    copy_default_weights("MRI-PET", tmp_path / "tampered.safetensors")
    data = bytearray((tmp_path / "tampered.safetensors").read_bytes())
    data[-1] ^= 0xFF  # the sidecar's sha256 no longer matches
    (tmp_path / "tampered.safetensors").write_bytes(bytes(data))
    choices = weights_choices("MRI-PET")
    assert choices[0][1] == "" and choices[0][0].startswith("Default EDPSN weights for MRI-PET")
    assert ("mine (user)", str(tmp_path / "mine.safetensors")) in choices
    values = [v for _, v in choices]
    for other in ("ct", "orphan", "tampered"):
        assert str(tmp_path / f"{other}.safetensors") not in values
    assert [v for v in values if v.startswith("method:")] == [f"method:{n}" for n in BASELINES]


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
    # edpsn fuse's CSV reads back with the same reader the Evaluate section uses.
    csv_rows = read_metrics_csv(done["outputs"]["metrics"])
    assert [r["scope"] for r in csv_rows[:4]] == [r["scope"] for r in rows]
    assert csv_rows[0]["SSIM"] == pytest.approx(rows[0]["SSIM"], abs=1e-6)
    assert slice_series(csv_rows)[0] == list(range(mri.shape[0]))
    assert "transform" not in done["outputs"]  # already aligned: nothing to register


def test_real_data_folder_is_the_default_harvard_root():
    assert harvard_root(data_root()) == data_root() / "harvard"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_of_edpsn_loads_and_answers_help(command, capsys):
    # A command whose module is missing or broken is a bug: main raises, nothing is skipped.
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert COMMANDS[command][1] in " ".join(capsys.readouterr().out.split())
