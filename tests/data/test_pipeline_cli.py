"""`scratchllm data` from the command line: a pipeline from TOML, and a bad config as one line with status 2.

The corpus fixture and the TOML writer are test_pipeline.py's (imported: pytest finds a fixture by its name here)."""

from __future__ import annotations

import subprocess
import sys

from scratchllm.cli.main import main

from .test_pipeline import ROOT, corpus, pipeline_toml  # noqa: F401  (corpus is a fixture)


def test_cli_runs_a_pipeline_from_toml(tmp_path, corpus, capsys):  # noqa: F811  (the fixture)
    assert main(["data", "--config", str(pipeline_toml(tmp_path, corpus)), f"out={tmp_path / 'cli'}"]) == 0
    printed = capsys.readouterr().out
    assert "read 40 documents, wrote 35" in printed and "exact_duplicate 1" in printed
    assert (tmp_path / "cli" / "report.md").is_file() and (tmp_path / "cli" / "config.toml").is_file()
    assert main(["data", "--config", str(pipeline_toml(tmp_path, corpus)), f"out={tmp_path / 'cli'}",
                 "--rank", "3", "--world-size", "2"]) == 2  # fmt: skip
    assert "rank must be in [0, world_size)" in capsys.readouterr().err


def test_cli_bad_config_is_one_line_and_status_2(tmp_path, corpus):  # noqa: F811  (the fixture)
    bad = tmp_path / "bad.toml"
    bad.write_text(pipeline_toml(tmp_path, corpus).read_text().replace('"near_dedup"', '"near_dedupe"'))
    result = subprocess.run([sys.executable, "-m", "scratchllm", "data", "--config", str(bad), f"out={tmp_path}/x"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "did you mean 'near_dedup'" in result.stderr
