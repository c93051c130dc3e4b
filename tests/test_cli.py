"""The command line: every stage listed, unbuilt stages refused honestly, tokenizer commands end to end, and bad
input answered with one line on stderr and exit status 2, never a traceback and never a clobbered good file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scratchllm.cli.main import main
from scratchllm.tokenizer import Tokenizer
from scratchllm.train.metrics import read_metrics


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scratchllm", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def corpus(tmp_path):
    """A small JSONL corpus written by the test."""
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"text": f"def f{i}(x):\n    return x * {i}  # the number {i}\n"}) for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_help_lists_every_stage():
    result = run_cli("--help")
    assert result.returncode == 0
    # DESIGN.md's public interface: every stage, each with its own --help.
    stages = ["data", "tokenizer", "tokenize", "train", "eval", "sft", "generate", "chat", "serve", "export", "plan",
              "book", "demo"]  # fmt: skip
    for stage in stages:
        assert stage in result.stdout
        with pytest.raises(SystemExit) as exited:
            main([stage, "--help"])
        assert exited.value.code == 0, stage


def test_train_encode_stats_export(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--source", "jsonl", "--path", str(corpus), "--vocab-size", "300", "--out", str(out)]
    assert main([*args, "corpus.split=all", "tokenizer.workers=1"]) == 0
    assert "trained Tokenizer(vocab_size=300" in capsys.readouterr().out
    tok = Tokenizer.load(out)
    assert tok.vocab_size == 300 and tok.special_tokens == {"<|endoftext|>": 299}
    config = (out / "config.toml").read_text()
    assert "vocab_size = 300" in config and 'source = "jsonl"' in config

    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--ids", "def f1(x):"]) == 0
    ids = [int(i) for i in capsys.readouterr().out.split()]
    assert tok.decode(ids) == "def f1(x):"

    assert main(["tokenizer", "stats", "--tokenizer", str(out), "--source", "jsonl", "--path", str(corpus),
                 "--split", "all"]) == 0  # fmt: skip
    assert "bytes per token" in capsys.readouterr().out

    assert (
        main(["tokenizer", "export", "--tokenizer", str(out), "--format", "tiktoken", "--out", str(tmp_path / "t")])
        == 0
    )
    assert Tokenizer.from_tiktoken(tmp_path / "t", tok.pattern, tok.special_tokens) == tok


def test_config_file_and_overrides(corpus, tmp_path):
    cfg = tmp_path / "job.toml"
    cfg.write_text(f'out = "{tmp_path / "a"}"\n[corpus]\nsource = "jsonl"\npath = "{corpus}"\nsplit = "all"\n'
                   '[tokenizer]\nvocab_size = 280\nworkers = 1\n')  # fmt: skip
    assert main(["tokenizer", "train", "--config", str(cfg), "tokenizer.vocab_size=290"]) == 0
    assert Tokenizer.load(tmp_path / "a").vocab_size == 290


def _fails_with(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_input_exits_2_with_one_line(corpus, tmp_path, shared_data):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _fails_with(["tokenizer", "train", "--source", "jsonl", "--path", str(empty), "--out", str(tmp_path / "x")],
                "no documents")  # fmt: skip
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": ""}\n')
    _fails_with(["tokenizer", "train", "--source", "jsonl", "--path", str(blank), "corpus.split=all",
                 "--out", str(tmp_path / "x")], "empty")  # fmt: skip
    _fails_with(["tokenizer", "train", "--vocab-size", "100"], "special tokens = 257; got 100")
    _fails_with(["tokenizer", "train", "tokenizer.vocab_sise=300"], "did you mean")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text('{"format": "scratchllm.tokenizer", "version": 1, "merg')
    _fails_with(["tokenizer", "encode", "--tokenizer", str(broken), "x"], "truncated")
    _fails_with(["tokenizer", "encode", "--tokenizer", str(tmp_path / "missing"), "x"], "does not exist")
    gpt2 = shared_data / "gpt2"
    vocab = (gpt2 / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    (tmp_path / "vocab.bpe").write_text("\n".join(vocab[:1] + vocab[2:]), encoding="utf-8")  # one merge missing
    _fails_with(["tokenizer", "import", "--gpt2", str(gpt2 / "encoder.json"), str(tmp_path / "vocab.bpe"),
                 "--out", str(tmp_path / "g")], "does not match")  # fmt: skip


def test_colliding_special_tokens_on_import(trained, tmp_path):
    trained.save_tiktoken(tmp_path / "t.tiktoken")
    _fails_with(["tokenizer", "import", "--tiktoken", str(tmp_path / "t.tiktoken"), "--special", "<|x|>=5",
                 "--out", str(tmp_path / "o")], "collides")  # fmt: skip


def test_failed_training_keeps_the_good_tokenizer(corpus, tmp_path):
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--source", "jsonl", "--path", str(corpus), "--vocab-size", "300",
                 "corpus.split=all", "tokenizer.workers=1", "--out", str(out)]) == 0  # fmt: skip
    good = (out / "tokenizer.json").read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    assert main(["tokenizer", "train", "--source", "jsonl", "--path", str(bad), "corpus.split=all",
                 "--out", str(out)]) == 2  # fmt: skip
    assert (out / "tokenizer.json").read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "tokenizer.json"]


def test_tokenize_writes_shards(corpus, tmp_path, capsys):
    tok_dir, out = tmp_path / "tok", tmp_path / "tokens"
    assert main(["tokenizer", "train", "--source", "jsonl", "--path", str(corpus), "--vocab-size", "300",
                 "corpus.split=all", "tokenizer.workers=1", "--out", str(tok_dir)]) == 0  # fmt: skip
    args = ["tokenize", "--tokenizer", str(tok_dir), "--source", "jsonl", "--path", str(corpus), "--out", str(out)]
    assert main([*args, "corpus.val_fraction=0.1", "workers=1"]) == 0
    assert "train" in capsys.readouterr().out
    assert (out / "train_00000.bin").is_file() and (out / "val_00000.bin").is_file()
    assert (out / "config.toml").is_file() and (out / "tokenize.json").is_file()


def test_tokenize_needs_a_bos_token(corpus, tmp_path):
    tok_dir = tmp_path / "tok"
    assert main(["tokenizer", "train", "--source", "jsonl", "--path", str(corpus), "--vocab-size", "300",
                 "corpus.split=all", "tokenizer.special_tokens=[]", "--out", str(tok_dir)]) == 0  # fmt: skip
    _fails_with(["tokenize", "--tokenizer", str(tok_dir), "--source", "jsonl", "--path", str(corpus),
                 "--out", str(tmp_path / "t")], "no <|endoftext|> special token")  # fmt: skip


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--steps", "2", "--sft-steps", "2", "--no-compile",
            "corpus.max_documents=60", "tokenizer.vocab_size=600"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "step 6/6" in out and "bits per byte on held-out files" in out and "after finetuning" in out
    paths = ["tokenizer/tokenizer.json", "tokens/train_00000.bin", "train/metrics.jsonl", "train/loss.png",
             "sft/checkpoints/final/model.safetensors", "sft/report.md"]  # fmt: skip
    for path in paths:
        assert (tmp_path / path).is_file(), path
    bpb = read_metrics(tmp_path / "train" / "metrics.jsonl")[-1]["val_bpb"]
    report = (tmp_path / "train" / "report.md").read_text()
    assert f"Held-out bits per byte: {bpb:.3f}" in report and f"| held-out bits per byte | {bpb:.4f} |" in report
    assert report.count("Prompt `") == 4 and "![training and validation loss](loss.png)" in report
    summary = json.loads((tmp_path / "summary.json").read_text())  # what the manual's demo experiment reads
    assert summary["val_bpb"] == bpb and summary["steps"] == 2 and summary["sft"]["steps"] == 2
    assert summary["val_loss"] == read_metrics(tmp_path / "train" / "metrics.jsonl")[-1]["val_loss"]
    assert summary["train_tokens"] > 0 and summary["sft"]["val_loss_before"] is not None
