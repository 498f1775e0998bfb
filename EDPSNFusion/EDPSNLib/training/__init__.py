"""Training: the trainer, its configuration, losses, checkpoints, reports, data sets."""
