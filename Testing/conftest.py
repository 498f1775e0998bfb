"""Shared test setup: the real data must be present; CPU threads kept to the CI machine's two."""

from __future__ import annotations

import os

import pytest

from EDPSNLib.paths import data_root

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail early, with the fix, when the real data folder is missing."""
    root = data_root()
    if not (root / "harvard").is_dir():
        raise pytest.UsageError(
            f"Real test data not found at {root}: put shared/data beside the repo or set EDPSN_DATA."
        )
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass
