"""Where an experiment's results go: ``NAME.json`` (the raw numbers), ``NAME.md`` (the table the book shows) and
``NAME.png`` (the figure), each written atomically so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ...fileio import atomic_write_text


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG through a temporary file, and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=150, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_outputs(
    name: str, result: dict, table: str, plot: Callable[[dict, Path], None], out_dir: str | Path
) -> list[Path]:
    """Write ``name``.json, .md and .png into ``out_dir``; returns the three paths."""
    out = Path(out_dir)
    paths = [
        atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n"),
        atomic_write_text(out / f"{name}.md", table + "\n"),
    ]
    plot(result, out / f"{name}.png")
    return paths + [out / f"{name}.png"]
