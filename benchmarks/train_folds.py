"""Train one recipe once per case fold (and seed) of a pair: the weights the protocol scores.

Every run is ``edpsn train --split case-fold-<k>`` (train on the fold's training cases, select on
its validation case, never see its test cases) into ``OUT/<recipe>/<pair>/fold<k>-seed<s>/``.
The command is resumable and can be split over sessions: a finished run (its progress log ends
with ``done`` at the asked epoch count) is skipped, an interrupted one continues from its
checkpoint, exactly. A longer recipe (``LONGER``) starts each run from a copy of the shorter
recipe's finished one and trains on to its epoch count.

``--final`` trains the same recipe once on ``case-all`` (every case but fold 0's validation
case, which selects the epoch) into ``all-seed<s>/``: the shipped weights.

Run (one MRI-PET fold takes about 7 CPU minutes on an idle 2-core machine):
    nice -n 10 .venv/bin/python benchmarks/train_folds.py --recipe uptake-mean25 --pair MRI-PET
``--keep benchmarks/checkpoints`` copies each finished run there (weights, sidecar, epoch log).
Then score them with ``benchmarks/eval_protocol.py --network
'LABEL=runs/folds/<recipe>/{pair}/fold{fold}-seed0/EDPSN_{pair}.safetensors'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from EDPSNLib.data.harvard import PAIR_NAMES, split_names
from EDPSNLib.data.splits import fold_count
from EDPSNLib.training.config import CHECKPOINT_NAME, LOG_NAME
from EDPSNLib.training.losses import LossConfig

ROOT = Path(__file__).resolve().parents[1]

#: Options shared by every recipe: the schedule and data of docs/protocol.md.
COMMON = "--augment all --crop 96 --lr 2e-3 --batch-size 8 --max-val-images 32 --select loss"

#: Named loss settings. ``uptake-mean10`` is the recipe of the first fold-trained figures
#: (weights set before any run); the others are candidates compared on the validation cases.
RECIPES: dict[str, str] = {
    "uptake-mean10": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.1",
    "uptake-mean25": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25",
    "uptake-mean40": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.4",
    "uptake-mean0": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0",
    "uptake3-mean10": "--w-uptake 3 --w-gradient 2 --w-mean-intensity 0.1",
    "uptake-mean25-noperc": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --w-perceptual 0",
    # The max target plus the darker source's detail (losses.detail_target), no mean pull: the
    # fixed rule max + 0.6 highpass(min) beats the pixel maximum on 5 of 7 metrics on every
    # shift of the MRI-PET and MRI-SPECT fold-0 validation cases (docs/protocol.md).
    "detail60": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6",
    # The same detail target with the mean pull of uptake-mean25 kept (PSNR).
    "detail60-mean25": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --detail-gain 0.6",
    "detail30-mean25": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --detail-gain 0.3",
    # The detail head (network/blocks.FusionHead): bases blended, each input's detail gained.
    "head-detail60": "--head detail --w-uptake 1 --w-gradient 2 --w-mean-intensity 0 "
    "--detail-gain 0.6",
    "head-detail60-mean25": "--head detail --w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 "
    "--detail-gain 0.6",
    "head-detail60-u10": "--head detail --w-uptake 10 --w-gradient 2 --w-mean-intensity 0 "
    "--detail-gain 0.6",
    # head-detail60-u10 with the blend head: does the head or the uptake weight do the work?
    "detail60-u10": "--w-uptake 10 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6",
    # MRI-CT: twice the gradient weight (Q^AB/F, where the Laplacian pyramid wins).
    "detail60-u10-g4": "--w-uptake 10 --w-gradient 4 --w-mean-intensity 0 --detail-gain 0.6",
    # uptake-mean25 plus the SSIM term (losses.ssim_loss): SSIM and PSNR decide against the max.
    "mean25-ssim1": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --w-ssim 1",
    "mean25-ssim3": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --w-ssim 3",
    # MRI-PET between uptake-mean25 (mean pull: PSNR, SSIM) and detail60-u10 (all the uptake).
    "detail30-u3-mean10": "--w-uptake 3 --w-gradient 2 --w-mean-intensity 0.1 --detail-gain 0.3",
    "detail60-u3-mean15": "--w-uptake 3 --w-gradient 2 --w-mean-intensity 0.15 --detail-gain 0.6",
    "head-detail60-same": "--head detail --w-uptake 1 --w-gradient 2 --w-mean-intensity 0 "
    "--detail-gain 0.6 --detail-same-sign",
    "detail60-same": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6 "
    "--detail-same-sign",
    # The ablation of issue 10 on the protocol: the MRI-PET recipe without the paper's parts.
    "uptake-mean25-no-eem": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --no-eem",
    "uptake-mean25-no-ed": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --no-ed",
    "uptake-mean25-no-dps": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --no-dps",
    # What might let the parts matter: learnt per-region gating in DPS, a stronger EEM.
    "uptake-mean25-gate": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --dps-gate",
    "uptake-mean25-eem100": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --eem-weight 1",
    # A decoder beside the blend head (FusionHead "mix"): the features draw part of the image.
    "uptake-mean25-mix": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --head mix",
    "detail60-u10-mix": "--w-uptake 10 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6 "
    "--head mix",
    # A moving average of the weights (training/weight_average.py): less spread between seeds?
    "uptake-mean25-ema": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --ema-decay 0.99",
    "detail60-u10-ema": "--w-uptake 10 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6 "
    "--ema-decay 0.99",
    # uptake-mean25-ema plus the contrast term (losses.contrast_loss): the seed-mean network loses
    # SD to the pixel maximum on three of the MRI-PET shifts it fails.
    "uptake-mean25-ema-c03": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --ema-decay 0.99 "
    "--w-contrast 0.3",
    "uptake-mean25-ema-c1": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --ema-decay 0.99 "
    "--w-contrast 1",
    "uptake-mean25-ema-c4": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --ema-decay 0.99 "
    "--w-contrast 4",
    # The contrast term with the blend's correction off: a per-pixel blend of the two inputs has
    # (MSE(F, A) + MSE(F, B)) <= that of the max, so PSNR cannot fall below the max's.
    "uptake-mean25-ema-c1-r0": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 "
    "--ema-decay 0.99 --w-contrast 1 --residual-scale 0",
    # A Q^AB/F term (losses.qabf_loss): the metric every network loses to the pixel maximum; won,
    # it would leave four of EN, SD, SCD, PSNR and SSIM to win instead of five.
    "uptake-mean25-ema-q02": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 "
    "--ema-decay 0.99 --w-qabf 0.2",
    # MRI-CT: on fold 0's validation case detail60-u10 fails two shifts on SD against the max.
    "detail60-u10-ema-c1": "--w-uptake 10 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6 "
    "--ema-decay 0.99 --w-contrast 1",
    # The learning rate falls along a cosine to 1 % of 2e-3 instead of staying: the validation
    # loss is still falling at epoch 30 of the constant rate.
    "uptake-mean25-cos": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --lr-schedule cosine",
    "detail60-u10-cos": "--w-uptake 10 --w-gradient 2 --w-mean-intensity 0 --detail-gain 0.6 "
    "--lr-schedule cosine",
    "uptake-mean25-plain": "--w-uptake 1 --w-gradient 2 --w-mean-intensity 0.25 --no-eem --no-ed "
    "--no-dps",
}
#: Longer schedules: recipe -> (epochs, the recipe of the same flags it continues). At a constant
#: rate, resuming a finished 30-epoch run to epoch 60 is the 60-epoch run exactly (the trainer
#: resumes exactly), so each run starts from a copy of the shorter recipe's finished run.
LONGER: dict[str, tuple[int, str]] = {
    "uptake-mean25-ema-e60": (60, "uptake-mean25-ema"),
    "detail60-u10-ema-e60": (60, "detail60-u10-ema"),
}
for _name, (_epochs, _shorter) in LONGER.items():
    RECIPES[_name] = RECIPES[_shorter]


def _events(run: Path) -> list[dict]:
    """The run's progress events; a line cut by a kill is skipped."""
    log = run / LOG_NAME
    events = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def finished(run: Path, epochs: int | None = None) -> bool:
    """True when the run's progress log ends with its ``done`` event (at ``epochs`` or later)."""
    events = _events(run)
    if not events or events[-1].get("event") != "done":
        return False
    return epochs is None or events[-1].get("epoch", 0) >= epochs


def start_from_shorter(run: Path, shorter: Path) -> bool:
    """Copy the shorter recipe's finished run into ``run`` (not yet started) to continue it.

    Returns False, copying nothing, when ``run`` exists or ``shorter`` has not finished.
    """
    if run.exists() or not finished(shorter):
        return False
    shutil.copytree(shorter, run)
    return True


def keep(run: Path, folder: Path) -> Path:
    """Copy a finished run's weights, sidecar and epoch events (no step events) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in run.glob("EDPSN_*"):
        shutil.copy2(path, folder / path.name)
    epochs = [json.dumps(e) for e in _events(run) if e.get("event") != "step"]
    (folder / LOG_NAME).write_text("\n".join(epochs) + "\n")
    return folder


def pinned_loss(recipe_args: list[str]) -> list[str]:
    """LossConfig's default for every loss flag the recipe leaves out.

    ``edpsn train`` inherits a loss setting not given from the pair's shipped weights
    (training/loss_choice.py); a recipe must mean the same whatever is shipped at the time.
    """
    out = []
    for f in dataclasses.fields(LossConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("eps", "uptake_margin") or flag in recipe_args:
            continue
        if f.type in (bool, "bool"):
            out.append(flag if f.default else "--no-" + flag[2:])
        else:
            out += [flag, repr(float(f.default))]
    return out


def train_command(
    recipe: str, pair: str, split: str, seed: int, epochs: int, run: Path, threads: int
) -> list[str]:
    """The ``edpsn train`` command of one (recipe, pair, split, seed) run, resuming if it can."""
    cmd = [sys.executable, "-m", "EDPSNLib.cli", "train", "--pair", pair]
    cmd += ["--split", split, "--seed", str(seed), "--epochs", str(epochs)]
    recipe_args = RECIPES[recipe].split()
    cmd += ["--threads", str(threads), "--out", str(run), *COMMON.split(), *recipe_args]
    cmd += pinned_loss(recipe_args)
    if (run / CHECKPOINT_NAME).is_file():
        cmd += ["--resume", str(run / CHECKPOINT_NAME)]
    return cmd


def _train(args: argparse.Namespace, split: str, seed: int, run: Path) -> int:
    """Run (or resume) one training run; its output goes to ``train.log`` in the run folder."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "EDPSNFusion"))
    cmd = train_command(args.recipe, args.pair, split, seed, args.epochs, run, args.threads)
    print(" ".join(cmd), flush=True)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "train.log", "a") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        print(f"{run}: edpsn train exited {rc}; see {run / 'train.log'}", flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    ap.add_argument("--pair", required=True, choices=PAIR_NAMES)
    ap.add_argument("--folds", help="comma list of fold numbers (default: all)")
    ap.add_argument(
        "--final",
        action="store_true",
        help="train once on case-all (every case but one validation case) into all-seed<s>: "
        "the shipped weights, once the recipe has been measured on the folds",
    )
    ap.add_argument("--seeds", default="0", help="comma list of seeds")
    ap.add_argument("--epochs", type=int, help="default: 30, or the recipe's (LONGER)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "folds"))
    ap.add_argument(
        "--keep",
        metavar="DIR",
        help="copy each finished run to DIR/<recipe>/<pair>/<run>/ (weights, sidecar, epoch "
        "log), as benchmarks/checkpoints holds them",
    )
    args = ap.parse_args()
    epochs, shorter = LONGER.get(args.recipe, (30, None))
    args.epochs = args.epochs or epochs
    folds = [f"fold{k}" for k in range(fold_count(split_names(args.pair, "all")))]
    if args.folds:
        folds = [f"fold{int(k)}" for k in args.folds.split(",")]
    if args.final:
        folds = ["all"]
    for fold in folds:
        split = "case-all" if fold == "all" else f"case-fold-{fold[4:]}"
        for seed in (int(s) for s in args.seeds.split(",")):
            run = Path(args.out) / args.recipe / args.pair / f"{fold}-seed{seed}"
            if shorter and start_from_shorter(run, Path(args.out) / shorter / args.pair / run.name):
                print(f"{run}: continues {shorter}'s finished run", flush=True)
            if finished(run, args.epochs):
                print(f"{run}: done, skipped", flush=True)
            else:
                rc = _train(args, split, seed, run)
                if rc != 0:
                    return rc
            if args.keep:
                print(f"kept in {keep(run, Path(args.keep) / run.relative_to(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
