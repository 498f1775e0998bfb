"""``python -m EDPSNLib.cli`` (what the Slicer modules and torchrun run): the ``edpsn`` command."""

import sys

from EDPSNLib.cli import main

sys.exit(main())
