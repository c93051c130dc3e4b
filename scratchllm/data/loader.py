"""Batches for training and evaluation, cut from memory-mapped token shards.

Training samples random windows of ``seq_len + 1`` tokens (inputs are the first ``seq_len``, targets the last
``seq_len``: each position predicts the next token). The sample of step ``s`` on rank ``r`` is a pure function of
``(seed, s, r)``, so a resumed run that restores the step draws exactly the batches it would have drawn, and ranks
draw different batches without talking to each other. Evaluation walks the held-out shards in order with
non-overlapping windows, so every run scores the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .shards import ShardError, open_shard


class RandomWindows:
    """Random (B, T) input/target batches from token shards; deterministic, resumable, sharded by rank."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        batch_size: int,
        seq_len: int,
        tokenizer_hash: str | None,
        seed: int = 0,
        rank: int = 0,
    ):
        self.shards = [open_shard(p, tokenizer_hash) for p in paths]
        self.starts = np.array([max(0, len(s) - seq_len) for s in self.shards], dtype=np.int64)  # window starts
        self.ends = np.cumsum(self.starts)  # shard i owns flat starts [ends[i] - starts[i], ends[i])
        if not paths or self.starts.sum() == 0:
            raise ShardError(
                f"no shard holds a window of {seq_len + 1} tokens ({len(paths)} shards); "
                "tokenize more text or lower the sequence length"
            )
        self.batch_size, self.seq_len, self.seed, self.rank = batch_size, seq_len, seed, rank
        self.step = 0

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``step``: inputs (B, T) and targets (B, T), int64."""
        rng = np.random.default_rng([self.seed, step, self.rank])
        # A window is a uniformly random start among all starts of all shards.
        flat = rng.integers(0, self.ends[-1], size=self.batch_size)  # (B,)
        shard = np.searchsorted(self.ends, flat, side="right")  # (B,)
        offset = flat - (self.ends - self.starts)[shard]  # (B,)
        windows = np.stack(
            [self.shards[s][o : o + self.seq_len + 1].astype(np.int64) for s, o in zip(shard, offset)]
        )  # (B, T+1)
        tokens = torch.from_numpy(windows)
        return tokens[:, :-1], tokens[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.batch(self.step)
            self.step += 1

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.seed = int(state["step"]), int(state["seed"])


def sequential_windows(
    paths: Sequence[str | Path], batch_size: int, seq_len: int, tokenizer_hash: str | None, max_batches: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping (B, T) windows in order over every shard, for evaluation; the last partial batch included."""
    rows: list[np.ndarray] = []
    produced = 0
    for path in paths:
        tokens = open_shard(path, tokenizer_hash)
        for start in range(0, len(tokens) - seq_len, seq_len):
            rows.append(np.asarray(tokens[start : start + seq_len + 1], dtype=np.int64))
            if len(rows) == batch_size:
                batch = torch.from_numpy(np.stack(rows))
                yield batch[:, :-1], batch[:, 1:]
                rows, produced = [], produced + 1
                if produced == max_batches:
                    return
    if rows:
        batch = torch.from_numpy(np.stack(rows))
        yield batch[:, :-1], batch[:, 1:]
