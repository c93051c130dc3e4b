"""Training: the loop, schedules, checkpoints and metrics (built by the training issue; today: memory metrics)."""
