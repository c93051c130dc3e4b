"""`scratchllm sft` end to end on a tiny model made in the test: the loss falls on a set it can memorize, the
checkpoint loads with its chat tokens, a LoRA run's adapter rebuilds the merged model, bad input exits 2 with one line
and writes nothing, and HumanEval prompts a finetuned checkpoint through its chat template."""

from __future__ import annotations

import json

import pytest
import torch

from scratchllm.cli.main import main
from scratchllm.eval import humaneval
from scratchllm.finetune import ChatTemplate, Message
from scratchllm.finetune.lora import load_adapter, merge_lora
from scratchllm.finetune.sft import FINAL, answer, prepare_chat_model
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer
from scratchllm.train.checkpoint import load_checkpoint, save_checkpoint
from scratchllm.train.metrics import read_metrics

FACTS = [("Capital of France?", "Paris."), ("Two plus two?", "Four."), ("Color of the sky?", "Blue."),
         ("Opposite of hot?", "Cold.")]  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory, sample_texts):
    tok = Tokenizer.train(sample_texts[:40], 400, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    model = GPT.build(GPTConfig(vocab_size=400, block_size=128, n_layer=2, n_head=2, d_model=32))
    return save_checkpoint(tmp_path_factory.mktemp("base") / "ckpt", model, tok)


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "facts.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in FACTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_full_finetuning_memorizes_a_small_set(base, facts, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sft", "--checkpoint", str(base), "--data", str(facts), "--out", str(out), "val_fraction=0",
            "max_steps=60", "lr=1e-2", "batch_size=4", "micro_batch_size=2", "warmup_steps=5"]  # fmt: skip
    assert main(args) == 0
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 60 and losses[-1] < 0.1 * losses[0]
    model, tok = load_checkpoint(out / FINAL)
    template = ChatTemplate.for_tokenizer(tok)
    assert tok.vocab_size == 404 and model.config.vocab_size == 404
    for question, reply in FACTS:
        assert answer(model, template, question, max_new_tokens=10) == reply
    assert (out / "report.md").is_file() and (out / "config.toml").is_file()
    assert "max_steps = 60" in (out / "config.toml").read_text()


def test_lora_run_writes_an_adapter_that_rebuilds_the_merged_model(base, facts, tmp_path):
    out = tmp_path / "lora"
    args = ["sft", "--checkpoint", str(base), "--data", str(facts), "--out", str(out), "val_fraction=0",
            "max_steps=5", "method=lora", "lora.rank=2", "lr=1e-2", "batch_size=4", "micro_batch_size=4"]  # fmt: skip
    assert main(args) == 0
    merged, _ = load_checkpoint(out / FINAL)
    rebuilt, tok = load_checkpoint(base)
    prepare_chat_model(rebuilt, tok)
    load_adapter(rebuilt, out / FINAL)
    idx = torch.randint(0, 404, (2, 10))
    with torch.no_grad():
        unmerged = rebuilt(idx)
        merge_lora(rebuilt)
        torch.testing.assert_close(merged(idx), rebuilt(idx), rtol=0, atol=1e-5)
        torch.testing.assert_close(merged(idx), unmerged, rtol=0, atol=1e-5)
        base_model, _ = load_checkpoint(base)
        assert torch.equal(merged.tok_emb.weight[:400], base_model.tok_emb.weight)  # LoRA froze the embedding


@pytest.mark.parametrize(
    ("case", "match"),
    [("missing", "not a checkpoint"), ("empty", "empty"), ("shape", "expected"), ("config", "method")],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(base, facts, tmp_path, capsys, case, match):
    data = tmp_path / "d.json"
    data.write_text({"empty": "", "shape": '[{"prompt": "x"}]'}.get(case, facts.read_text()))
    checkpoint = tmp_path / "nope" if case == "missing" else base
    extra = ["method=qlora"] if case == "config" else []
    out = tmp_path / "out"
    assert main(["sft", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and "Traceback" not in err
    assert not out.exists()


def test_humaneval_prompts_a_chat_checkpoint_through_its_template(base, monkeypatch, tmp_path):
    model, tok = load_checkpoint(base)
    chat_tok, template = prepare_chat_model(model, tok)
    seen = {}

    def fake_stream(model, prompts, max_new_tokens, **options):
        seen["prompts"], seen["stop"] = prompts, options["stop_tokens"]
        yield [None] * len(prompts)  # every row stops at once

    monkeypatch.setattr(humaneval, "stream_generate", fake_stream)
    problem = {"prompt": "def add(a, b):\n    '''Add.'''\n", "entry_point": "add", "test": "", "canonical_solution": ""}
    humaneval.generate_samples(model, chat_tok, {"T/0": problem}, tmp_path / "s.jsonl", max_new_tokens=8)
    sp, enc = chat_tok.special_tokens, chat_tok.encode_ordinary
    request = "Write a Python function `add` that does what its docstring says."
    expected = [sp["<|endoftext|>"], sp["<|user|>"], *enc(request), sp["<|end|>"], sp["<|assistant|>"],
                *enc(problem["prompt"])]  # fmt: skip
    assert seen["prompts"] == [expected]
    assert set(seen["stop"]) == {sp["<|end|>"], sp["<|endoftext|>"]}
    assert template.parse(expected) == [Message("user", request), Message("assistant", problem["prompt"])]
    # A base model's tokenizer is prompted as before: BOS and the prompt.
    humaneval.generate_samples(model, tok, {"T/0": problem}, tmp_path / "s.jsonl", max_new_tokens=8)
    assert seen["prompts"] == [[sp["<|endoftext|>"], *enc(problem["prompt"])]]
