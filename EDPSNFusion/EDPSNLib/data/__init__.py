"""Readers of the training and test image sets (Harvard atlas, CHAOS, synthetic)."""
