"""Run a command in the background: stdout/stderr lines as events, JSON progress, cancel the tree.

The Slicer modules run ``edpsn fuse`` and ``edpsn train`` through this class and poll it from a
``qt.QTimer``; it has no Qt in it, so it is tested here with real subprocesses.

Events are dicts with an ``"event"`` key:

- a stdout line holding a JSON object with an ``"event"`` key is that object, as it is;
- any other stdout line is ``{"event": "stdout", "message": line}``;
- a stderr line is ``{"event": "stderr", "message": line}`` (the last lines are kept for errors);
- the last event is ``{"event": "exit", "returncode": int, "cancelled": bool, "stderr_tail": str}``.

Cancelling must stop the whole process tree: Slicer's ``PythonSlicer`` is a launcher that
starts the real interpreter as a child, and killing the launcher alone leaves that child
running (and holding the GPU). So the command starts in a new session (POSIX) or a new
process group (Windows) and cancel signals the whole group: SIGTERM (CTRL_BREAK on Windows)
first, so ``edpsn train`` can save a resumable checkpoint, then SIGKILL (``taskkill /T /F``)
after a grace period.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from EDPSNLib.errors import InputError

#: Event names this class produces; a child's JSON line may not use them (it becomes "stdout").
RESERVED_EVENTS = ("stdout", "stderr", "exit")
_WINDOWS = sys.platform == "win32"


def parse_line(line: str, stream: str = "stdout") -> dict[str, Any]:
    """One output line of the child as an event.

    Args:
        line: the line as read (its line ending is dropped).
        stream: "stdout" or "stderr"; only stdout lines can be JSON events.

    Returns:
        The JSON object when the line is one with a string "event" key that is not one of
        :data:`RESERVED_EVENTS`; else ``{"event": stream, "message": line}``.

    Example:
        >>> parse_line('{"event": "progress", "done": 3}')
        {'event': 'progress', 'done': 3}
        >>> parse_line("plain text")
        {'event': 'stdout', 'message': 'plain text'}
    """
    text = line.rstrip("\r\n")
    if stream == "stdout" and text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("event"), str):
            if obj["event"] not in RESERVED_EVENTS:
                return obj
    return {"event": stream, "message": text}


def module_command(python: str, module: str, *args: str) -> list[str]:
    """The command line that runs a Python module unbuffered.

    Args:
        python: the interpreter (``PythonSlicer`` in Slicer, ``sys.executable`` elsewhere).
        module: the module to run with ``-m``.
        *args: its arguments (anything ``str`` can convert).

    Returns:
        ``[python, "-u", "-m", module, *args]``; ``-u`` so progress lines arrive as printed.

    Example:
        >>> module_command("python", "EDPSNLib.cli", "fuse", 4)
        ['python', '-u', '-m', 'EDPSNLib.cli', 'fuse', '4']
    """
    return [str(python), "-u", "-m", module, *map(str, args)]


def child_environment(
    base: Mapping[str, str] | None = None, pythonpath: Sequence[str | Path] = ()
) -> dict[str, str]:
    """The environment of a child: PYTHONPATH in front, unbuffered UTF-8 output.

    Args:
        base: the environment to copy; None for this process's (never changed either way).
        pythonpath: folders put in front of the base's PYTHONPATH (duplicates dropped).

    Returns:
        A new dict.

    Example:
        >>> env = child_environment({"PYTHONPATH": "b"}, pythonpath=["a"])
        >>> env["PYTHONPATH"].split(os.pathsep), env["PYTHONUNBUFFERED"]
        (['a', 'b'], '1')
    """
    env = dict(os.environ if base is None else base)
    parts = [str(p) for p in pythonpath] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


class BackgroundProcess:
    """A command running in its own process group; ``poll()`` returns the events seen so far.

    Args:
        command: the program and its arguments.
        cwd: the working folder of the command; None for this process's.
        env: its environment; None for this process's.
        grace_s: seconds between the polite stop and the kill on :meth:`cancel`.
        tail_lines: how many stderr lines :attr:`stderr_tail` keeps.

    Raises:
        InputError: ``command`` is empty.

    Example:
        >>> import sys
        >>> code = "import json; print(json.dumps({'event': 'step'})); print('done')"
        >>> proc = BackgroundProcess([sys.executable, "-c", code]).start()
        >>> proc.wait(timeout=60)
        0
        >>> [e["event"] for e in proc.poll()]
        ['step', 'stdout', 'exit']
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        grace_s: float = 10.0,
        tail_lines: int = 40,
    ) -> None:
        if not command:
            raise InputError("No command to run.")
        self.command = [str(c) for c in command]
        self.cwd, self.env, self.grace_s = cwd, None if env is None else dict(env), grace_s
        self.returncode: int | None = None
        self.cancelled = False
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._proc: subprocess.Popen[str] | None = None
        self._finished = threading.Event()
        self._readers: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> BackgroundProcess:
        """Start the command (once) and the threads that read its output.

        Returns:
            This object, so that ``BackgroundProcess(cmd).start()`` reads as one step.

        Raises:
            InputError: it was started already, or the program cannot be started at all.
        """
        if self._proc is not None:
            raise InputError("This process was already started; create a new one.")
        group = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
            if _WINDOWS
            else {"start_new_session": True}
        )
        try:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **group,
            )
        except OSError as exc:
            raise InputError(f"Could not start {self.command[0]}: {exc}. Check the path.") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self._proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self._proc.stderr, "stderr"), daemon=True),
        ]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._wait_for_exit, daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        """Process id of the command (and id of its process group on POSIX)."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """True from start() until the exit event has been queued."""
        return self._proc is not None and not self._finished.is_set()

    def poll(self) -> list[dict[str, Any]]:
        """Every event queued since the last call, in order (never blocks).

        Returns:
            The events; the "exit" event is the last one the process gives.
        """
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the exit event is queued, or the timeout.

        Args:
            timeout: seconds to wait at most; None waits as long as it takes.

        Returns:
            The exit code (negative: killed by that signal on POSIX), None while still running.
        """
        self._finished.wait(timeout)
        return self.returncode

    @property
    def stderr_tail(self) -> str:
        """The last stderr lines (what an error dialog shows)."""
        return "\n".join(self._tail)

    # -- cancel ---------------------------------------------------------------------------
    def cancel(self, grace_s: float | None = None) -> None:
        """Ask the whole process tree to stop now and kill what is left later; never blocks.

        Args:
            grace_s: seconds before the kill; None for the constructor's; 0 or less kills at once.
        """
        if self._proc is None or self._finished.is_set():
            return
        self.cancelled = True
        grace = self.grace_s if grace_s is None else grace_s
        if grace <= 0:
            self._kill_tree()
            return
        self._signal_tree()
        threading.Thread(target=self._escalate, args=(grace,), daemon=True).start()

    def _signal_tree(self) -> None:
        assert self._proc is not None
        try:
            if _WINDOWS:
                os.kill(self._proc.pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                os.killpg(self._proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # already gone

    def _kill_tree(self) -> None:
        assert self._proc is not None
        if _WINDOWS:
            subprocess.run(
                ["taskkill", "/PID", str(self._proc.pid), "/T", "/F"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _group_alive(self) -> bool:
        assert self._proc is not None
        self._proc.poll()  # reap the leader, so only live members keep the group
        if _WINDOWS:
            return self._proc.returncode is None
        try:
            os.killpg(self._proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _escalate(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self._group_alive():
                return
            time.sleep(0.05)
        self._kill_tree()

    # -- threads --------------------------------------------------------------------------
    def _read(self, stream: TextIO, name: str) -> None:
        for line in stream:
            event = parse_line(line, name)
            if name == "stderr" and event["message"].strip():
                self._tail.append(event["message"])
            self._events.put(event)
        stream.close()

    def _wait_for_exit(self) -> None:
        assert self._proc is not None
        for t in self._readers:
            t.join()  # output first: the exit event is always the last one
        self.returncode = self._proc.wait()
        self._events.put(
            {
                "event": "exit",
                "returncode": self.returncode,
                "cancelled": self.cancelled,
                "stderr_tail": self.stderr_tail,
            }
        )
        self._finished.set()
