"""Instruction data and loss masking: both file formats, the length rule's counts, padded batches that give every
example the logits it has alone, a gradient blind to the prompt's targets, and the loss normalized over the answer
tokens of the whole batch (checked against a loss written out by hand, example by example)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from scratchllm.finetune import ChatTemplate, Message, add_chat_tokens
from scratchllm.finetune.data import (
    Example,
    InstructionDataError,
    encode_examples,
    masked_targets,
    pad_batch,
    read_examples,
    split_examples,
    step_batches,
)
from scratchllm.finetune.stdlib_tasks import function_tasks, summary
from scratchllm.model import GPT, GPTConfig
from scratchllm.model.loss import IGNORE_INDEX
from scratchllm.tokenizer import Tokenizer
from scratchllm.train.step import accumulated_step


@pytest.fixture(scope="module")
def template(sample_texts) -> ChatTemplate:
    return ChatTemplate(add_chat_tokens(Tokenizer.train(sample_texts[:40], 400, special_tokens=["<|endoftext|>"])))


def _model(vocab: int, dtype=torch.float64) -> GPT:
    torch.manual_seed(0)
    return GPT.build(GPTConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=2, d_model=16), dtype=dtype)


def _example(user: str, answer: str) -> Example:
    return Example((Message("user", user), Message("assistant", answer)), group=user)


def test_reads_alpaca_json_and_chat_jsonl(tmp_path):
    alpaca = [
        {"instruction": "Add.", "input": "2 3", "output": "5"},
        {"instruction": "Hi.", "input": "", "output": "Hello"},
    ]
    (tmp_path / "a.json").write_text(json.dumps(alpaca))
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                         {"role": "assistant", "content": "a"}]}  # fmt: skip
    (tmp_path / "c.jsonl").write_text(json.dumps(chat) + "\n\n" + json.dumps(alpaca[1]) + "\n")
    a = read_examples(tmp_path / "a.json")
    assert [e.messages for e in a] == [
        (Message("user", "Add.\n\n2 3"), Message("assistant", "5")),
        (Message("user", "Hi."), Message("assistant", "Hello")),
    ]
    c = read_examples(tmp_path / "c.jsonl")
    assert c[0].messages == (Message("system", "s"), Message("user", "u"), Message("assistant", "a"))
    assert c[1].messages == a[1].messages


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), ("[]", "no examples"), ("[1]", "JSON object"), ('{"text": "x"}', "expected"),
     ('{"messages": [{"role": "bot", "content": "x"}]}', "role"), ("{not json", "JSON"),
     ('{"instruction": "a", "output": 3}', "strings")],
)  # fmt: skip
def test_bad_files_are_refused(tmp_path, text, match):
    (tmp_path / "d.jsonl").write_text(text)
    with pytest.raises(InstructionDataError, match=match):
        read_examples(tmp_path / "d.jsonl")


def test_length_rule_truncates_or_drops_and_counts(template):
    short, long_ = _example("hi", "ok"), _example("hi", "word " * 50)
    prompt_only = Example((Message("user", "x " * 40), Message("assistant", "y")), "p")
    no_answer = Example((Message("user", "x"),), "n")
    n_short = len(template.render(short.messages))
    limit = n_short + 5
    enc, rep = encode_examples([short, long_, prompt_only, no_answer], template, limit, "truncate")
    assert (rep.kept, rep.truncated, rep.dropped_too_long, rep.dropped_no_answer) == (1, 1, 1, 1)
    assert [len(ids) for ids, _ in enc] == [n_short, limit]
    assert enc[1][0] == template.render(long_.messages)[:limit]
    enc, rep = encode_examples([short, long_, prompt_only, no_answer], template, limit, "drop")
    assert (rep.kept, rep.truncated, rep.dropped_too_long, rep.dropped_no_answer) == (1, 0, 2, 1)


def test_split_keeps_groups_together():
    examples = [Example((Message("user", str(i)), Message("assistant", "a")), group=f"m{i % 7}") for i in range(70)]
    train, val = split_examples(examples, 0.3)
    assert len(train) + len(val) == 70 and val
    assert not {e.group for e in train} & {e.group for e in val}


def test_padded_batch_gives_each_example_its_own_logits(template):
    encoded, _ = encode_examples([_example("a", "b c d e f g"), _example("longer question here", "x")], template, 64)
    inputs, targets = pad_batch(encoded)
    model = _model(template.tokenizer.vocab_size)
    with torch.no_grad():
        batched = model(inputs)  # (2, T, V)
        for row, (ids, mask) in enumerate(encoded):
            alone = model(torch.tensor([ids[:-1]]))[0]  # (n, V)
            torch.testing.assert_close(batched[row, : len(ids) - 1], alone, rtol=0, atol=1e-12)
            expected = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
            assert targets[row].tolist() == expected + [IGNORE_INDEX] * (targets.shape[1] - len(expected))


def test_gradient_does_not_depend_on_prompt_targets(template):
    (ids, mask), = encode_examples([_example("what is two and two", "four")], template, 64)[0]  # fmt: skip
    inputs, nxt, m = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]), torch.tensor([mask[1:]])

    def grads(next_ids):
        model = _model(template.tokenizer.vocab_size, torch.float32)
        model(inputs, masked_targets(next_ids, m), reduction="sum").backward()
        return [p.grad.clone() for p in model.parameters()]

    base = grads(nxt)
    changed = nxt.clone()
    changed[~m] = torch.randint(0, 300, (int((~m).sum()),))  # every prompt target replaced
    assert all(torch.equal(a, b) for a, b in zip(base, grads(changed)))
    answer = nxt.clone()
    answer[m] = (answer[m] + 1) % 300  # control: the answer's targets do move the gradient
    assert not all(torch.equal(a, b) for a, b in zip(base, grads(answer)))


def test_step_loss_is_the_mean_over_the_whole_batchs_answer_tokens(template):
    examples = [_example("q one", "a"), _example("q two", "a much longer answer here"), _example("q", "mid one")]
    encoded, _ = encode_examples(examples, template, 64)
    # Oracle: each example alone, the cross-entropy of its answer tokens summed by hand, over the batch's count.
    oracle_model = _model(template.tokenizer.vocab_size)
    total, count = 0.0, 0
    for ids, mask in encoded:
        logp = F.log_softmax(oracle_model(torch.tensor([ids[:-1]]))[0], dim=-1)  # (n, V)
        for pos in range(1, len(ids)):
            if mask[pos]:
                total = total - logp[pos - 1, ids[pos]]
                count += 1
    (total / count).backward()
    model = _model(template.tokenizer.vocab_size)
    before = [p.detach().clone() for p in model.parameters()]
    micro = step_batches(encoded, 0, 3, 2, seed=0)  # micro-batches of 2 and 1 with different answer lengths
    result = accumulated_step(model, micro, torch.optim.SGD(model.parameters(), lr=1.0))
    assert result.tokens == count
    assert result.loss == pytest.approx(float(total.detach() / count), rel=1e-6)  # the step reports it in fp32
    for p0, p1, po in zip(before, model.parameters(), oracle_model.parameters()):
        torch.testing.assert_close(p0 - p1.detach(), po.grad, rtol=1e-5, atol=1e-7)  # the loss runs in fp32


def test_stdlib_tasks_from_a_documented_function():
    source = 'import os\n\ndef area(w, h=2):\n    """Return the area of a box.\n\n    More."""\n    a = w * h\n    ' \
        'return a\n\ndef _private(x):\n    """Hidden helper, not a task."""\n    y = x\n    return y\n'  # fmt: skip
    (task,) = function_tasks(source, "stdlib/box.py")
    assert task.group == "stdlib/box.py"
    assert task.messages[0] == Message("user", "Write a Python function `area(w, h=2)` that returns the area of a box.")
    assert task.messages[1].content == source.split("\n\n", 1)[1].split("\n\ndef _private")[0]
    assert summary("Apply the patch.") == "applies the patch"
    assert summary("data -> result") == "does this: data -> result"
