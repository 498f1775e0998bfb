"""EDPSN core library: computing without Slicer."""

import time as _time

#: When this process imported the library (before torch): a cancel file written after it,
#: e.g. by the GUI while ``edpsn train`` was still starting, is a live request, not stale.
IMPORTED_AT = _time.time()
