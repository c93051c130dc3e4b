"""`scratchllm generate` and `scratchllm export` end to end on a small model trained nowhere (random weights): the
plumbing, the Hugging Face hand-off, and bad input answered with exit status 2 and one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scratchllm.cli.main import main
from scratchllm.model import GPT, GPTConfig
from scratchllm.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(trained, tmp_path_factory):
    torch.manual_seed(0)
    model = GPT.build(GPTConfig(vocab_size=2000, block_size=64, n_layer=2, n_head=2, d_model=32))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, trained)


def test_generate_streams_and_batches(checkpoint, capsys):
    args = ["generate", "--checkpoint", str(checkpoint), "--max-new-tokens", "8", "--seed", "3"]
    assert main([*args, "--prompt", "def f(x):"]) == 0
    streamed = capsys.readouterr().out
    assert streamed.startswith("def f(x):")
    assert main([*args, "--prompt", "def f(x):", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith(streamed.rstrip("\n"))  # same seed, same text, streamed or not
    assert main([*args, "--prompt", "import os", "--prompt", "class A:", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("import os") and "\nclass A:" in out


def test_export_loads_in_transformers(checkpoint, trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "hf")]) == 0
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "def greet(name):\n    return f'hi {name}'\n"
    ids = trained.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    from scratchllm.train.checkpoint import load_checkpoint

    ours, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        diff = (hf_model(torch.tensor([ids])).logits - ours.eval()(torch.tensor([ids]))).abs().max().item()
    assert diff < 1e-4


def _fails_with(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "scratchllm", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_input(checkpoint, tmp_path):
    long_prompt = "x = 1\n" * 200
    _fails_with(["generate", "--checkpoint", str(checkpoint), "--prompt", long_prompt], "longer than the model")
    _fails_with(["generate", "--checkpoint", str(tmp_path)], "config.json is missing")
    _fails_with(["generate", "--checkpoint", str(checkpoint), "--prompt", "x", "--top-p", "0"], "top_p")
    small = GPT.build(GPTConfig(vocab_size=300, block_size=64, n_layer=1, n_head=2, d_model=32))
    small.save_hf(tmp_path / "hf")
    _fails_with(["generate", "--hf", str(tmp_path / "hf"), "--prompt", "x"], "no tokenizer")
    _fails_with(
        ["generate", "--hf", str(tmp_path / "hf"), "--tokenizer", str(checkpoint / "tokenizer")],
        "2000 ids but the model's embedding has only 300 rows",
    )
