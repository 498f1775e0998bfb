"""Errors a user can meet: each message says what is wrong and what to do."""

from __future__ import annotations


class EDPSNError(Exception):
    """Base class of every error EDPSN reports to a user (CLI exit code 2, Slicer dialog)."""


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
