"""Training at full size on the whole default corpus: bounded memory and exact agreement with tiktoken.

Slow (about 15 s on 2 cores) but run in CI like every test. It trains in a child process so that the peak resident
memory it reports is the training's own, not the test runner's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource, sys
from scratchllm.data import CorpusConfig, open_corpus
from scratchllm.tokenizer import Tokenizer
tok = Tokenizer.train((d.text for d in open_corpus(CorpusConfig())), 32768, "gpt4", ["<|endoftext|>"], workers=2)
tok.save(sys.argv[1])
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"rss_mb": rss / 1024, "merges": tok.training.merges, "documents": tok.training.documents}))
"""


@pytest.mark.slow
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
