"""The background process runner with real subprocesses: JSON events, exit codes, cancelling trees."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from EDPSNLib.errors import InputError
from EDPSNLib.jobs.process import BackgroundProcess, child_environment, module_command, parse_line

PY = sys.executable
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="checks POSIX process groups")


def _python(code: str) -> list[str]:
    return [PY, "-u", "-c", textwrap.dedent(code)]


def _run(proc: BackgroundProcess, timeout: float = 30.0) -> list[dict]:
    """Poll like the Slicer timer does until the exit event arrives."""
    events, deadline = [], time.monotonic() + timeout
    proc.start()
    while time.monotonic() < deadline:
        events += proc.poll()
        if events and events[-1]["event"] == "exit":
            return events
        time.sleep(0.02)
    proc.cancel(grace_s=0)
    raise AssertionError(f"no exit event within {timeout} s; got {events}")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_parse_line_reads_json_events_and_keeps_other_text():
    assert parse_line('{"event": "progress", "done": 3, "total": 9}\n') == {
        "event": "progress",
        "done": 3,
        "total": 9,
    }
    assert parse_line("Reading volumes\n") == {"event": "stdout", "message": "Reading volumes"}
    assert parse_line('{"no_event": 1}') == {"event": "stdout", "message": '{"no_event": 1}'}
    assert parse_line("{broken json") == {"event": "stdout", "message": "{broken json"}
    # A child may not forge the runner's own events, and stderr is never parsed as JSON.
    assert parse_line('{"event": "exit", "returncode": 0}')["event"] == "stdout"
    assert parse_line('{"event": "log"}', "stderr") == {
        "event": "stderr",
        "message": '{"event": "log"}',
    }


def test_json_progress_lines_arrive_in_order_then_exit():
    code = """
        import json, sys
        for i in range(3):
            print(json.dumps({"event": "progress", "stage": "fuse", "done": i + 1, "total": 3}))
        print("plain text")
        print("warning on stderr", file=sys.stderr)
        print(json.dumps({"event": "done", "outputs": {"fused": "x.nrrd"}}))
    """
    events = _run(BackgroundProcess(_python(code)))
    stdout = [e for e in events if e["event"] != "stderr"]
    assert [e.get("done") for e in stdout[:3]] == [1, 2, 3]
    assert stdout[3] == {"event": "stdout", "message": "plain text"}
    assert stdout[4] == {"event": "done", "outputs": {"fused": "x.nrrd"}}
    assert {"event": "stderr", "message": "warning on stderr"} in events
    assert events[-1]["event"] == "exit"
    assert events[-1]["returncode"] == 0 and events[-1]["cancelled"] is False


def test_nonzero_exit_reports_the_code_and_the_stderr_tail():
    code = """
        import sys
        for i in range(100):
            print(f"noise {i}", file=sys.stderr)
        print("edpsn fuse: error: the MRI volume is empty; pick another.", file=sys.stderr)
        sys.exit(2)
    """
    proc = BackgroundProcess(_python(code), tail_lines=5)
    exit_event = _run(proc)[-1]
    assert exit_event["returncode"] == 2 == proc.returncode
    tail = exit_event["stderr_tail"].splitlines()
    assert len(tail) == 5 and tail[-1].startswith("edpsn fuse: error: the MRI volume is empty")
    assert tail[0] == "noise 96"


def test_unstartable_command_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="Could not start"):
        BackgroundProcess([str(tmp_path / "no-such-python")]).start()
    with pytest.raises(InputError):
        BackgroundProcess([])


@posix_only
def test_cancel_kills_the_child_and_its_grandchild():
    # The child starts a grandchild (like the PythonSlicer launcher starting python-real),
    # prints both pids, then both sleep. Cancel must take down the whole tree.
    code = f"""
        import json, os, subprocess, time
        grandchild = subprocess.Popen([{PY!r}, "-c", "import time; time.sleep(120)"])
        print(json.dumps({{"event": "pids", "child": os.getpid(), "grandchild": grandchild.pid}}))
        time.sleep(120)
    """
    proc = BackgroundProcess(_python(code), grace_s=5.0).start()
    pids, deadline = None, time.monotonic() + 20
    while pids is None and time.monotonic() < deadline:
        pids = next((e for e in proc.poll() if e["event"] == "pids"), None)
        time.sleep(0.02)
    assert pids is not None, "the child never reported its pids"
    assert _alive(pids["child"]) and _alive(pids["grandchild"])
    t0 = time.monotonic()
    proc.cancel()
    assert time.monotonic() - t0 < 0.5, "cancel() must not block the GUI"
    assert proc.wait(timeout=20) is not None
    assert _wait_gone(pids["grandchild"], 10), "the grandchild survived the cancel"
    assert not _alive(pids["child"])
    events = proc.poll()
    assert events[-1]["event"] == "exit" and events[-1]["cancelled"] is True
    assert proc.returncode == -15  # SIGTERM was enough: no SIGKILL needed


@posix_only
def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period():
    code = """
        import json, signal, time
        signal.signal(signal.SIGTERM, lambda *a: print(json.dumps({"event": "log", "message": "ignoring SIGTERM"})))
        print(json.dumps({"event": "ready"}))
        while True:
            time.sleep(0.05)
    """
    proc = BackgroundProcess(_python(code), grace_s=1.0).start()
    deadline = time.monotonic() + 20
    while not any(e["event"] == "ready" for e in proc.poll()) and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.cancel()
    assert proc.wait(timeout=20) == -9
    assert 0.9 < time.monotonic() - t0 < 10
    events = proc.poll()
    assert {"event": "log", "message": "ignoring SIGTERM"} in events
    assert events[-1]["cancelled"] is True


@posix_only
def test_cancel_lets_a_child_finish_its_cleanup_on_sigterm(tmp_path):
    # Like 'edpsn train': SIGTERM sets a flag, the child saves a checkpoint and exits 130.
    marker = tmp_path / "checkpoint.txt"
    code = f"""
        import json, signal, sys, time
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        print(json.dumps({{"event": "start"}}))
        while not stop:
            time.sleep(0.02)
        open({str(marker)!r}, "w").write("saved")
        print(json.dumps({{"event": "cancelled"}}))
        sys.exit(130)
    """
    proc = BackgroundProcess(_python(code), grace_s=10.0).start()
    deadline = time.monotonic() + 20
    while not any(e["event"] == "start" for e in proc.poll()) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.cancel()
    assert proc.wait(timeout=20) == 130
    assert marker.read_text() == "saved"
    assert [e["event"] for e in proc.poll()][-2:] == ["cancelled", "exit"]


def test_module_command_and_environment_run_a_package_from_pythonpath(tmp_path):
    pkg = tmp_path / "libdir" / "demo_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(
        "import json, sys\nprint(json.dumps({'event': 'args', 'argv': sys.argv[1:]}))\n"
    )
    env = child_environment({"PATH": os.environ.get("PATH", "")}, [tmp_path / "libdir"])
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONPATH"] == str(tmp_path / "libdir")
    command = module_command(PY, "demo_pkg.tool", "--modality", "PET", 3)
    assert command[:4] == [PY, "-u", "-m", "demo_pkg.tool"]
    events = _run(BackgroundProcess(command, cwd=tmp_path, env=env))
    assert {"event": "args", "argv": ["--modality", "PET", "3"]} in events, json.dumps(events)
    assert events[-1]["returncode"] == 0
