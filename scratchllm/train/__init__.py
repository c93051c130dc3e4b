"""Training: the loop (``trainer``), one accumulated optimizer step (``step``), AdamW parameter groups (``optim``),
learning-rate schedules (``schedule``), checkpoints and the training state (``checkpoint``, ``state``), metrics and
plots (``metrics``), and peak-memory measurement (``memory``)."""
