"""``python -m EDPSNLib.cli`` (what the Slicer modules and torchrun run) and the ``edpsn`` script."""

import logging
import os
import sys

from EDPSNLib.cli import main


def _exit(rc: int) -> None:
    """Exit with ``rc``; a torchrun worker skips the interpreter's teardown.

    A gloo worker could abort after a finished run ("terminate called without an active
    exception", exit -6) while C++ statics and threads were torn down at interpreter exit,
    even after ``destroy_process_group``. Every output is written and closed by then, so a
    worker flushes its streams and leaves with ``os._exit``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


def console() -> None:
    """The ``edpsn`` console script (``torchrun --no-python edpsn ...``): main with that exit."""
    _exit(main())


if __name__ == "__main__":  # importing the module (doctest collection, tools) runs nothing
    _exit(main())
