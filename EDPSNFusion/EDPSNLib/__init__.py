"""EDPSN core library: computing without Slicer."""
