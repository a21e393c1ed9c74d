"""Training: the run's specification, protocols and recipes, losses and the loop, checkpoints, the sweep, torchrun."""
