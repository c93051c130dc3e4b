"""LanguageFilter: English kept and annotated, other languages and unsure scores dropped with their reasons, and a
clear message when the optional langid dependency is missing."""

import importlib.util
import pickle

import pytest

from scratchllm.config import ConfigError
from scratchllm.data.document import Document

pytest.importorskip("langid")

from scratchllm.data.language import LanguageConfig, LanguageFilter  # noqa: E402

ENGLISH = "The weather was fine, so the children walked to the river and watched the boats go by until dinner."
GERMAN = "Das Wetter war schön, also gingen die Kinder zum Fluss und sahen den Booten zu, bis es Abendessen gab."
CODE = "def f(x):\n    return x + 1\n"


def run(text: str, config: LanguageConfig | None = None) -> tuple[Document | None, LanguageFilter]:
    step = LanguageFilter(config)
    out = list(step.run([Document("d", text, "test", {"url": "u"})]))
    return (out[0] if out else None), step


def test_english_is_kept_and_annotated():
    doc, step = run(ENGLISH)
    assert doc.text == ENGLISH
    assert doc.meta["url"] == "u" and doc.meta["language"] == "en"
    assert isinstance(doc.meta["language_score"], float) and doc.meta["language_score"] >= 0.65
    assert step.stats.counters["lang_en"] == 1


def test_other_language_is_dropped():
    doc, step = run(GERMAN)
    assert doc is None
    assert step.stats.dropped == {"language:not_allowed": 1}
    assert step.stats.counters["lang_de"] == 1
    doc, _ = run(GERMAN, LanguageConfig(languages=["de", "en"]))
    assert doc.meta["language"] == "de"


def test_unsure_score_is_dropped():
    # Code is no natural language: langid guesses English with a low probability (about 0.17).
    doc, step = run(CODE)
    assert doc is None
    assert step.stats.dropped == {"language:low_score": 1}
    assert run(CODE, LanguageConfig(min_score=0.1))[0] is not None


def test_missing_langid_names_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ConfigError, match=r"pip install scratchllm\[lang\]"):
        LanguageFilter()


def test_config_and_pickling():
    with pytest.raises(ConfigError, match="min_score"):
        LanguageConfig(min_score=1.5)
    step = LanguageFilter(LanguageConfig(languages=["de"]))
    list(step.run([Document("d", ENGLISH, "t")]))  # loads the model in this process
    copy = pickle.loads(pickle.dumps(step))  # the model is not part of the step
    assert copy.config.languages == ("de",)
    assert [d.id for d in copy.run([Document("g", GERMAN, "t")])] == ["g"]
