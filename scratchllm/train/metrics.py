"""What a run records: one JSON line per step in ``metrics.jsonl``, optional TensorBoard events, a loss plot.

JSON lines are the primary record because any tool reads them (``pandas.read_json(path, lines=True)``, ``jq``) and a
crash loses at most the line being written: each line is flushed as soon as it is complete. A resumed run first drops
the lines of steps it is about to redo, so the file holds each step once. TensorBoard is used only when it is
installed; it is not a dependency.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from ..fileio import atomic_write_bytes

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per record to ``run_dir/metrics.jsonl`` (and to TensorBoard when available)."""

    def __init__(self, run_dir: str | Path, start_step: int = 0, tensorboard: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            # Steps at or after the resume point were logged by the interrupted run and will be logged again.
            kept = [line for line in read_metrics(self.path) if line.get("step", -1) < start_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.file = self.path.open("a")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self.writer = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=start_step)

    def log(self, record: dict) -> None:
        """Write ``record`` (which must have a ``step``) as one line, flushed at once."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Every record of a metrics file, skipping a torn last line left by a crash."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss(metrics_path: str | Path, png_path: str | Path) -> Path:
    """Plot training and validation loss against the step into ``png_path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed: the plot only goes to a file
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(png_path, buffer.getvalue())
