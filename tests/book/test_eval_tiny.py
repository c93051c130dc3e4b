"""The evaluation experiment of chapter 5 on a tiny random checkpoint in a run directory: both models are scored at
both strides and with both MMLU scorings, the counts add up, the run's training curve is read, and the table and
files are well formed."""

from __future__ import annotations

import json
import math

from scratchllm.book.experiments.eval_tiny import MODES, run, table, write


def test_run_is_well_formed(checkpoint, mmlu_dir, tmp_path):
    result = run(checkpoint, mmlu_dir, shots=2, max_documents=2, batch_size=4)
    assert result["held_out"]["documents"] == 2 and result["mmlu"]["questions"] == 8
    assert result["mmlu"]["answer_letters"] == {"A": 2, "B": 2, "C": 2, "D": 2}
    assert [r["model"] for r in result["results"]] == ["untrained", "trained"]
    for entry in result["results"]:
        strides = [p["stride"] for p in entry["perplexity"]]
        assert strides == [64, 32] and all(p["window"] == 64 for p in entry["perplexity"])
        # every stride scores every token of the same text once
        assert len({(p["tokens"], p["bytes"]) for p in entry["perplexity"]}) == 1
        assert all(math.isfinite(p["bpb"]) for p in entry["perplexity"])
        assert [s["mode"] for s in entry["mmlu"]] == list(MODES)
        for s in entry["mmlu"]:
            assert sum(s["predicted_letters"].values()) == s["micro"]["n"] == 8
    # two random models of the same shape: near the uniform guess, ln(vocabulary)
    log_vocab = math.log(result["config"]["vocab_size"])
    assert all(abs(e["perplexity"][0]["loss"] - log_vocab) < 1.0 for e in result["results"])

    lines = table(result).splitlines()
    assert sum(line.startswith("| untrained |") for line in lines) == 2 + len(MODES)
    assert "MMLU: 8 test questions in 1 subject (astronomy), 2-shot" in table(result)
    assert result["training"]["step"] == list(range(10)) and result["training"]["val"][0]["val_loss"] == 5.5
    paths = write(result, tmp_path)
    assert sorted(p.name for p in paths) == ["eval_tiny.json", "eval_tiny.md", "eval_tiny.png"]
    assert (tmp_path / "eval_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "eval_tiny.json").read_text())["results"][1]["model"] == "trained"


def test_without_mmlu_only_perplexity(checkpoint):
    result = run(checkpoint, None, max_documents=1)
    assert result["mmlu"] is None and all(e["mmlu"] == [] for e in result["results"])
    assert "MMLU" not in table(result)


def test_on_the_shared_release(checkpoint, shared_data):
    result = run(checkpoint, shared_data / "mmlu", max_documents=1, subjects=("abstract_algebra",), limit=12)
    assert result["mmlu"]["subjects"] == ["abstract_algebra"] and result["mmlu"]["questions"] == 12
    assert all(s["micro"]["n"] == 12 for e in result["results"] for s in e["mmlu"])
