"""``python -m EDPSNLib.cli`` (what the Slicer modules and torchrun run): the ``edpsn`` command."""

import sys

from EDPSNLib.cli import main

if __name__ == "__main__":  # importing the module (doctest collection, tools) runs nothing
    sys.exit(main())
