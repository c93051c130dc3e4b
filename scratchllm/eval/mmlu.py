"""MMLU (Hendrycks et al. 2021, "Measuring Massive Multitask Language Understanding"): 57 subjects of four-way
multiple-choice questions, scored by log-likelihood, as the original release and lm-evaluation-harness score them.

The prompt (the harness's "mmlu" task, which follows the release's evaluate.py):

    The following are multiple choice questions (with answers) about {subject, "_" -> " "}.\\n\\n
    {shot question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {letter}\\n\\n      (k times, the first k dev rows)
    {test question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:

Two details differ between the references and we follow the harness: it strips the question, and it writes the
subject with single spaces where the release's ``format_subject`` puts a space before every word ("about  abstract
algebra", two spaces). Tiny changes like these move small models' scores (docs/05-evaluation.md).

Scoring compares the model's log-likelihood of each continuation after the prompt and predicts the largest:
``"letter"`` scores " A", " B", " C", " D" (one forward pass per question: single-token letters share one input row);
``"text"`` scores " " + the answer's text, summing the log-probabilities of its tokens; ``"text_norm"`` divides that
sum by the continuation's length in UTF-8 bytes (the harness's acc_norm divides by characters; bytes keep it
independent of the tokenizer, as bits per byte). A prompt longer than the context loses whole shots from the front
first, then tokens from the left; the question itself is kept.

Accuracy comes per subject, per category (the release's categories.py: STEM, humanities, social sciences, other),
micro-averaged (over questions) and macro-averaged (over subjects), each with a 95% confidence interval: Wilson's
score interval for a proportion, and a normal approximation for the macro mean. Subjects hold 100 to 1,534 test
questions, so a single subject's accuracy is uncertain by several points; say so when you quote one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .perplexity import BOS

LETTERS = "ABCD"
MODES = ("letter", "text", "text_norm")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile

# Subject -> subcategory, and subcategory -> category: hendrycks/test categories.py, all 57 subjects. (The harness
# groups a few health subjects, such as anatomy, under STEM instead; this is the release's mapping.)
# fmt: off
SUBCATEGORIES = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
CATEGORIES = {
    "STEM": ("physics", "chemistry", "biology", "computer science", "math", "engineering"),
    "humanities": ("history", "philosophy", "law"),
    "social sciences": ("politics", "culture", "economics", "geography", "psychology"),
    "other": ("other", "business", "health"),  # the release names it "other (business, health, misc.)"
}
# fmt: on


class MMLUError(ValueError):
    """MMLU data that cannot be read or used: a missing directory, a malformed row, too few dev questions."""


@dataclass(frozen=True)
class Question:
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices: 0 = A


def category(subject: str) -> str:
    """The category of one of the 57 subjects."""
    sub = SUBCATEGORIES[subject]
    return next(name for name, subs in CATEGORIES.items() if sub in subs)


# ------------------------------------------------------------------------------------------------------------- data


def read_csv(path: str | Path, subject: str) -> list[Question]:
    """One subject's file of the original release: no header; rows question, A, B, C, D, answer letter. Read with
    the csv module, which keeps every field as written (pandas, as the release used it, turns "None" into NaN)."""
    questions = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for row in reader:
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise MMLUError(
                    f"{path}:{reader.line_num}: expected 6 fields (question, A, B, C, D, answer letter A-D), "
                    f"found {len(row)}: {row[:1]}...; is this the original MMLU CSV release?"
                )
            questions.append(Question(subject, row[0], tuple(row[1:5]), LETTERS.index(row[5].strip())))
    return questions


def load_csv(root: str | Path, split: str) -> dict[str, list[Question]]:
    """Every ``root/{split}/{subject}_{split}.csv`` (split: "dev", "val" or "test"), by subject, sorted."""
    folder = Path(root) / split
    files = sorted(folder.glob(f"*_{split}.csv"))
    if not files:
        raise MMLUError(f"no {split} files in {folder}: expected the release's data/ layout ({split}/*_{split}.csv)")
    return {p.name.removesuffix(f"_{split}.csv"): read_csv(p, p.name.removesuffix(f"_{split}.csv")) for p in files}


def from_records(records: Iterable[Mapping]) -> dict[str, list[Question]]:
    """Rows with the columns of Hugging Face's ``cais/mmlu`` (question, subject, choices, answer as 0-3)."""
    out: dict[str, list[Question]] = {}
    for row in records:
        q = Question(row["subject"], row["question"], tuple(row["choices"]), int(row["answer"]))
        out.setdefault(q.subject, []).append(q)
    return dict(sorted(out.items()))


def load_hf(
    split: str = "test", path: str = "cais/mmlu", name: str | None = "all", **kwargs
) -> dict[str, list[Question]]:
    """MMLU through Hugging Face ``datasets`` (the optional extra ``scratchllm[hf]``): ``cais/mmlu`` from the Hub
    (needs a network, then the local cache), or ``path="parquet"`` / ``"json"`` with ``data_files=`` of your own.
    Other keyword arguments (``data_files``, ``cache_dir``, ...) go to ``datasets.load_dataset``."""
    try:
        import datasets  # optional, and slow to import: only here
    except ImportError:
        raise MMLUError("reading MMLU from Hugging Face needs `datasets`: pip install 'scratchllm[hf]'") from None
    return from_records(datasets.load_dataset(path, name, split=split, **kwargs))


# ----------------------------------------------------------------------------------------------------------- prompts


def format_subject(subject: str) -> str:
    return subject.replace("_", " ")


def format_question(q: Question, with_answer: bool) -> str:
    """The question, its lettered choices and "Answer:", followed by " X\\n\\n" for a shot."""
    lines = [q.question.strip()] + [f"{letter}. {choice}" for letter, choice in zip(LETTERS, q.choices)]
    text = "\n".join(lines) + "\nAnswer:"
    return text + f" {LETTERS[q.answer]}\n\n" if with_answer else text


def format_prompt(q: Question, shots: Sequence[Question] = ()) -> str:
    """The full prompt for ``q`` after the given solved examples, ending in "Answer:"."""
    header = f"The following are multiple choice questions (with answers) about {format_subject(q.subject)}.\n\n"
    return header + "".join(format_question(s, True) for s in shots) + format_question(q, False)


def continuations(q: Question, mode: str) -> list[str]:
    """What is scored after the prompt, one string per choice."""
    if mode == "letter":
        return [f" {letter}" for letter in LETTERS[: len(q.choices)]]
    return [f" {choice}" for choice in q.choices]


class Request(NamedTuple):
    """One question, tokenized: the prompt, one continuation per choice, and what truncation left of the shots."""

    prompt: list[int]
    continuations: list[list[int]]
    shots: int = 0  # solved examples kept in the prompt
    truncated: bool = False  # the prompt lost tokens from its start (the question alone did not fit)


def build_request(tokenizer, q: Question, shots: Sequence[Question], mode: str, context: int) -> Request:
    """The prompt and continuation ids for ``q``, fitting ``context`` tokens: the model reads the prompt and every
    continuation token but the last, so ``len(prompt) + len(longest continuation) - 1 <= context``. Whole shots are
    dropped from the front until it fits, and if the bare question is still too long, its oldest tokens go."""
    bos = [tokenizer.special_tokens[BOS]] if BOS in tokenizer.special_tokens else []
    conts = [tokenizer.encode(c, disallowed_special=()) for c in continuations(q, mode)]
    budget = context - max(len(c) for c in conts) + 1
    if budget < 1:
        raise MMLUError(f"a continuation of {q.subject} is longer than the model's context of {context} tokens")
    for first in range(len(shots) + 1):
        ids = bos + tokenizer.encode(format_prompt(q, shots[first:]), disallowed_special=())
        if len(ids) <= budget:
            return Request(ids, conts, len(shots) - first)
    return Request(ids[-budget:], conts, 0, truncated=True)


# ----------------------------------------------------------------------------------------------------------- scoring


@torch.no_grad()
def score_requests(
    model, requests: Sequence[Request], batch_size: int = 8, progress: bool = False
) -> list[list[float]]:
    """Summed log-probability of each continuation after its prompt: ``scores[i][j]`` for request i, choice j.

    Each continuation needs the input ``prompt + continuation[:-1]``; identical inputs (all single-token letters of
    a question) share one row. Rows are sorted by length and right-padded into batches; only the positions that
    predict a continuation token go through the output head."""
    rows: dict[tuple[int, ...], int] = {}
    wanted: list[list[tuple[int, int, int, list[int]]]] = []  # per row: (request, choice, first position, tokens)
    for i, req in enumerate(requests):
        for j, cont in enumerate(req.continuations):
            row = rows.setdefault(tuple(req.prompt + cont[:-1]), len(rows))
            if row == len(wanted):
                wanted.append([])
            wanted[row].append((i, j, len(req.prompt) - 1, cont))
    inputs = list(rows)
    order = sorted(range(len(inputs)), key=lambda r: -len(inputs[r]))
    scores = [[0.0] * len(req.continuations) for req in requests]
    device = model.lm_head.weight.device
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="mmlu", unit="batch", disable=not progress):
            batch = order[start : start + batch_size]
            idx = torch.zeros(len(batch), len(inputs[batch[0]]), dtype=torch.long)  # (B, T), longest first
            for b, r in enumerate(batch):
                idx[b, : len(inputs[r])] = torch.tensor(inputs[r])
            h = model.hidden_states(idx.to(device))  # (B, T, d)
            b_idx, t_idx, tokens, owners = [], [], [], []
            for b, r in enumerate(batch):
                for i, j, pos, cont in wanted[r]:
                    b_idx += [b] * len(cont)
                    t_idx += range(pos, pos + len(cont))
                    tokens += cont
                    owners += [(i, j)] * len(cont)
            logits = model.lm_head(h[b_idx, t_idx]).float()  # (N, V): one row per scored continuation token
            rows_n = torch.arange(len(tokens), device=device)
            logp = torch.log_softmax(logits, dim=-1)[rows_n, torch.tensor(tokens, device=device)]  # (N,)
            for (i, j), lp in zip(owners, logp.tolist()):
                scores[i][j] += lp
    finally:
        model.train(was_training)
    return scores


# ----------------------------------------------------------------------------------------------------------- metrics


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion: unlike p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and does not
    collapse to a point at 0/n or n/n, which matters for test sets of 100 questions."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def macro_interval(parts: Sequence[tuple[int, int]], z: float = Z95) -> tuple[float, float, float]:
    """(mean of per-subject accuracies, low, high): the normal approximation, with the mean's variance
    sum(p_s (1 - p_s) / n_s) / S^2 for S subjects of n_s questions each, treated as independent."""
    accs = [(c / n, n) for c, n in parts if n]
    mean = sum(p for p, _ in accs) / len(accs)
    half = z * math.sqrt(sum(p * (1 - p) / n for p, n in accs)) / len(accs)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def _entry(correct: int, n: int) -> dict:
    lo, hi = wilson_interval(correct, n)
    return {"acc": correct / n if n else 0.0, "ci95": [lo, hi], "correct": correct, "n": n}


@dataclass
class MMLUResult:
    """Per-question predictions and answers by subject, and every average derived from them. ``shots_kept``: the
    shots each prompt kept after truncation to the context; ``truncated``: prompts that lost question tokens."""

    shots: int
    mode: str
    predictions: dict[str, list[int]] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    shots_kept: list[int] = field(default_factory=list)
    truncated: int = 0

    def counts(self, subject: str) -> tuple[int, int]:
        pairs = zip(self.predictions[subject], self.answers[subject])
        return sum(p == a for p, a in pairs), len(self.answers[subject])

    def summary(self) -> dict:
        """Accuracies with 95% intervals: subjects, categories and micro (Wilson), macro (normal approximation)."""
        per_subject = {s: self.counts(s) for s in self.answers}
        by_category: dict[str, list[int]] = {}
        for s, (c, n) in per_subject.items():
            tally = by_category.setdefault(category(s), [0, 0])
            tally[0], tally[1] = tally[0] + c, tally[1] + n
        correct, total = sum(c for c, _ in per_subject.values()), sum(n for _, n in per_subject.values())
        mean, lo, hi = macro_interval(list(per_subject.values()))
        return {
            "shots": self.shots, "mode": self.mode, "questions": total,
            "shots_kept_mean": sum(self.shots_kept) / max(1, len(self.shots_kept)), "truncated": self.truncated,
            "micro": _entry(correct, total),
            "macro": {"acc": mean, "ci95": [lo, hi], "subjects": len(per_subject)},
            "categories": {cat: _entry(*by_category[cat]) for cat in CATEGORIES if cat in by_category},
            "subjects": {s: _entry(c, n) for s, (c, n) in per_subject.items()},
        }  # fmt: skip


def evaluate_mmlu(
    model,
    tokenizer,
    test: Mapping[str, Sequence[Question]],
    dev: Mapping[str, Sequence[Question]] | None = None,
    shots: int = 5,
    mode: str = "letter",
    batch_size: int = 8,
    progress: bool = False,
) -> MMLUResult:
    """Score every question of ``test`` with ``shots`` examples (the first rows of the subject's ``dev`` list)."""
    if mode not in MODES:
        raise MMLUError(f"unknown scoring mode {mode!r}; choose one of {', '.join(MODES)}")
    if not 0 <= shots <= 5:
        raise MMLUError(f"shots={shots}: MMLU's dev split has 5 questions per subject, so use 0 to 5 shots")
    unknown = sorted(set(test) - set(SUBCATEGORIES))
    if unknown:
        raise MMLUError(f"unknown MMLU subjects {unknown[:3]}; the 57 known ones are in SUBCATEGORIES")
    context = model.config.block_size
    requests, keys = [], []
    for subject, questions in test.items():
        examples = list((dev or {}).get(subject, ()))[:shots]
        if len(examples) < shots:
            raise MMLUError(f"{subject} has {len(examples)} dev questions, not the {shots} shots asked for")
        for q in questions:
            requests.append(build_request(tokenizer, q, examples, mode, context))
            keys.append(q)
    scores = score_requests(model, requests, batch_size, progress)
    result = MMLUResult(shots, mode)
    for q, sc, req in zip(keys, scores, requests):
        result.shots_kept.append(req.shots)
        result.truncated += req.truncated
        if mode == "text_norm":
            sc = [s / len(c.encode("utf-8")) for s, c in zip(sc, continuations(q, mode))]
        result.predictions.setdefault(q.subject, []).append(max(range(len(sc)), key=sc.__getitem__))
        result.answers.setdefault(q.subject, []).append(q.answer)
    return result
