"""MMLU: the prompt equals a hand-written one, a model whose answer is known (it always prefers " C") scores the
fraction of C answers, batched scoring equals a plain per-continuation loop, truncation drops shots from the front,
the categories cover the 57 subjects, and the confidence intervals match hand-worked numbers."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from scratchllm.eval import mmlu
from scratchllm.eval.mmlu import MMLUError, MMLUResult, Question, Request
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer

# Bytes plus one merge per answer letter, so " A" ... " D" are single tokens (ids 256-259) as in GPT-2's vocabulary.
LETTER_TOKENS = Tokenizer([(32, 65), (32, 66), (32, 67), (32, 68)], special_tokens={"<|endoftext|>": 260})
VOCAB = 261


class PrefersC(nn.Module):
    """A fake model: whatever it reads, its next-token distribution puts the most mass on " C"."""

    def __init__(self, block_size: int = 4096):
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size)
        self.lm_head = nn.Linear(1, VOCAB, bias=False)
        nn.init.zeros_(self.lm_head.weight)
        with torch.no_grad():
            self.lm_head.weight[LETTER_TOKENS.encode(" C")[0]] = 1.0

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.ones(*idx.shape, 1)  # (B, T, 1)


def synthetic(subject: str, answers: str) -> list[Question]:
    return [Question(subject, f"Question {i} of {subject}?", ("w", "x", "y", "z"), "ABCD".index(a)) for i, a in
            enumerate(answers)]  # fmt: skip


def test_prompt_equals_a_hand_written_one():
    shot = Question("high_school_geography", "Which is the longest river?", ("Nile", "Po", "Rhine", "Seine"), 0)
    q = Question("high_school_geography", "  Where is Lima?\n", ("Peru", "Chile", "Spain", "Cuba"), 0)
    expected = (
        "The following are multiple choice questions (with answers) about high school geography.\n\n"
        "Which is the longest river?\nA. Nile\nB. Po\nC. Rhine\nD. Seine\nAnswer: A\n\n"
        "Where is Lima?\nA. Peru\nB. Chile\nC. Spain\nD. Cuba\nAnswer:"
    )
    assert mmlu.format_prompt(q, [shot]) == expected


def test_prompt_for_a_known_question_of_the_release(shared_data):
    dev = mmlu.load_csv(shared_data / "mmlu", "dev")
    test = mmlu.load_csv(shared_data / "mmlu", "test")
    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
        "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\n"
        "D. False, True\nAnswer: B\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert mmlu.format_prompt(test["abstract_algebra"][0], dev["abstract_algebra"][:2]) == expected
    assert test["abstract_algebra"][0].answer == 1  # B


def test_release_layout_and_categories(shared_data):
    dev = mmlu.load_csv(shared_data / "mmlu", "dev")
    test = mmlu.load_csv(shared_data / "mmlu", "test")
    assert set(dev) == set(mmlu.SUBCATEGORIES) and all(len(rows) == 5 for rows in dev.values())
    assert {s: len(rows) for s, rows in test.items()} == {
        "abstract_algebra": 100, "college_computer_science": 100, "high_school_mathematics": 270,
        "us_foreign_policy": 100, "world_religions": 171,
    }  # fmt: skip


def test_categories_cover_the_57_subjects():
    assert len(mmlu.SUBCATEGORIES) == 57
    subcategories = [s for subs in mmlu.CATEGORIES.values() for s in subs]
    assert sorted(subcategories) == sorted(set(mmlu.SUBCATEGORIES.values()))  # each in exactly one category
    sizes = {}
    for subject in mmlu.SUBCATEGORIES:
        sizes[mmlu.category(subject)] = sizes.get(mmlu.category(subject), 0) + 1
    assert sizes == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
    assert mmlu.category("anatomy") == "other" and mmlu.category("world_religions") == "humanities"


def test_a_model_that_prefers_c_scores_the_fraction_of_c_answers():
    test = {"astronomy": synthetic("astronomy", "ABCCDC"), "sociology": synthetic("sociology", "CCCD")}
    dev = {s: synthetic(s, "ABCDA") for s in test}
    result = mmlu.evaluate_mmlu(PrefersC(), LETTER_TOKENS, test, dev, shots=5, batch_size=3)
    assert result.predictions == {"astronomy": [2] * 6, "sociology": [2] * 4}
    summary = result.summary()
    assert summary["shots_kept_mean"] == 5 and summary["truncated"] == 0
    assert summary["subjects"]["astronomy"]["acc"] == pytest.approx(3 / 6)
    assert summary["subjects"]["sociology"]["acc"] == pytest.approx(3 / 4)
    assert summary["micro"]["acc"] == pytest.approx(6 / 10) and summary["micro"]["n"] == 10
    assert summary["macro"]["acc"] == pytest.approx((3 / 6 + 3 / 4) / 2)
    assert summary["categories"]["STEM"]["acc"] == pytest.approx(3 / 6)  # astronomy: physics
    assert summary["categories"]["social sciences"]["acc"] == pytest.approx(3 / 4)  # sociology: culture


def test_the_fake_model_on_the_release(shared_data):
    root = shared_data / "mmlu"
    result = mmlu.evaluate_mmlu(PrefersC(), LETTER_TOKENS, mmlu.load_csv(root, "test"), mmlu.load_csv(root, "dev"))
    for subject, accuracy in result.summary()["subjects"].items():
        with open(root / "test" / f"{subject}_test.csv", newline="") as f:
            answers = [row[-1] for row in csv.reader(f)]
        assert accuracy["acc"] == answers.count("C") / len(answers), subject


def test_answer_text_modes_sum_and_normalize_multi_token_continuations():
    # The fake gives every token the log-prob -L (L = ln(e + 260) = 5.57) but " C", which gets 1 - L. Summed, the
    # shortest text wins: " ox", 3 tokens, -3L = -16.7 against " C"+"abcdefg", 8 tokens, 1 - 8L = -43.6. Per byte,
    # " ox" costs -L = -5.57 and " Cabcdefg" (9 bytes) (1 - 8L) / 9 = -4.84, so that one wins.
    q = Question("virology", "Which?", ("ox", "Cabcdefg", "dog", "cow"), 1)
    for mode, predicted in (("text", 0), ("text_norm", 1)):
        result = mmlu.evaluate_mmlu(PrefersC(), LETTER_TOKENS, {"virology": [q]}, shots=0, mode=mode)
        assert result.predictions == {"virology": [predicted]}, mode


@torch.no_grad()
def test_batched_scoring_equals_a_plain_loop():
    torch.manual_seed(0)
    model = GPT.build(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=1, n_head=2, d_model=32)).eval()
    requests = [Request([260, 5, 6, 7], [[256], [257], [258], [259]]),
                Request([260, 9], [[40, 41, 42], [43], [44, 45], [257]]),
                Request([260, 1, 2, 3, 4, 5, 6, 7, 8], [[10, 11], [12], [13], [14, 15, 16, 17]])]  # fmt: skip
    got = mmlu.score_requests(model, requests, batch_size=2)
    for (prompt, conts, _, _), scores in zip(requests, got):
        for cont, score in zip(conts, scores):
            ids = prompt + cont
            logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0], dim=-1)  # (T, V)
            expected = sum(logp[len(prompt) - 1 + k, tok].item() for k, tok in enumerate(cont))
            assert score == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_truncation_drops_shots_from_the_front_and_keeps_the_question():
    q = synthetic("marketing", "B")[0]
    shots = synthetic("marketing", "ABCDA")
    prompt_len = lambda k: 1 + len(LETTER_TOKENS.encode(mmlu.format_prompt(q, shots[5 - k :])))  # BOS + prompt
    context = prompt_len(2) + 3  # room for the two last shots, not three
    ids, conts, kept, truncated = mmlu.build_request(LETTER_TOKENS, q, shots, "letter", context)
    assert LETTER_TOKENS.decode(ids[1:]) == mmlu.format_prompt(q, shots[3:])  # the first three shots are gone
    assert conts == [[256], [257], [258], [259]] and kept == 2 and not truncated
    # Too short even for the bare question: its oldest tokens go, the end ("...Answer:") stays.
    ids, _, kept, truncated = mmlu.build_request(LETTER_TOKENS, q, shots, "letter", 20)
    full = [260, *LETTER_TOKENS.encode(mmlu.format_prompt(q))]
    assert ids == full[-20:] and LETTER_TOKENS.decode(ids).endswith("D. z\nAnswer:")
    assert kept == 0 and truncated


def test_the_confidence_intervals_on_hand_numbers():
    # Wilson, z = 1.96: 50/100 -> 0.5 +- 1.96 sqrt(0.0025 + 0.000096) / 1.0384 = [0.4038, 0.5962].
    assert mmlu.wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    # 0/10: centre (0 + 0.1921) / 1.3842 = 0.1388 with the same half-width: [0, 0.2775], not a point at 0.
    assert mmlu.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    # Macro over 50/100 and 80/100: mean 0.65, se = sqrt(0.25/100 + 0.16/100) / 2 = 0.03202 -> +- 0.06275.
    assert mmlu.macro_interval([(50, 100), (80, 100)]) == pytest.approx((0.65, 0.58725, 0.71275), abs=1e-4)
    result = MMLUResult(
        shots=0, mode="letter", predictions={"anatomy": [0] * 100}, answers={"anatomy": [0] * 50 + [1] * 50}
    )
    assert result.summary()["micro"]["ci95"] == pytest.approx([0.4038, 0.5962], abs=1e-4)


def test_hugging_face_records_through_datasets(tmp_path):
    pytest.importorskip("datasets")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = {"question": ["What is 2 + 2?", "Capital of France?"],
            "subject": ["elementary_mathematics", "miscellaneous"],
            "choices": [["3", "4", "5", "6"], ["Rome", "Paris", "Oslo", "Bern"]], "answer": [1, 1]}  # fmt: skip
    pq.write_table(pa.table(rows), tmp_path / "test.parquet")
    got = mmlu.load_hf("train", path="parquet", name=None, data_files=str(tmp_path / "test.parquet"),
                       cache_dir=str(tmp_path / "cache"))  # fmt: skip
    assert got == {
        "elementary_mathematics": [Question("elementary_mathematics", "What is 2 + 2?", ("3", "4", "5", "6"), 1)],
        "miscellaneous": [Question("miscellaneous", "Capital of France?", ("Rome", "Paris", "Oslo", "Bern"), 1)],
    }


def test_bad_input_is_refused_with_a_reason(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "anatomy_dev.csv").write_text('"Q?",a,b,c,d,B\n"Q2?",a,b,c,d,E\n')
    with pytest.raises(MMLUError, match=r"anatomy_dev.csv:2: expected 6 fields"):
        mmlu.load_csv(tmp_path, "dev")
    with pytest.raises(MMLUError, match="no test files"):
        mmlu.load_csv(tmp_path, "test")
    test = {"anatomy": synthetic("anatomy", "A")}
    with pytest.raises(MMLUError, match="0 to 5 shots"):
        mmlu.evaluate_mmlu(PrefersC(), LETTER_TOKENS, test, shots=6)
    with pytest.raises(MMLUError, match="0 dev questions"):
        mmlu.evaluate_mmlu(PrefersC(), LETTER_TOKENS, test, shots=1)
    with pytest.raises(MMLUError, match="unknown scoring mode"):
        mmlu.evaluate_mmlu(PrefersC(), LETTER_TOKENS, test, mode="guess")
