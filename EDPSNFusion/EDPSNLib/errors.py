"""Errors a user can meet: each message says what is wrong and what to do."""

from __future__ import annotations

from collections.abc import Callable

#: How a front end names an option a message advises: (name, value) -> text. Names are the
#: Python argument names of the core (``orientation``, ``init``, ``method``...).
OptionNamer = Callable[[str, object], str]


def python_option(name: str, value: object) -> str:
    """An option as a Python keyword argument: ``orientation='search'``."""
    return f"{name}={value!r}"


class EDPSNError(Exception):
    """Base class of every error EDPSN reports to a user (CLI exit code 2, Slicer dialog).

    A message may advise options: ``EDPSNError("Re-run with {0}.", options=[("orientation",
    "search")])``; :meth:`render` names them the way the caller knows them (CLI flags, GUI
    fields), ``str()`` as Python arguments.
    """

    def __init__(self, message: str = "", *, options: list[tuple[str, object]] | None = None):
        self.template = message
        self.options = list(options or [])
        super().__init__(self.render(python_option))

    def render(self, namer: OptionNamer) -> str:
        """The message with each advised option named by ``namer``."""
        if not self.options:
            return self.template
        try:
            return self.template.format(*(namer(n, v) for n, v in self.options))
        except (IndexError, KeyError, ValueError):  # a brace in a path or an ITK message
            names = ", ".join(namer(n, v) for n, v in self.options)
            return f"{self.template} (options: {names})"


class InputError(EDPSNError, ValueError):
    """An input file, folder, image or argument is missing, unreadable or inconsistent."""


class WeightsError(EDPSNError, ValueError):
    """A weights file is truncated, foreign, or made for another architecture or pair."""


class RegistrationError(EDPSNError, RuntimeError):
    """Registration did not converge to a trustworthy transform."""


class TrainingError(EDPSNError, RuntimeError):
    """Training cannot go on (NaN loss, empty split, ...); the last good checkpoint is kept."""


class EDPSNWarning(UserWarning):
    """Something a user should know that does not stop the work (the CLI prints one line)."""
