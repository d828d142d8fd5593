//! Training loop, optimiser, schedule, checkpoints.
