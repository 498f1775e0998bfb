"""Ctrl-C and SIGTERM that never land inside native code.

Python runs a signal handler at the next bytecode, which during an ITK registration is the
Python iteration callback that ITK calls: a KeyboardInterrupt raised there is printed by
SimpleITK as a traceback and swallowed, and the registration goes on (or fails with a
misleading error). Inside :func:`deferred` the command's handler only records the signal;
the interrupt is raised when the block ends, and long native steps may poll
:func:`requested` to stop early (e.g. ``ImageRegistrationMethod.StopRegistration()``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_state = {"depth": 0, "pending": None}


def deferring() -> bool:
    """True inside a :func:`deferred` block (a signal handler should only call :func:`request`).

    Returns:
        Whether interrupts are deferred now.
    """
    return _state["depth"] > 0


def request(name: str) -> None:
    """Record an interrupt (the signal's name) to raise when the deferred block ends.

    Args:
        name: the signal's name, e.g. ``SIGINT``.
    """
    _state["pending"] = name


def requested() -> bool:
    """Whether an interrupt is waiting (native loops poll this to stop early).

    Returns:
        True when a signal came during a deferred block.
    """
    return _state["pending"] is not None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run a block (native code with Python callbacks) with interrupts deferred to its end.

    Returns:
        A context manager; it raises KeyboardInterrupt on exit when a signal came.

    Example:
        >>> with deferred():
        ...     deferring()
        True
    """
    _state["depth"] += 1
    name = None
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:  # cleared even when the block failed: nothing stays pending
            name, _state["pending"] = _state["pending"], None
    if name is not None:
        raise KeyboardInterrupt(name)
