"""Training at full size on the whole default corpus: bounded memory and exact agreement with tiktoken.

Slow (about 15 s on 2 cores) but run in CI like every test. It trains in a child process so that the peak resident
memory it reports is the training's own, not the test runner's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Linux carries a process's peak RSS across exec, and a child started by fork or vfork begins with its parent's
# pages: without a reset, the child would report the test runner's own peak (over 2 GB late in a full run). So the
# child resets its peak first (as train/memory.py does, without importing torch) and reads it back at the end; the
# worker processes it forks are small.
SCRIPT = """
import json, resource, sys
from pathlib import Path
Path("/proc/self/clear_refs").write_text("5")
from scratchllm.data import CorpusConfig, open_corpus
from scratchllm.tokenizer import Tokenizer
tok = Tokenizer.train((d.text for d in open_corpus(CorpusConfig())), 32768, "gpt4", ["<|endoftext|>"], workers=2)
tok.save(sys.argv[1])
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
rss = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"rss_mb": rss / 1024, "merges": tok.training.merges, "documents": tok.training.documents}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the peak-memory reset is Linux's")
def test_full_corpus_training_is_bounded_and_exact(tmp_path):
    tiktoken = pytest.importorskip("tiktoken")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rss_mb"] < 2048, report
    assert report["merges"] == 32768 - 257 and report["documents"] > 1800

    from scratchllm.data import CorpusConfig, open_corpus
    from scratchllm.tokenizer import Tokenizer

    tok = Tokenizer.load(tmp_path)
    enc = tok.to_tiktoken()
    assert isinstance(enc, tiktoken.Encoding)
    for doc in open_corpus(CorpusConfig(split="val")):
        assert tok.encode(doc.text, disallowed_special=()) == enc.encode(doc.text, disallowed_special=())
