"""Fusion of MRI with CT/PET/SPECT slices and volumes: methods, pipeline, scoring, pictures."""
