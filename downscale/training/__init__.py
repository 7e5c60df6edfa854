"""Training: the Lightning DataModule over a prepared dataset, the Lightning modules, checkpoints."""
