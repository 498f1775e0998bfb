"""One CPU thread count for torch, ITK and BLAS, so their thread pools do not compete."""

from __future__ import annotations

import os
import sys

from EDPSNLib.errors import InputError

__all__ = ["available_cpus", "set_threads"]

#: Environment variables read by OpenMP and BLAS libraries when they load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count).

    Example:
        >>> available_cpus() >= 1
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int | None = None) -> int:
    """Give torch, SimpleITK and the BLAS libraries the same number of threads.

    Each library otherwise sizes its own pool to the machine; on a shared or busy machine
    the pools oversubscribe the CPUs and a run's CPU time more than doubles.

    Args:
        threads: the thread count, also written to the OpenMP/BLAS environment variables
            for libraries loaded later; None: :func:`available_cpus` for torch and ITK.

    Returns:
        The count set.

    Raises:
        InputError: ``threads`` is below 1.
    """
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: give at least 1 thread.")
    n = threads or available_cpus()
    if threads is not None:  # libraries loaded later (and subprocesses) read these
        for name in THREAD_VARIABLES:
            os.environ[name] = str(n)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    if "torch" in sys.modules or _importable("torch"):
        import torch

        torch.set_num_threads(n)
    try:  # BLAS libraries already loaded (numpy's, scipy's)
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    return n


def _importable(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None
