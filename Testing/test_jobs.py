"""The command lines of the Slicer modules against the real ``edpsn`` parser, and one real run."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

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
from EDPSNLib.jobs.results import TrainingCurves, comparison_rows, read_evaluation
from EDPSNLib.jobs.train import (
    TrainJob,
    cancel_file,
    check_training_inputs,
    evaluate_arguments,
    install_weights,
    run_folder,
    train_arguments,
    training_steps,
)
from EDPSNLib.metrics.table import metrics_csv_text, read_metrics_csv, slice_series
from EDPSNLib.names import METRIC_NAMES
from EDPSNLib.paths import data_root, harvard_root, repo_root
from EDPSNLib.volume.io import read_volume, write_volume


def _parse(args: list[str]):
    return build_parser(only=args[0]).parse_args(args)


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
    ns = _parse(
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
    ns = _parse(
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
        _parse(train_arguments(TrainJob("r", "MRI-CT"))),
        build_parser().parse_args(["train", "--pair", "MRI-CT", "--out", "o"]),
    )
    assert [getattr(ns, k) for k in ("epochs", "batch_size", "lr", "crop", "device")] == [
        getattr(default, k) for k in ("epochs", "batch_size", "lr", "crop", "device")
    ]
    assert ns.out == str(run_folder("r")) and ns.init is None
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


def _copy_default(pair: str, target) -> None:
    """A real shipped weights file and its sidecar, copied under another name."""
    from EDPSNLib.models.lookup import default_weights_path

    src = default_weights_path(pair)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(src.read_bytes())
    target.with_suffix(".json").write_bytes(src.with_suffix(".json").read_bytes())


def test_weights_choices_list_only_valid_weights_for_the_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    _copy_default("MRI-PET", tmp_path / "mine.safetensors")
    _copy_default("MRI-CT", tmp_path / "ct.safetensors")
    _copy_default("MRI-PET", tmp_path / "orphan.safetensors")
    (tmp_path / "orphan.json").unlink()  # no sidecar: cannot be checked
    _copy_default("MRI-PET", tmp_path / "tampered.safetensors")
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


def test_training_inputs_are_checked_before_anything_starts(tmp_path):
    root = synthetic_harvard(tmp_path, "MRI-CT", n_train=4, n_test=1, size=48)
    assert check_training_inputs(root, "MRI-CT", "my-run_2.v1") is None
    assert "pick a Harvard-layout folder" in check_training_inputs(root, "MRI-PET", "x")
    assert "pick a Harvard-layout folder" in check_training_inputs(tmp_path / "none", "MRI-CT", "x")
    for bad in ("", "../up", ".hidden", "a b", "a/b"):
        assert "Name the new weights" in check_training_inputs(root, "MRI-CT", bad)
    # names the registry would refuse at the end of the training are refused before it
    assert "not a usable model name" in check_training_inputs(root, "MRI-CT", "CON")
    assert "not a usable model name" in check_training_inputs(root, "MRI-CT", "x" * 101)
    assert "hide the shipped default" in check_training_inputs(root, "MRI-CT", "EDPSN_MRI-CT")


def test_training_steps_score_train_and_score_again(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    job = TrainJob("run1", "MRI-PET", device="cpu", epochs=2, batch_size=4, crop=64)
    based = replace(job, base="/w/base.safetensors")
    steps = training_steps(based)
    parsed = [_parse(args) for _, args in steps]
    assert [ns.command for ns in parsed] == ["evaluate", "train", "evaluate"]
    assert parsed[0].weights == "/w/base.safetensors" and parsed[1].init == "/w/base.safetensors"
    assert parsed[1].out == str(run_folder("run1")) == str(tmp_path / "runs" / "run1")
    assert parsed[2].weights == str(tmp_path / "runs" / "run1" / "EDPSN_MRI-PET.safetensors")
    # From scratch: no "before" score; a resumed run continues from its checkpoint.
    assert [_parse(a).command for _, a in training_steps(job)] == ["train", "evaluate"]
    (tmp_path / "runs" / "run1" / "before").mkdir(parents=True)
    (tmp_path / "runs" / "run1" / "before" / "summary.csv").write_text("scored already")
    resumed = training_steps(based, resume=True)
    assert [_parse(a).command for _, a in resumed] == ["train", "evaluate"]
    ns = _parse(resumed[0][1])
    assert ns.resume == str(tmp_path / "runs" / "run1" / "checkpoint.pt") and ns.init is None


def test_training_curves_from_events_and_from_a_cut_log(tmp_path):
    curves = TrainingCurves()
    assert not curves.record({"event": "start", "epochs": 2})
    assert curves.record({"event": "step", "global_step": 1, "loss": 0.5})
    metrics = dict(zip(METRIC_NAMES, range(7)), SSIM=None)
    assert curves.record({"event": "epoch", "epoch": 1, "val_loss": 0.4, "metrics": metrics})
    (name, x, series, label), (name2, x2, series2, label2) = curves.charts()
    assert (name, x, series, label) == ("loss", [1], {"training loss": [0.5]}, "step")
    assert (name2, x2, label2) == ("validation", [1], "epoch")
    assert (
        series2["validation loss"] == [0.4]
        and series2["SD"] == [1.0]
        and np.isnan(series2["SSIM"][0])
    )
    log = tmp_path / "progress.jsonl"
    log.write_text('{"event": "step", "global_step": 1, "loss": 0.9}\n{"event": "step", "glo')
    assert TrainingCurves.from_log(log).loss == [0.9]
    assert TrainingCurves.from_log(tmp_path / "none.jsonl").charts() == []


def test_install_weights_checks_and_copies_weights_and_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    with pytest.raises(InputError, match="wrote no weights"):
        install_weights("empty", "MRI-PET")
    run = run_folder("r")
    _copy_default("MRI-PET", run / "EDPSN_MRI-PET.safetensors")
    target = install_weights("r", "MRI-PET")
    assert target == tmp_path / "r.safetensors"
    assert target.read_bytes() == (run / "EDPSN_MRI-PET.safetensors").read_bytes()
    assert ("r (user)", str(target)) in weights_choices("MRI-PET")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.safetensors", "runs"]


@pytest.mark.slow
def test_the_training_chain_of_the_module_trains_installs_and_fine_tunes(tmp_path, monkeypatch):
    # EDPSN Training's chain without Slicer: the same steps, run one after the other by the
    # same BackgroundProcess; then the weights are installed and fine-tuned in a second run.
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path / "models"))
    root = synthetic_harvard(tmp_path / "data", "MRI-PET", n_train=10, n_test=2, size=48)
    env = child_environment(pythonpath=[repo_root() / "EDPSNFusion"])
    common = dict(pair="MRI-PET", data=root, device="cpu", epochs=1, batch_size=2, crop=32)

    def run_steps(name, **kw):
        for message, args in training_steps(TrainJob(name, **common, **kw)):
            proc = BackgroundProcess(module_command(sys.executable, "EDPSNLib.cli", *args), env=env)
            assert proc.start().wait(timeout=600) == 0, f"{message} {proc.stderr_tail}"
        return install_weights(name, "MRI-PET")

    first = run_steps("first", max_steps_per_epoch=2)
    curves = TrainingCurves.from_log(run_folder("first") / "progress.jsonl")
    assert len(curves.steps) == 2 and curves.epochs == [1]
    rows = comparison_rows("first", None)
    assert [r["scope"] for r in rows] == ["after: first"]
    assert all(np.isfinite(rows[0][k]) for k in METRIC_NAMES)
    run_steps("second", base=str(first), max_steps_per_epoch=1)
    rows = comparison_rows("second", str(first))
    assert [r["scope"] for r in rows] == ["before: first", "after: second"]
    # Scoring the same weights twice gives the same numbers (the "before" of run 2 is run 1).
    assert rows[0] == {**comparison_rows("first", None)[0], "scope": "before: first"}
    assert ("second (user)", str(tmp_path / "models" / "second.safetensors")) in weights_choices(
        "MRI-PET"
    )


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
    ns = _parse(args)
    assert (ns.chaos, ns.out, ns.mr_sequence, ns.json_progress) == (
        str(tmp_path / "CHAOS"),
        str(tmp_path / "ds"),
        "T1DUAL-InPhase",
        True,
    )
    ns = _parse(vol)
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
    assert held_out[-2:] == ["--test-fraction", "0.15"] and _parse(held_out).test_fraction == 0.15
    with pytest.raises(InputError, match="Held-out fraction"):
        prepare_volumes_arguments(
            mri="a", moving="b", modality="CT", out="o", case="c", test_fraction=1.5
        )


def test_case_names_from_node_names_are_accepted():
    assert case_name("MR T2 (1)") == "MR_T2_1" and case_name("t1.nrrd") == "t1.nrrd"
    assert case_name("..") == case_name("") == "scene" and case_name("_a-b") == "a-b"
    prepare_volumes_arguments(mri="a", moving="b", modality="CT", out="o", case=case_name("ß ü?"))


def test_train_arguments_carry_the_cancel_file_and_steps_can_skip_scoring(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    job = TrainJob("r", "MRI-CT", epochs=1, batch_size=1, crop=32, device="cpu")
    args = train_arguments(replace(job, cancel_file=cancel_file("r")), "o")
    assert args[-2:] == ["--cancel-file", str(tmp_path / "runs" / "r" / "cancel.request")]
    assert "--cancel-file" not in train_arguments(job, "o")
    assert _parse(args).cancel_file == str(cancel_file("r"))
    job = replace(
        job, data=dataset_folder("r"), base="/w/b.safetensors", cancel_file=cancel_file("r")
    )
    steps = training_steps(job, score=False)
    assert [a[0] for _, a in steps] == ["train"] and "--cancel-file" in steps[0][1]
    assert [a[0] for _, a in training_steps(job)] == ["evaluate", "train", "evaluate"]


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


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_of_edpsn_loads_and_answers_help(command, capsys):
    # A command whose module is missing or broken is a bug: main raises, nothing is skipped.
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert COMMANDS[command][1] in " ".join(capsys.readouterr().out.split())
