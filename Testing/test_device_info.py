"""The device line of the Slicer modules: which device a run uses, and why not the GPU."""

from __future__ import annotations

import sys

import pytest
import torch

from EDPSNLib.device_info import LOW_GPU_MEMORY, describe, device_report
from EDPSNLib.jobs.process import BackgroundProcess, module_command

HAS_CUDA = torch.cuda.is_available()


def test_cpu_choice_is_always_usable_and_says_so():
    report = device_report("cpu")
    assert (report["device"], report["usable"]) == ("cpu", True)
    assert describe(report) == "CPU: the CPU was chosen."


def test_unknown_device_is_not_usable():
    report = device_report("gpu")
    assert report["usable"] is False and "unknown device 'gpu'" in report["reason"]
    assert describe(report).startswith("Cannot use the GPU")


@pytest.mark.skipif(HAS_CUDA, reason="checks the explanation given when there is no GPU")
def test_without_a_gpu_auto_falls_back_and_cuda_is_refused_with_the_reason():
    auto, cuda = device_report("auto"), device_report("cuda")
    assert auto["device"] == cuda["device"] == "cpu"
    assert auto["usable"] and not cuda["usable"]
    cpu_only = torch.version.cuda is None
    assert ("CPU-only build" in auto["reason"]) == cpu_only
    assert ("finds no usable NVIDIA GPU" in auto["reason"]) == (not cpu_only)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_with_a_gpu_the_name_and_free_memory_are_reported():
    report = device_report("auto")
    assert report["device"] == "cuda" and report["name"] == torch.cuda.get_device_name(0)
    assert 0 < report["free_bytes"] <= report["total_bytes"]
    assert report["low_memory"] == (report["free_bytes"] < LOW_GPU_MEMORY)
    assert report["name"] in describe(report) and "GiB free" in describe(report)


def test_the_module_runs_as_a_subprocess_and_prints_one_json_event():
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.device_info", "--device", "cuda")
    )
    proc.start()
    assert proc.wait(timeout=120) == (0 if HAS_CUDA else 2)
    events = proc.poll()
    device = [e for e in events if e["event"] == "device"]
    assert len(device) == 1 and device[0]["choice"] == "cuda"
    # The subprocess sees the machine this process sees (free GPU memory aside, which other
    # programs change), and its line describes its own report.
    here, event = device_report("cuda"), device[0]
    stable = ("device", "name", "total_bytes", "reason", "usable")
    assert {k: event[k] for k in stable} == {k: here[k] for k in stable}
    assert event["text"] == describe(event)
    assert events[-1]["event"] == "exit"
