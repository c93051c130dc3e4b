"""The chat REPL, driven by scripted input: each answer equals ``generate()`` on the prompt built independently
(the chat template's rendering of the whole conversation, or the concatenated text for a base model); the oldest
turns go, with a notice, when the context fills; /set, /reset, /save; and ``scratchllm chat`` end to end."""

from __future__ import annotations

import io
import json

import pytest

from scratchllm.cli.main import main
from scratchllm.finetune.template import ChatTemplate
from scratchllm.model.generate import generate
from scratchllm.serve import ChatSession, ChatSettings, run_repl
from scratchllm.train.checkpoint import load_checkpoint

from .conftest import BLOCK


def script(session, lines):
    """Run the REPL on ``lines``; return everything it wrote."""
    lines = iter(lines)
    out = []

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    assert run_repl(session, read, out.append) == 0
    return "".join(out)


def test_chat_turns_equal_generate_on_the_template(chat_checkpoint, oracle):
    model, tok = load_checkpoint(chat_checkpoint)
    session = ChatSession(model, tok, ChatSettings(temperature=0, max_new_tokens=6))
    out = script(session, ["/set system Be brief.", "Hi there", "And again?"])
    assert "chat model" in out.splitlines()[0]

    omodel, otok = oracle
    template = ChatTemplate.for_tokenizer(otok)
    messages = [{"role": "system", "content": "Be brief."}]
    for user, (got_user, got_answer) in zip(["Hi there", "And again?"], session.turns):
        messages.append({"role": "user", "content": user})
        ids = template.render(messages, add_generation_prompt=True)
        answer = otok.decode(generate(omodel, [ids], 6, temperature=0, stop_tokens=template.stop_tokens)[0])
        assert (got_user, got_answer) == (user, answer)
        assert answer in out  # it was printed
        messages.append({"role": "assistant", "content": answer})


def test_context_full_drops_the_oldest_turns(chat_checkpoint):
    model, tok = load_checkpoint(chat_checkpoint)
    session = ChatSession(model, tok, ChatSettings(temperature=0, max_new_tokens=20))
    out = script(session, [f"message number {i} with some words" for i in range(6)])
    assert "[context full: dropped the oldest turn" in out
    assert session.turns[-1][0] == "message number 5 with some words"
    kept = session.prompt_ids("next", session.turns[1:])  # what the last prompt held fits the context
    assert len(kept) + 20 <= BLOCK
    out = script(session, ["word " * BLOCK])
    assert "[message too long" in out


def test_commands(chat_checkpoint, tmp_path):
    model, tok = load_checkpoint(chat_checkpoint)
    session = ChatSession(model, tok, ChatSettings(temperature=0, max_new_tokens=4))
    saved = tmp_path / "chat.json"
    out = script(session, ["/set temperature 0.5", "/set top_p 2", "/set top_k x", "/set nope 1", "/set seed 3",
                           "hello", f"/save {saved}", "/settings", "/bogus", "/reset", "/help"])  # fmt: skip
    assert "[temperature = 0.5]" in out and "[seed = 3]" in out
    assert "cannot set top_p" in out and "cannot set top_k" in out and "unknown setting 'nope'" in out
    assert "unknown command /bogus" in out and "conversation reset" in out and "/save FILE" in out
    record = json.loads(saved.read_text())
    assert record["settings"]["temperature"] == 0.5 and record["turns"][0]["user"] == "hello"
    assert record["mode"] == "chat" and session.turns == []
    assert script(session, ["/quit", "never read"]).count("\n") == 1  # the banner only


def test_base_model_is_plain_completion(base_checkpoint):
    model, tok = load_checkpoint(base_checkpoint)
    session = ChatSession(model, tok, ChatSettings(temperature=0, max_new_tokens=5))
    out = script(session, ["def f(x):", "    return"])
    assert "plain completion mode" in out.splitlines()[0]
    omodel, otok = load_checkpoint(base_checkpoint)
    bos = otok.special_tokens["<|endoftext|>"]
    text = ""
    for user, answer in session.turns:
        text += user
        expected = generate(omodel, [[bos, *otok.encode_ordinary(text)]], 5, temperature=0, stop_tokens=[bos])[0]
        assert answer == otok.decode(expected)
        text += answer


def test_chat_command_end_to_end(chat_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\n/quit\n"))
    assert main(["chat", "--checkpoint", str(chat_checkpoint), "--temperature", "0", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("scratchllm chat: chat model")
    assert main(["chat", "--checkpoint", str(chat_checkpoint), "--top-p", "0"]) == 2
    assert "top_p" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--max-batch", "0"], ["--max-tokens", "0"]])
def test_serve_command_refuses_bad_flags(chat_checkpoint, flag, capsys):
    assert main(["serve", "--checkpoint", str(chat_checkpoint), *flag]) == 2
    assert "must be at least 1" in capsys.readouterr().err
