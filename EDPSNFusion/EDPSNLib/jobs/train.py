"""The ``edpsn`` command lines of a training run from the Slicer module.

A run is ``[prepare] -> [score the base weights] -> train -> [score the new weights]``, each an
``edpsn`` subprocess (see :mod:`EDPSNLib.jobs.fuse` for the contract; no torch at import here
either). Preparing a data set is :mod:`EDPSNLib.jobs.prepare`; reading the results back is
:mod:`EDPSNLib.jobs.results`.
"""

from __future__ import annotations

import re
from pathlib import Path

from EDPSNLib.errors import InputError
from EDPSNLib.models.install import install_model
from EDPSNLib.models.registry import check_name, weights_file
from EDPSNLib.names import NETWORK_METHOD
from EDPSNLib.paths import harvard_root, user_models_dir

#: Names of runs, weights and cases: what the registry and ``edpsn prepare`` accept.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def train_arguments(
    *,
    pair: str,
    out: str | Path,
    data: str | Path | None,
    epochs: int,
    batch_size: int,
    lr: float,
    crop: int,
    device: str,
    init: str | Path | None = None,
    resume: str | Path | None = None,
    max_steps_per_epoch: int | None = None,
    cancel_file: str | Path | None = None,
) -> list[str]:
    """The ``edpsn train`` command line of a run, with JSON progress events on stdout.

    Args:
        pair: the modality pair, e.g. "MRI-PET".
        out: the run folder (checkpoint, log, weights).
        data: a Harvard-layout folder (or the folder holding ``harvard/``); None for the
            shipped data.
        epochs: epochs to train.
        batch_size: the global batch size.
        lr: the learning rate.
        crop: the side of the square training crops, in pixels.
        device: "auto", "cpu" or "cuda".
        init: weights to start from (fine-tuning); ignored when resuming.
        resume: a checkpoint to continue a cancelled run from.
        max_steps_per_epoch: a cap on the steps of each epoch (short runs and tests).
        cancel_file: the run saves a checkpoint and stops when this file appears.

    Returns:
        The arguments after the program name, as strings.

    Example:
        >>> args = train_arguments(pair="MRI-CT", out="run", data=None, epochs=2,
        ...     batch_size=4, lr=1e-4, crop=64, device="cpu", init="base.safetensors")
        >>> args[:3], args[args.index("--init") + 1]
        (['train', '--pair', 'MRI-CT'], 'base.safetensors')
    """
    args = [
        "train",
        "--pair",
        pair,
        "--out",
        out,
        "--epochs",
        epochs,
        "--batch-size",
        batch_size,
        "--lr",
        repr(float(lr)),
        "--crop",
        crop,
        "--device",
        device,
        "--json-progress",
    ]
    if data is not None:
        args += ["--data", harvard_root(data)]
    if resume is not None:
        args += ["--resume", resume]
    elif init is not None:
        args += ["--init", init]
    if max_steps_per_epoch:
        args += ["--max-steps-per-epoch", max_steps_per_epoch]
    if cancel_file is not None:
        args += ["--cancel-file", cancel_file]
    return [str(a) for a in args]


def evaluate_arguments(
    *, pair: str, weights: str | Path, out: str | Path, data: str | Path | None, device: str
) -> list[str]:
    """The ``edpsn evaluate`` command line that scores one weights file on the test split.

    Args:
        pair: the modality pair.
        weights: the weights file to score.
        out: the folder of the evaluation (its ``summary.csv``); no images are written.
        data: a Harvard-layout folder; None for the shipped data.
        device: "auto", "cpu" or "cuda".

    Returns:
        The arguments after the program name, as strings.

    Example:
        >>> args = evaluate_arguments(pair="MRI-PET", weights="w.safetensors", out="e",
        ...     data=None, device="cpu")
        >>> args[args.index("--split") + 1], args[-1]
        ('test', '--no-images')
    """
    args = [
        "evaluate",
        "--pair",
        pair,
        "--split",
        "test",
        "--method",
        NETWORK_METHOD,
        "--weights",
        weights,
        "--device",
        device,
        "--out",
        out,
        "--no-images",
    ]
    if data is not None:
        args += ["--data", harvard_root(data)]
    return [str(a) for a in args]


def check_training_inputs(data: str | Path, pair: str, name: str) -> str | None:
    """Why ``edpsn train`` cannot start with this data folder and run name.

    Args:
        data: a Harvard-layout folder (or the folder holding ``harvard/``).
        pair: the modality pair to train.
        name: the name of the run and of its weights.

    Returns:
        A sentence for the user, or None when the run can start.

    Example:
        >>> check_training_inputs("no/such/folder", "MRI-CT", "run1")[-22:]
        'Harvard-layout folder.'
    """
    folder = harvard_root(data)
    if not (folder / pair / "MRI").is_dir() or not (folder / "splits" / pair).is_dir():
        return (
            f"{folder} has no {pair}/MRI and splits/{pair} folders: pick a Harvard-layout folder."
        )
    return check_run_name(name)


def check_run_name(name: str) -> str | None:
    """Why ``name`` cannot name a run and its weights, by the registry's own rule.

    Checked up front so that a finished training never fails at its install step.

    Args:
        name: the name the user typed.

    Returns:
        A sentence for the user, or None when the name is usable.

    Example:
        >>> check_run_name("my-run_2") is None, check_run_name("a b")
        (True, "Name the new weights with letters, digits, '-', '_' and '.' only.")
    """
    if not RUN_NAME.fullmatch(name or ""):
        return "Name the new weights with letters, digits, '-', '_' and '.' only."
    if name.startswith("EDPSN_MRI-"):
        return f"'{name}' would hide the shipped default weights; choose another name."
    try:
        check_name(name)
    except InputError as exc:
        return str(exc)
    return None


def run_folder(name: str) -> Path:
    """Where a named training run keeps its checkpoint, log and evaluations.

    Args:
        name: the run's name.

    Returns:
        ``<user models folder>/runs/<name>`` (not created here).

    Example:
        >>> run_folder("r1").parts[-2:]
        ('runs', 'r1')
    """
    return user_models_dir() / "runs" / name


def cancel_file(name: str) -> Path:
    """The file whose appearance makes ``edpsn train --cancel-file`` save and stop.

    Args:
        name: the run's name.

    Returns:
        ``cancel.request`` in the run folder.

    Example:
        >>> cancel_file("r1").name
        'cancel.request'
    """
    return run_folder(name) / "cancel.request"


def training_steps(
    *,
    name: str,
    pair: str,
    data: str | Path | None,
    device: str,
    epochs: int,
    batch_size: int,
    lr: float,
    crop: int,
    base: str | Path | None = None,
    resume: bool = False,
    max_steps_per_epoch: int | None = None,
    cancel_file: str | Path | None = None,
    score: bool = True,
) -> list[tuple[str, list[str]]]:
    """The commands of one training run, in order, each with a message for the status line.

    Score the base weights on the test split (once per run), train (or resume), score the new
    weights.

    Args:
        name: the run's name (its folder is :func:`run_folder`).
        pair, data, device, epochs, batch_size, lr, crop, max_steps_per_epoch, cancel_file:
            as for :func:`train_arguments`.
        base: weights to fine-tune; None trains from scratch (and scores nothing before).
        resume: continue from the run's checkpoint instead of starting again.
        score: False leaves the two scorings out (a data set without a test split).

    Returns:
        ``(message, arguments)`` of each ``edpsn`` command.

    Example:
        >>> steps = training_steps(name="r", pair="MRI-CT", data=None, device="cpu", epochs=1,
        ...     batch_size=2, lr=1e-4, crop=64)
        >>> [arguments[0] for _, arguments in steps]
        ['train', 'evaluate']
    """
    run = run_folder(name)
    common = {"pair": pair, "data": data, "device": device}
    steps = []
    if score and base and not (run / "before" / "summary.csv").is_file():
        before = evaluate_arguments(weights=base, out=run / "before", **common)
        steps.append(("Scoring the base weights on the test split...", before))
    train = train_arguments(
        out=run,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        crop=crop,
        init=base or None,
        resume=run / "checkpoint.pt" if resume else None,
        max_steps_per_epoch=max_steps_per_epoch,
        cancel_file=cancel_file,
        **common,
    )
    steps.append(("Resuming the training..." if resume else "Training...", train))
    if score:
        after = evaluate_arguments(weights=weights_file(run, pair), out=run / "after", **common)
        steps.append(("Scoring the new weights on the test split...", after))
    return steps


def install_weights(name: str, pair: str) -> Path:
    """Install a run's best weights as the user model ``name`` (checked, copied atomically).

    Args:
        name: the run's name, which becomes the model's name.
        pair: the modality pair the run trained.

    Returns:
        The installed weights file in the user models folder.

    Raises:
        InputError: the run wrote no weights (it was stopped before its first epoch ended).
    """
    source = weights_file(run_folder(name), pair)
    if not source.is_file():
        raise InputError(f"The run '{name}' wrote no weights ({source}); train at least one epoch.")
    return install_model(source, name, overwrite=True)
