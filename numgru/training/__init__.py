"""Training: the Trainer (the epoch loop: shuffling, validation, history, early stopping,
checkpoints) above the steppers that take one optimizer step (local, or data-parallel over MPI),
and the mini-batches they share."""
