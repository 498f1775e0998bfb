"""``edpsn train``: train or fine-tune EDPSN on Harvard pairs from the command line.

Ctrl-C (SIGINT), SIGTERM, Ctrl-Break (SIGBREAK, Windows) or the ``--cancel-file`` appearing
cancels cleanly between two steps: a resumable checkpoint is written and the command exits
with code 130. ``--json-progress`` prints every progress event as one JSON line on stdout
(what the Slicer module reads); the tqdm bar then stays off. Under ``torchrun`` every process
runs this command; rank 0 alone prints (see docs/training.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import signal
import sys
import threading
from typing import Any

from EDPSNLib import IMPORTED_AT
from EDPSNLib.data.harvard import PAIR_NAMES
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.network.config import HEADS
from EDPSNLib.training.augment import AUGMENT_KINDS
from EDPSNLib.training.config import LR_SCHEDULES, TRAIN_SPLIT_HELP
from EDPSNLib.training.losses import LossConfig

#: Exit code of a cancelled run (the shell convention for an interrupt).
EXIT_CANCELLED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edpsn train``."""
    parser.add_argument(
        "--data", metavar="DIR", help="data folder holding harvard/ (default: shared data)"
    )
    parser.add_argument("--pair", required=True, choices=PAIR_NAMES, help="modality pair to train")
    parser.add_argument("--split", default="source", help=TRAIN_SPLIT_HELP)
    parser.add_argument(
        "--augment",
        default="none",
        help=f"comma list of {', '.join(AUGMENT_KINDS)} (MRI contrast, functional scale, "
        "rotation), 'all' or 'none' (default; crops and flips always)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (checkpoint, log, weights)"
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="total epochs (a resumed run continues to it)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--lr", type=float, default=1e-4, help="Adam learning rate (also on --resume)"
    )
    parser.add_argument("--crop", type=int, default=128, help="side of the random training crops")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--resume", metavar="CKPT", help="checkpoint.pt of an earlier run to continue"
    )
    parser.add_argument(
        "--init", metavar="WEIGHTS", help="weights (.safetensors) to fine-tune from"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="constant",
        help="constant --lr, or cosine from --lr down to 1 %% of it at the last step",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        metavar="D",
        help="validate and save a moving average of the weights over about 1/(1-D) steps, "
        "e.g. 0.99 (default 0: the trained weights themselves)",
    )
    parser.add_argument(
        "--vgg-weights",
        metavar="FILE",
        help="torchvision VGG-16 state dict (.pth/.safetensors) for the perceptual loss; default: seeded random-conv fallback",
    )
    parser.add_argument(
        "--max-steps-per-epoch", type=int, metavar="K", help="cap the steps of each epoch"
    )
    parser.add_argument(
        "--max-val-images",
        type=int,
        metavar="N",
        help="validate on the first N images of the split only",
    )
    parser.add_argument(
        "--select",
        default="loss",
        choices=("loss", *METRIC_NAMES),
        help="keep the epoch with the lowest validation loss, or the highest value of a metric",
    )
    # Loss settings default to None: one not given is inherited (training/loss_choice.py).
    inherit = (
        " (default: that of the resumed run, the --init weights or the pair's shipped weights)"
    )
    for name, help_text in (
        ("w_max_intensity", "weight of the MSE to max(MRI, functional)"),
        ("w_mean_intensity", "weight of the MSE to their mean"),
        ("w_gradient", "weight of the L1 to the max of the Sobel magnitudes"),
        ("w_perceptual", "weight of the perceptual (feature) loss"),
        (
            "w_uptake",
            "weight of the one-sided MSE to the functional image where it exceeds the MRI",
        ),
        ("w_ssim", "weight of 1 - SSIM to the two sources (the metric's 7x7 window)"),
        ("w_contrast", "weight of the shortfall of the SD of the image below the pixel maximum's"),
        ("w_qabf", "weight of 1 - Q^AB/F (edge strength and orientation of the sources kept)"),
        ("detail_gain", "add this much of the darker source's detail (highpass) to the max target"),
        ("detail_sigma", "Gaussian sigma in pixels of that highpass"),
    ):
        parser.add_argument("--" + name.replace("_", "-"), type=float, help=help_text + inherit)
    parser.add_argument(
        "--detail-same-sign",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add only detail whose sign agrees with the brighter source's (MRI-CT)" + inherit,
    )
    parser.add_argument(
        "--head",
        choices=HEADS,
        help="output head of a fresh network (default: the shipped network's, blend)",
    )
    for switch, what in (
        ("eem", "edge enhancement"),
        ("ed", "entropy division"),
        ("dps", "path selection"),
    ):
        parser.add_argument(
            f"--no-{switch}", action="store_true", help=f"ablation: train without {what}"
        )
    parser.add_argument(
        "--dps-gate",
        action="store_true",
        help="a fresh network learns per-pixel weights over its three paths (starting at the "
        "entropy regions)",
    )
    parser.add_argument(
        "--eem-weight",
        type=float,
        metavar="W",
        help="edge enhancement strength of a fresh network: I + W * CCG(I) (default 0.5)",
    )
    parser.add_argument(
        "--residual-scale",
        type=float,
        metavar="S",
        help="the blend head's correction of a fresh network, up to S x max(MRI, functional); "
        "0 keeps the output between the two inputs at every pixel (default 0.2)",
    )
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads for torch, ITK and BLAS together"
    )
    parser.add_argument(
        "--json-progress", action="store_true", help="print progress events as JSON lines on stdout"
    )
    parser.add_argument(
        "--cancel-file",
        metavar="PATH",
        help="stop (with a checkpoint, exit 130) when this file appears; one present at start "
        "is removed as stale",
    )


def _model_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The EDPSNConfig fields the command line changes (ablation switches, head), or None."""
    model: dict[str, Any] = {
        f"use_{k}": False for k in ("eem", "ed", "dps") if getattr(args, f"no_{k}")
    }
    if args.head:
        model["head"] = args.head
    if args.dps_gate:
        model["dps_gate"] = True
    if args.eem_weight is not None:
        model["eem_weight"] = args.eem_weight
    if args.residual_scale is not None:
        model["residual_scale"] = args.residual_scale
    return model or None


def _command(args: argparse.Namespace) -> str:
    """The equivalent command line, recorded in the weights' metadata."""
    parts = ["edpsn", "train"]
    for key, value in sorted(vars(args).items()):
        flag = "--" + key.replace("_", "-")
        if key == "detail_same_sign" and value is False:  # given as --no-...: not inherited
            parts.append("--no-" + flag[2:])
        if key.startswith("_") or key == "command" or value in (None, False):
            continue
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


class _CancelOnSignal:
    """Turns SIGINT/SIGTERM (and SIGBREAK on Windows) into a cancel flag (main thread only)."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _CancelOnSignal:
        if threading.current_thread() is threading.main_thread():
            # Windows delivers Ctrl-Break to console programs as SIGBREAK, never as SIGTERM.
            extra = (signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()
            for sig in (signal.SIGINT, signal.SIGTERM, *extra):
                self.saved[sig] = signal.signal(sig, lambda *_: self.flag.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Run the training; 0 when done, 130 when cancelled (checkpoint kept for --resume)."""

    from EDPSNLib.errors import EDPSNError
    from EDPSNLib.threads import set_threads
    from EDPSNLib.training.distributed import is_main_process
    from EDPSNLib.training.loss_choice import choose_loss
    from EDPSNLib.training.trainer import TrainConfig, train

    if args.threads:  # torch, ITK and BLAS together, as edpsn fuse does
        set_threads(args.threads)
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(LossConfig)}
    loss, loss_note = choose_loss(given, args.pair, init=args.init, resume=args.resume)
    cfg = TrainConfig(
        out=args.out,
        pair=args.pair,
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        crop=args.crop,
        device=args.device,
        resume=args.resume,
        init=args.init,
        seed=args.seed,
        vgg_weights=args.vgg_weights,
        max_steps_per_epoch=args.max_steps_per_epoch,
        workers=args.workers,
        max_val_images=args.max_val_images,
        select=args.select,
        cancel_file=args.cancel_file,
        cancel_since=IMPORTED_AT,
        progress_bar=not args.json_progress,
        command=_command(args),
        model=_model_settings(args),
        loss=loss,
        loss_source=loss_note,
        split=args.split,
        augment=args.augment,
        ema_decay=args.ema_decay,
        lr_schedule=args.lr_schedule,
    )

    def progress(event: dict[str, Any]) -> None:
        """Pass on a training event: JSON on stdout (--json-progress), else warnings on stderr."""
        if args.json_progress:
            print(json.dumps(event), flush=True)
        elif event["event"] == "warning":
            print(f"edpsn train: warning: {event['message']}", file=sys.stderr)
        elif event["event"] == "start" and event.get("loss_source"):
            print(f"edpsn train: {event['loss_source']}.", file=sys.stderr)

    main_rank = is_main_process()
    try:
        with _CancelOnSignal() as stop:
            result = train(cfg, progress=progress, cancel=stop.flag.is_set)
    except EDPSNError:
        if main_rank:
            raise
        return 2  # torchrun's other ranks: rank 0 prints the same message once
    if not main_rank:
        return EXIT_CANCELLED if result.cancelled else 0
    report = sys.stderr if args.json_progress else sys.stdout
    if result.cancelled:
        print(
            f"Training cancelled in epoch {result.epochs_done + 1}; to continue, run the same "
            f"command with --resume {result.checkpoint}",
            file=report,
        )
        return EXIT_CANCELLED
    best = result.best or {}
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in best.get("metrics", {}).items() if v is not None)
    print(f"Weights: {result.weights} (epoch {best.get('epoch')}; {metrics})", file=report)
    print(f"Log: {result.out / 'progress.jsonl'}; curves: {result.out / 'curves.png'}", file=report)
    return 0
