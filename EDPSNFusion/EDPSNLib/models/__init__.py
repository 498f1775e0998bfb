"""Weights files and the model registry (where weights are looked up by name)."""
