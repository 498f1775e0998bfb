"""The ``edpsn`` command lines of a training run from the Slicer module.

A run is ``[prepare] -> [score the base weights] -> train -> [score the new weights]``, each an
``edpsn`` subprocess (see :mod:`EDPSNLib.jobs.fuse` for the contract; no torch at import here
either). Preparing a data set is :mod:`EDPSNLib.jobs.prepare`; reading the results back is
:mod:`EDPSNLib.jobs.results`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from EDPSNLib.errors import InputError
from EDPSNLib.models.install import install_model
from EDPSNLib.models.registry import check_name, weights_file
from EDPSNLib.names import NETWORK_METHOD
from EDPSNLib.paths import harvard_root, user_models_dir

#: Names of runs, weights and cases: what the registry and ``edpsn prepare`` accept.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: The decay of EDPSN Training's "Average the weights": the protocol's (docs/protocol.md,
#: train_folds recipes ``*-ema``), which narrowed the spread between seeds.
WEIGHT_AVERAGE_DECAY = 0.99


@dataclass
class TrainJob:
    """What the user chose in EDPSN Training: the settings of one training run.

    The defaults are those of ``edpsn train`` and of the module's parameter node. What varies
    from one command to the next of the same run (resuming, scoring) is an argument of
    :func:`train_arguments` and :func:`training_steps` instead.

    Attributes:
        name: the run's name: its folder (:attr:`folder`) and its installed weights' name.
        pair: the modality pair, e.g. "MRI-PET".
        data: a Harvard-layout folder (or the folder holding ``harvard/``); None for the
            shipped data.
        epochs: epochs to train.
        batch_size: the global batch size.
        lr: the learning rate.
        crop: the side of the square training crops, in pixels.
        device: "auto", "cpu" or "cuda".
        base: weights to fine-tune (``--init``); None trains from scratch.
        ema_decay: decay of the moving average of the weights that is validated and saved
            (``--ema-decay``); 0 saves the trained weights themselves.
        max_steps_per_epoch: a cap on the steps of each epoch (short runs and tests).
        cancel_file: the run saves a checkpoint and stops when this file appears (see
            :func:`cancel_file`); None watches no file.

    Example:
        >>> job = TrainJob("r1", "MRI-CT", epochs=2)
        >>> job.batch_size, job.folder.parts[-2:]
        (8, ('runs', 'r1'))
    """

    name: str
    pair: str
    data: str | Path | None = None
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    crop: int = 128
    device: str = "auto"
    base: str | Path | None = None
    ema_decay: float = 0.0
    max_steps_per_epoch: int | None = None
    cancel_file: str | Path | None = None

    @property
    def folder(self) -> Path:
        """The run folder, :func:`run_folder` of :attr:`name` (not created here)."""
        return run_folder(self.name)


def train_arguments(
    job: TrainJob, out: str | Path | None = None, resume: str | Path | None = None
) -> list[str]:
    """The ``edpsn train`` command line of a run, with JSON progress events on stdout.

    Args:
        job: the run's settings; ``job.base`` is passed as ``--init`` unless resuming.
        out: the run folder (checkpoint, log, weights); None for ``job.folder``.
        resume: a checkpoint to continue a cancelled run from.

    Returns:
        The arguments after the program name, as strings.

    Example:
        >>> job = TrainJob("r", "MRI-CT", epochs=2, batch_size=4, crop=64, device="cpu",
        ...     base="base.safetensors")
        >>> args = train_arguments(job, out="run")
        >>> args[:3], args[args.index("--init") + 1], args[args.index("--out") + 1]
        (['train', '--pair', 'MRI-CT'], 'base.safetensors', 'run')
    """
    args = [
        "train",
        "--pair",
        job.pair,
        "--out",
        job.folder if out is None else out,
        "--epochs",
        job.epochs,
        "--batch-size",
        job.batch_size,
        "--lr",
        repr(float(job.lr)),
        "--crop",
        job.crop,
        "--device",
        job.device,
        "--json-progress",
    ]
    if job.data is not None:
        args += ["--data", harvard_root(job.data)]
    if resume is not None:
        args += ["--resume", resume]
    elif job.base:
        args += ["--init", job.base]
    if job.ema_decay:
        args += ["--ema-decay", repr(float(job.ema_decay))]
    if job.max_steps_per_epoch:
        args += ["--max-steps-per-epoch", job.max_steps_per_epoch]
    if job.cancel_file is not None:
        args += ["--cancel-file", job.cancel_file]
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
    job: TrainJob, *, resume: bool = False, score: bool = True
) -> list[tuple[str, list[str]]]:
    """The commands of one training run, in order, each with a message for the status line.

    Score the base weights on the test split (once per run), train (or resume), score the new
    weights.

    Args:
        job: the run's settings; it writes into ``job.folder``, and without ``job.base`` it
            trains from scratch and scores nothing before.
        resume: continue from the checkpoint in ``job.folder`` instead of starting again.
        score: False leaves the two scorings out (a data set without a test split).

    Returns:
        ``(message, arguments)`` of each ``edpsn`` command.

    Example:
        >>> job = TrainJob("r", "MRI-CT", epochs=1, batch_size=2, crop=64, device="cpu")
        >>> [arguments[0] for _, arguments in training_steps(job)]
        ['train', 'evaluate']
    """
    run = job.folder
    common = {"pair": job.pair, "data": job.data, "device": job.device}
    steps = []
    if score and job.base and not (run / "before" / "summary.csv").is_file():
        before = evaluate_arguments(weights=job.base, out=run / "before", **common)
        steps.append(("Scoring the base weights on the test split...", before))
    train = train_arguments(job, run, resume=run / "checkpoint.pt" if resume else None)
    steps.append(("Resuming the training..." if resume else "Training...", train))
    if score:
        after = evaluate_arguments(weights=weights_file(run, job.pair), out=run / "after", **common)
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
