"""EDPSN Training's chain of commands: prepare the data set (from a CHAOS folder or the scene's
MRI + moving volume pair), score the base weights, train, score the new weights.

EDPSNLib.jobs.train builds every command line; this file picks them from the parameter node and
exports the scene pair. A prepared data set lives in the run folder, so a resumed run finds it
and skips the preparation.
"""

import shutil
import tempfile
from pathlib import Path

import slicer

from EDPSNLib.jobs import fuse as fuse_jobs
from EDPSNLib.jobs import prepare as prepare_jobs
from EDPSNLib.jobs import results as result_jobs
from EDPSNLib.jobs import train as train_jobs

from .choices import DataSource
from .runner import Step, StepChain
from .scene_io import exportNodes, setTable

#: Seconds a cancelled training gets after SIGTERM to save its checkpoint before it is killed.
CANCEL_GRACE_S = 120.0


def sourceProblem(p, resume=False):
    """Why a training cannot start (or resume) with these choices; None when it can."""
    pair, name = p.pair.value, p.outputName
    if p.source == DataSource.HARVARD:
        return train_jobs.check_training_inputs(p.dataFolder, pair, name)
    if resume and prepare_jobs.is_prepared(name):  # data set ready: sources not needed
        return train_jobs.check_run_name(name)
    if p.source == DataSource.CHAOS:
        return prepare_jobs.check_chaos_inputs(p.chaosFolder, pair, name)
    if not (p.sceneMri and p.sceneMoving) or p.sceneMri == p.sceneMoving:
        return "Select the MRI volume and a different CT, PET or SPECT volume of the scene."
    return train_jobs.check_run_name(name)


def dataFolder(p):
    """The Harvard-layout folder the training reads: the user's, or the run's prepared one."""
    return (
        p.dataFolder
        if p.source == DataSource.HARVARD
        else prepare_jobs.dataset_folder(p.outputName)
    )


def settings(p, maxStepsPerEpoch=None):
    """The training choices as a TrainJob, read once at start (the GUI may change while the
    data is prepared)."""
    return train_jobs.TrainJob(
        name=p.outputName,
        pair=p.pair.value,
        data=dataFolder(p),
        epochs=p.epochs,
        batch_size=p.batchSize,
        lr=p.learningRate,
        crop=p.crop,
        device=p.device.value,
        base=p.baseWeights or None,
        ema_decay=train_jobs.WEIGHT_AVERAGE_DECAY if p.weightAverage else 0.0,
        max_steps_per_epoch=maxStepsPerEpoch,
        cancel_file=train_jobs.cancel_file(p.outputName),
    )


def trainingSteps(job, score=True):
    """train_jobs.training_steps as chain steps; a run with a checkpoint is resumed."""
    resume = (job.folder / "checkpoint.pt").is_file()
    steps = []
    for message, args in train_jobs.training_steps(job, resume=resume, score=score):
        train = args[0] == "train"
        steps.append(
            Step(
                message,
                "Training" if train else "Scoring",
                "EDPSNLib.cli",
                args,
                graceS=CANCEL_GRACE_S if train else 10.0,
                cancelFile=job.cancel_file if train else None,
            )
        )
    return steps


def prepareStep(p, job):
    """The ``edpsn prepare`` step of a CHAOS or scene-pair source and what it records."""
    out = prepare_jobs.dataset_folder(job.name)
    if p.source == DataSource.CHAOS:
        sequence = p.mrSequence.value
        args = prepare_jobs.prepare_chaos_arguments(
            chaos=p.chaosFolder, out=out, mr_sequence=sequence
        )
        source = {"source": "chaos", "chaos": str(p.chaosFolder), "mr_sequence": sequence}
        message = f"Preparing MRI-CT pairs from CHAOS ({sequence})..."
        return Step(message, "Preparing", "EDPSNLib.cli", args), source
    mri, moving = p.sceneMri, p.sceneMoving
    tmp = Path(tempfile.mkdtemp(prefix="EDPSNTraining-", dir=slicer.app.temporaryPath))
    files = prepare_jobs.prepare_files(tmp)
    try:
        exportNodes({"mri": mri, "moving": moving}, files)
        args = prepare_jobs.prepare_volumes_arguments(
            mri=files["mri"],
            moving=files["moving"],
            modality=p.pair.modality,
            out=out,
            case=prepare_jobs.case_name(mri.GetName()),
            register=p.sceneRegistration.value,
            test_fraction=p.sceneTestPercent / 100.0,
        )
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    source = {
        "source": "scene",
        "mri": mri.GetName(),
        "moving": moving.GetName(),
        "register": p.sceneRegistration.value,
        "test_fraction": p.sceneTestPercent / 100.0,
    }
    message = f"Preparing training slices from {mri.GetName()} and {moving.GetName()}..."
    return Step(message, "Preparing", "EDPSNLib.cli", args, tmp=tmp), source


def trainingChain(p, log, maxStepsPerEpoch=None):
    """The steps of a training; the data set is prepared first unless it is ready."""
    job = settings(p, maxStepsPerEpoch)
    if p.source == DataSource.HARVARD:
        return StepChain(trainingSteps(job), log)
    if prepare_jobs.is_prepared(job.name):
        log(f"The data set of '{job.name}' is prepared already: preparation skipped.")
        return StepChain(trainingSteps(job, prepare_jobs.split_size(job.data, job.pair) > 0), log)
    step, source = prepareStep(p, job)

    def then():
        prepare_jobs.mark_prepared(job.name, source)
        score = prepare_jobs.split_size(job.data, job.pair) > 0
        if not score:
            log("The prepared data set has no test split: the before/after scoring is skipped.")
        return trainingSteps(job, score)

    step.then = then
    return StepChain([step], log, expected=1 + len(trainingSteps(job)))


def runFolder(p, resume=False):
    """The run folder of a training, made; a new (not resumed) run starts over in it."""
    run = train_jobs.run_folder(p.outputName)
    if resume and not prepare_jobs.resumable(p.outputName):
        raise ValueError(f"There is no checkpoint or data set of '{p.outputName}' to resume.")
    if not resume and run.exists():
        shutil.rmtree(run)  # the user agreed (the widget asks) to start this run over
    run.mkdir(parents=True, exist_ok=True)
    return run


def stepStatus(event):
    """The status line of a training "step" event: epoch, step, loss and time left."""
    eta = int(event.get("eta_s") or 0)
    return (
        f"Epoch {event['epoch']}, step {event['step']}/{event['steps']}: loss "
        f"{event['loss']:.4g}, about {eta // 60} min {eta % 60} s left"
    )


def baseWeightsChoices(pair):
    """A new network, then every installed weights file made for the pair."""
    from EDPSNLib.models.lookup import default_weights_path

    choices = [("New network (train from scratch)", "")]
    for label, value in fuse_jobs.weights_choices(pair):
        path = value or str(default_weights_path(pair))
        if not value.startswith(fuse_jobs.METHOD_PREFIX) and Path(path).is_file():
            choices.append((label, path))
    return choices


def finishTraining(p):
    """Install the new weights and show the before/after table; the chain's end event."""
    try:
        target = train_jobs.install_weights(p.outputName, p.pair.value)
        scored = (train_jobs.run_folder(p.outputName) / "after" / "summary.csv").is_file()
        rows = result_jobs.comparison_rows(p.outputName, p.baseWeights or None) if scored else None
    except Exception as exc:  # report it; never leave the GUI stuck in "running"
        return {"event": "failed", "message": f"The new weights could not be installed: {exc}"}
    message = f"Done: '{p.outputName}' is in EDPSN Fusion's model list ({target})."
    if rows is None:
        return {"event": "results", "message": message + " (No test split: no scores.)"}
    setTable(p, "resultsTable", rows, f"{p.outputName} test metrics")
    return {"event": "results", "message": message, "table": "resultsTable"}
