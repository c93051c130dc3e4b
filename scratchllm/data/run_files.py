"""Where a pipeline run keeps its files, and how a file of a task is written so that it appears whole or not at all.

An output directory holds::

    documents/shard_00000.jsonl.zst        the cleaned corpus (corpus.source=jsonl corpus.path=OUT/documents)
    rejects/<step>/shard_00000.jsonl.zst   dropped documents with their reason (write_rejects = true)
    report.json  report.md  near_dup_clusters.png  config.toml
    work/job.json                          the settings the run began with; resuming with others is refused
    work/stage0/shard_00000.jsonl.zst      what a shard stage kept, when it is not the last stage
    work/stage0/shard_00000.npz            those documents' places in the stream and their global-step features
    work/stage0/shard_00000.stats.json     what each step saw, kept and dropped in this shard, and its seconds
    work/stage0/shard_00000.done           the completion marker, written after everything else
    work/global0/drops.npz  stats.json  done

Every file is written under a temporary name and renamed into place (``os.replace``, atomic): ``ShardWriter`` for
the compressed documents, ``fileio`` for the rest; ``executor`` writes a task's marker last.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import zstandard

from scratchllm.config import ConfigError, config_to_dict
from scratchllm.fileio import atomic_write_text

if TYPE_CHECKING:
    from .pipeline import PipelineConfig, Stage

SETTINGS_THAT_MAY_CHANGE = ("out", "workers")  # a resumed run may move the directory or use more processes


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}"


class Layout:
    """Where every file of a run lives (see the module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.documents = self.out / "documents"
        self.work = self.out / "work"

    def stage_dir(self, stage: int) -> Path:
        return self.work / f"stage{stage}"

    def shard_output(self, stage: Stage, shard: int) -> Path:
        folder = self.documents if stage.last else self.stage_dir(stage.index)
        return folder / f"{shard_name(shard)}.jsonl.zst"

    def shard_file(self, stage: int, shard: int, suffix: str) -> Path:
        return self.stage_dir(stage) / f"{shard_name(shard)}{suffix}"

    def rejects(self, step: str, shard: int) -> Path:
        return self.out / "rejects" / step / f"{shard_name(shard)}.jsonl.zst"

    def global_dir(self, stage: int) -> Path:
        return self.work / f"global{stage}"

    def shard_done(self, stage: int, shard: int) -> bool:
        return self.shard_file(stage, shard, ".done").exists()

    def global_done(self, stage: int) -> bool:
        return (self.global_dir(stage) / "done").exists()

    def claim(self, config: PipelineConfig) -> None:
        """Record the run's settings, or refuse to resume a run that was begun with different ones."""
        settings = json.loads(json.dumps(config_to_dict(config)))  # through JSON, as it will be read back
        for key in SETTINGS_THAT_MAY_CHANGE:
            del settings[key]
        path = self.work / "job.json"
        if path.exists():
            differs = _first_difference(json.loads(path.read_text(encoding="utf-8")), settings)
            if differs:
                raise ConfigError(
                    f"{str(self.out)!r} holds a run begun with other settings ({differs} differs); use another out= "
                    "or delete that directory to start over"
                )
        else:
            atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _first_difference(old: object, new: object, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return ""
    return path if old != new else ""


class ShardWriter:
    """JSON lines into a ``.jsonl.zst`` under a temporary name; ``commit`` renames the finished file into place."""

    def __init__(self, path: Path, level: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        # A checksum per frame, so that a reader notices corruption (decode.open_binary checks it).
        self._zst = zstandard.ZstdCompressor(level=level, write_checksum=True).stream_writer(self._file, closefd=False)
        self.lines = 0

    def write(self, line: str) -> None:
        # A lone surrogate (undecodable bytes carried in a str) cannot be UTF-8; backslashreplace writes it as the JSON
        # escape \udcXX, which only ever occurs inside a JSON string and reads back as the same character.
        self._zst.write(line.encode("utf-8", "backslashreplace") + b"\n")
        self.lines += 1

    def commit(self) -> None:
        self._zst.close()  # ends the zstd frame
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self._tmp, 0o644)  # mkstemp makes the file private
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def remove_temporaries(path: Path) -> None:
    """Delete what an earlier, killed attempt at the same file left behind (ShardWriter's and fileio's temp names)."""
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
