"""Language identification as a pipeline step: keep the languages the model is meant to learn.

A corpus for an English model that is 5% Russian spends 5% of its compute on text the evaluation never asks about,
and a tokenizer trained on it spends vocabulary on it. Web pipelines therefore classify each page and keep the
target languages above a confidence threshold: C4 used langdetect at probability 0.99 (Raffel et al. 2020), FineWeb
fastText's ``lid.176`` at 0.65 (Penedo et al. 2024, base filtering). We use langid.py (Lui and Baldwin 2012, "langid.py:
An Off-the-shelf Language Identification Tool"), a naive Bayes model over byte n-grams whose model ships inside the
package, so nothing is downloaded; with ``norm_probs=True`` its scores are probabilities over its 97 languages, on
the same scale as fastText's.

Source code is not a natural language and gets low or arbitrary scores; do not run this step on code.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from scratchllm.config import ConfigError

from .document import Document
from .filters import check_fractions
from .step import Mapper


@dataclass
class LanguageConfig:
    """Which languages to keep and how sure the identifier must be.

    FineWeb keeps English pages whose fastText language score is at least 0.65 (Penedo et al. 2024);
    we use the same threshold on langid.py's normalized probability, a different model on the same scale.
    """

    # ISO 639-1 codes as langid.py writes them ("en", "de", ...).
    languages: tuple[str, ...] = ("en",)
    # Keep a document only if its top language is allowed and has at least this probability.
    min_score: float = 0.65

    def __post_init__(self) -> None:
        self.languages = tuple(self.languages)
        check_fractions(self, "min_score")


class LanguageFilter(Mapper):
    """Keeps documents in the allowed languages and records ``language`` and ``language_score`` in their meta.

    A Mapper rather than a Filter because it annotates what it keeps. Detected languages of all documents are counted
    in ``stats.counters`` as ``lang_<code>``. langid.py is an optional dependency (``pip install scratchllm[lang]``);
    its model ships inside the package, so nothing is downloaded.
    """

    name = "language"
    config_class = LanguageConfig

    def __init__(self, config: LanguageConfig | None = None) -> None:
        super().__init__()
        self.config = config or LanguageConfig()
        if importlib.util.find_spec("langid") is None:  # fail when the pipeline is built, not in a worker
            raise ConfigError("the language filter needs langid.py: pip install scratchllm[lang]")

    def apply(self, doc: Document) -> Document | str:
        language, score = _language_identifier().classify(doc.text)
        score = float(score)  # a numpy scalar otherwise, which JSON cannot write
        self.stats.counters[f"lang_{language}"] += 1
        if language not in self.config.languages:
            return "language:not_allowed"
        if score < self.config.min_score:
            return "language:low_score"
        return Document(doc.id, doc.text, doc.source, {**doc.meta, "language": language, "language_score": score})


@functools.cache
def _language_identifier():
    """langid.py's identifier with normalized probabilities, loaded once per process (about 1.5 s) and kept out of
    the step itself so that steps stay small to pickle for worker processes."""
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)
