"""The experiments behind chapter 3's and 4's figures: each one's run writes the files the registry declares, and its
numbers equal an independent oracle (bytes from the parameter count and the batch shape, losses recomputed here)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from scratchllm.book.experiments.registry import EXPERIMENTS
from scratchllm.model import GPT, GPTConfig, num_params

PNG = b"\x89PNG\r\n\x1a\n"


def run_experiment(name: str, tmp_path, args: dict | None = None) -> dict:
    """Run a registered experiment (its quick arguments unless ``args``) into ``tmp_path``; check its files."""
    exp = EXPERIMENTS[name]
    exp.runner(exp.quick if args is None else args, tmp_path, tmp_path / "work")
    for output in exp.outputs:
        assert (tmp_path / output).stat().st_size > 0, output
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
    return json.loads((tmp_path / f"{name}.json").read_text())


# --------------------------------------------------------------------------------------------------- comm_volume


def test_comm_volume_bytes_equal_the_chapters_formulas(tmp_path):
    result = run_experiment("comm_volume", tmp_path)
    n, b, t = 8, 64, 1024  # GPUs, global batch, tokens per sequence (section 4.8's setting)
    assert (result["world"], result["global_batch"], result["seq_len"]) == (n, b, t)
    rows = {r["model"]: r for r in result["models"]}
    assert set(rows) >= {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}
    # GPT-2 small has 124,439,808 parameters (tied head); DDP all-reduces their fp32 gradients: 2 (N-1)/N * 4 P
    assert rows["gpt2"]["bytes"]["DDP"] == pytest.approx(2 * 7 / 8 * 4 * 124_439_808, rel=1e-12)
    for name, r in rows.items():
        cfg = GPTConfig.preset(name)
        p, d, layers = num_params(cfg), cfg.d_model, cfg.n_layer
        assert r["bytes"]["DDP"] == pytest.approx(2 * (n - 1) / n * 4 * p, rel=1e-12)
        # TP: 2L all-reduces of the bf16 (B, T, d) activation forward and 2L backward, each 2 (t-1)/t of it
        assert r["bytes"]["TP"] == pytest.approx(4 * layers * 2 * (n - 1) / n * b * t * d * 2, rel=1e-12)
        # PP, a middle stage: 8 micro-batches of 8 sequences, one bf16 activation to each neighbour per micro-batch;
        # a tied head's fp32 (V, d) gradient all-reduced over the 8 stages
        head = 2 * (n - 1) / n * cfg.vocab_size * d * 4 if cfg.tie_embeddings else 0
        assert r["bytes"]["PP"] == pytest.approx(2 * 8 * (8 * t * d * 2) + head, rel=1e-12)
        # FSDP: bf16 weights gathered forward, again backward but for the last block; fp32 gradients
        # reduce-scattered. Up to the padding of each parameter's rows to a multiple of N.
        block = num_params(replace(cfg, n_layer=2)) - num_params(replace(cfg, n_layer=1))  # one block's parameters
        fsdp = (n - 1) / n * (2 * p + 2 * (p - block) + 4 * p)
        assert r["bytes"]["FSDP"] == pytest.approx(fsdp, rel=1e-4)
        assert r["gb"]["TP"] == pytest.approx(r["bytes"]["TP"] / 1e9)
    table = (tmp_path / "comm_volume.md").read_text()
    assert "| `gpt2` | 124 M | 0.871 |" in table  # section 4.8's table: 0.871 GB for GPT-2's DDP


# ---------------------------------------------------------------------------------------------------- grad_accum


def test_grad_accum_writes_its_figure_and_separates_the_recipes(tmp_path):
    result = run_experiment("grad_accum", tmp_path)
    assert result["full"]["accumulated"] < 1e-6 and result["full"]["naive"] < 1e-6
    assert result["padded"]["accumulated"] < 1e-6 < 1e-4 < result["padded"]["naive"]
    rows = (tmp_path / "grad_accum.md").read_text().splitlines()
    assert len(rows) == 4 and f"{result['padded']['naive']:.1e}" in rows[3]


# ------------------------------------------------------------------------------------------------ memory_configs


@pytest.mark.slow
def test_memory_configs_measure_the_same_step(tmp_path):
    """Five processes, one per configuration, on a tiny model: each measured the same step, whose loss we recompute
    here from the logits with torch's cross-entropy."""
    args = {"preset": "tiny", "batch": 2, "seq": 64}
    assert set(EXPERIMENTS["memory_configs"].quick) == set(args)  # the same knobs as quick mode, smaller
    result = run_experiment("memory_configs", tmp_path, args)
    configs = result["configs"]
    assert set(configs) == {"explicit", "baseline", "chunked", "checkpointing", "both"}

    torch.manual_seed(0)  # what each process does before its warm-up step
    cfg = GPTConfig.preset("tiny")
    model = GPT.build(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 64))
    targets = torch.randint(0, cfg.vocab_size, (2, 64))
    with torch.no_grad():
        logits = model(idx)  # (B, T, vocab)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    base = configs["baseline"]
    for key, c in configs.items():
        assert c["loss"] == pytest.approx(expected, abs=1e-5), key
        assert c["grad_norm"] == pytest.approx(base["grad_norm"], rel=1e-4), key
        assert c["peak_gib"] > 0 and c["tokens_per_s"] > 0
        assert c["memory_ratio"] == pytest.approx(base["peak_gib"] / c["peak_gib"])
    assert len((tmp_path / "memory_configs.md").read_text().splitlines()) == 2 + 5
