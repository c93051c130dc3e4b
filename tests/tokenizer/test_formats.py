"""File formats: our own round trip, tiktoken and Hugging Face exports that encode identically, and bad files."""

from __future__ import annotations

import json

import pytest

from scratchllm.tokenizer import SpecialTokenError, Tokenizer, TokenizerFormatError

from .varied_text import VARIED


def test_save_load_round_trip(trained, tmp_path):
    path = trained.save(tmp_path / "tok")
    assert path.name == "tokenizer.json"
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded == trained and loaded.hash == trained.hash
    assert loaded.special_tokens == trained.special_tokens
    for text in VARIED:
        assert loaded.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")
    assert not list(tmp_path.glob("tok/*.tmp"))


def test_hash_changes_with_definition(trained):
    other = Tokenizer(trained.merges[:-1], trained.pattern, {"<|endoftext|>": 1997})
    assert other.hash != trained.hash


def test_tiktoken_file_round_trip(trained, tmp_path):
    trained.save_tiktoken(tmp_path / "t.tiktoken")
    loaded = Tokenizer.from_tiktoken(tmp_path / "t.tiktoken", trained.pattern, trained.special_tokens)
    assert loaded.merges == trained.merges and loaded == trained


def test_to_tiktoken_encodes_identically(trained, sample_texts):
    pytest.importorskip("tiktoken")
    enc = trained.to_tiktoken()
    for text in VARIED + sample_texts[:30]:
        assert enc.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")


def test_gpt2_tiktoken_file_recovers_merges(shared_data, tmp_path):
    d = shared_data / "gpt2"
    gpt2 = Tokenizer.from_gpt2(d / "encoder.json", d / "vocab.bpe")
    gpt2.save_tiktoken(tmp_path / "gpt2.tiktoken")
    loaded = Tokenizer.from_tiktoken(tmp_path / "gpt2.tiktoken", "gpt2", gpt2.special_tokens)
    assert loaded.merges == gpt2.merges  # every merge recovered from ranks alone


@pytest.mark.parametrize("which", ["trained", "gpt2"])
def test_hf_export_encodes_identically(which, trained, shared_data, tmp_path, sample_texts):
    tokenizers = pytest.importorskip("tokenizers")
    if which == "gpt2":
        d = shared_data / "gpt2"
        tok = Tokenizer.from_gpt2(d / "encoder.json", d / "vocab.bpe")
    else:
        tok = trained
    hf = tokenizers.Tokenizer.from_file(str(tok.save_hf(tmp_path)))
    assert hf.get_vocab_size() == tok.vocab_size
    for text in VARIED + sample_texts[:30]:
        ours = tok.encode(text, allowed_special="all")
        assert hf.encode(text, add_special_tokens=False).ids == ours
        assert hf.decode(ours, skip_special_tokens=False) == text


def test_hf_file_is_not_ours(trained, tmp_path):
    trained.save_hf(tmp_path / "hf.json")
    with pytest.raises(TokenizerFormatError, match="Hugging Face"):
        Tokenizer.load(tmp_path / "hf.json")


def test_truncated_file_is_refused(trained, tmp_path):
    path = trained.save(tmp_path)
    path.write_text(path.read_text()[:1000])
    with pytest.raises(TokenizerFormatError, match="truncated"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.pop("merges"), "merges"),
        (lambda d: d.update(byte_ids=list(range(255)) + [0]), "byte_ids"),
        (lambda d: d.update(merges=[[1, 900]] + d["merges"]), "below"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(special_tokens={"<a>": 5}), "collides"),
    ],
)
def test_damaged_file_is_refused(trained, tmp_path, damage, message):
    path = trained.save(tmp_path)
    definition = json.loads(path.read_text())
    damage(definition)
    path.write_text(json.dumps(definition))
    with pytest.raises(TokenizerFormatError, match=message):
        Tokenizer.load(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(TokenizerFormatError, match="does not exist"):
        Tokenizer.load(tmp_path / "nope")


def test_gpt2_files_that_do_not_match(shared_data, tmp_path):
    d = shared_data / "gpt2"
    merges = (d / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    merges[1], merges[2] = merges[2], merges[1]  # two merges swapped: encoder.json no longer agrees
    (tmp_path / "vocab.bpe").write_text("\n".join(merges), encoding="utf-8")
    with pytest.raises(TokenizerFormatError, match="does not match"):
        Tokenizer.from_gpt2(d / "encoder.json", tmp_path / "vocab.bpe")


def test_bad_tiktoken_file(tmp_path):
    (tmp_path / "bad.tiktoken").write_text("not-base64!! 0\n")
    with pytest.raises(TokenizerFormatError, match="line 1"):
        Tokenizer.from_tiktoken(tmp_path / "bad.tiktoken", "gpt2")


def test_colliding_special_tokens():
    with pytest.raises(SpecialTokenError, match="collides"):
        Tokenizer([], "gpt2", {"<a>": 100})
    with pytest.raises(SpecialTokenError, match="share"):
        Tokenizer([], "gpt2", {"<a>": 300, "<b>": 300})


@pytest.mark.parametrize("preset", ["gpt2", "gpt4", "o200k", "llama3"])
def test_every_preset_exports_identically(preset, sample_texts, tmp_path):
    tiktoken = pytest.importorskip("tiktoken")
    tokenizers = pytest.importorskip("tokenizers")
    texts = sample_texts[:15] + VARIED
    tok = Tokenizer.train(texts, 600, pattern=preset, special_tokens=["<|endoftext|>"])
    hf = tokenizers.Tokenizer.from_file(str(tok.save_hf(tmp_path)))
    enc = tok.to_tiktoken()
    assert isinstance(enc, tiktoken.Encoding)
    for text in texts:
        ours = tok.encode(text, allowed_special="all")
        assert enc.encode(text, allowed_special="all") == ours
        assert hf.encode(text, add_special_tokens=False).ids == ours


def test_tiktoken_file_with_a_token_bpe_cannot_reach(tmp_path):
    """The token "abcd" (rank 259) is not reachable by BPE from "bc" < "ab" < "cd" (BPE gets stuck at a|bc|d),
    as in some published vocabularies; the loader still recovers a valid merge and encodes exactly as tiktoken does."""
    import base64

    tiktoken = pytest.importorskip("tiktoken")
    ranks = {bytes([b]): b for b in range(256)} | {b"bc": 256, b"ab": 257, b"cd": 258, b"abcd": 259}
    lines = [f"{base64.b64encode(t).decode()} {r}" for t, r in ranks.items()]
    (tmp_path / "odd.tiktoken").write_text("\n".join(lines) + "\n")
    tok = Tokenizer.from_tiktoken(tmp_path / "odd.tiktoken", "gpt2")
    assert tok.merges[-1] == (257, 258)  # ab + cd
    oracle = tiktoken.Encoding("odd", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})
    for text in ["abcd", "xabcd", "abc abcd bcd", "aabbccdd abcdabcd"]:
        assert tok.encode(text) == oracle.encode(text)
