"""training/loss_choice.py: a loss weight not given comes from the resumed run, the --init
weights or the pair's shipped weights, in that order; real sidecars and a real CLI run."""

from __future__ import annotations

from pathlib import Path

import pytest

from EDPSNLib.cli import main
from EDPSNLib.models.lookup import default_weights_path
from EDPSNLib.models.weights import read_metadata
from EDPSNLib.training.loss_choice import SOURCES, choose_loss, stored_loss
from EDPSNLib.training.losses import LossConfig

ROOT = Path(__file__).resolve().parents[1]
#: Real fold weights whose loss differs from every shipped one (uptake 3, mean 0.1).
FOLD_CT = ROOT / "benchmarks/checkpoints/uptake3-mean10/MRI-CT/fold0-seed0/EDPSN_MRI-CT.safetensors"


def test_nothing_given_takes_the_shipped_weights_loss_of_the_pair() -> None:
    shipped = read_metadata(default_weights_path("MRI-SPECT"))["loss"]
    loss, note = choose_loss({}, "MRI-SPECT")
    assert loss == LossConfig.from_dict(shipped) and "shipped weights" in note
    assert loss.w_uptake == shipped["w_uptake"] and loss.detail_gain == shipped["detail_gain"]


def test_given_weights_win_and_none_means_not_given() -> None:
    loss, note = choose_loss({"w_uptake": 2.0, "w_gradient": None}, "MRI-SPECT")
    shipped = LossConfig.from_dict(read_metadata(default_weights_path("MRI-SPECT"))["loss"])
    assert loss.w_uptake == 2.0 and loss.w_gradient == shipped.w_gradient
    assert note.startswith("loss weights given: w_uptake;")


def test_init_weights_come_before_the_shipped_ones() -> None:
    stored, source = stored_loss("MRI-CT", init=FOLD_CT)
    assert source == SOURCES[1] and (stored["w_uptake"], stored["w_mean_intensity"]) == (3.0, 0.1)
    # an older sidecar without the detail settings: LossConfig's defaults fill them in
    loss, _ = choose_loss({}, "MRI-CT", init=FOLD_CT)
    assert loss.detail_gain == LossConfig().detail_gain


def test_a_fine_tuning_run_keeps_its_base_loss_and_a_resume_keeps_the_run_s(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "--pair", "MRI-CT", "--out", str(out), "--epochs", "1", "--init", str(FOLD_CT)]
    args += ["--max-steps-per-epoch", "1", "--batch-size", "2", "--crop", "48", "--w-gradient", "4"]
    args += ["--max-val-images", "1", "--device", "cpu", "--no-detail-same-sign"]
    assert main(args) == 0
    meta = read_metadata(out / "EDPSN_MRI-CT.safetensors")
    assert (meta["loss"]["w_uptake"], meta["loss"]["w_gradient"]) == (3.0, 4.0)
    assert "from the init weights" in meta["training"]["loss_source"]
    assert "--w-gradient 4.0" in meta["command"] and "--w-uptake" not in meta["command"]
    assert "--no-detail-same-sign" in meta["command"] and not meta["loss"]["detail_same_sign"]
    # resuming (here to a second epoch) without loss flags keeps the run's own weights
    stored, source = stored_loss("MRI-CT", init=None, resume=out / "checkpoint.pt")
    assert source == SOURCES[0] and stored["w_gradient"] == 4.0


def test_an_unknown_init_is_an_input_error() -> None:
    from EDPSNLib.errors import EDPSNError

    with pytest.raises(EDPSNError):
        choose_loss({}, "MRI-CT", init="no-such-model")


def test_a_pair_without_shipped_weights_falls_back_to_the_defaults() -> None:
    assert stored_loss("MRI-XX") == ({}, SOURCES[3])
    assert choose_loss({}, "MRI-XX")[0] == LossConfig()
