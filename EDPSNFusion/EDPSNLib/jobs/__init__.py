"""Torch-free job builders and the background process runner used by the Slicer GUI."""
