"""The prose filters (Gopher quality and repetition, C4, FineWeb): each rule on a document made to fail it alone, with
the exact reason asserted, hand-made prose and real English stories that pass, and the measures on worked examples."""

import pickle

import pytest

from scratchllm.config import ConfigError
from scratchllm.data.document import Document
from scratchllm.data.filters import (
    C4Config,
    C4Filter,
    FineWebConfig,
    FineWebFilter,
    GopherQuality,
    GopherQualityConfig,
    GopherRepetition,
    GopherRepetitionConfig,
    dup_ngram_char_fraction,
    duplicates,
    top_ngram_char_fraction,
)
from scratchllm.data.normalize import Normalize

# Five sentences, one per line, 86 words: passes every prose filter.
PROSE = """\
The history of the printing press is a story of small improvements that added up to a revolution.
Gutenberg combined movable metal type with an oil-based ink and a screw press adapted from wine making.
Within fifty years, presses were working in more than two hundred European cities, and the price of books fell.
Scholars could compare identical copies of a text, which changed how errors were found and corrected.
Literacy spread with the cheaper books, and so did new ideas about religion, science and politics."""

# Distinct filler words, for texts that must not repeat anything by accident.
FILLER = [f"{a}{b}" for a in ("red", "blue", "green", "brown", "white") for b in ("fox", "owl", "cat", "elk", "yak")]


def run(step, text: str) -> tuple[str | None, str | None]:
    """(kept text or None, drop reason or None) of one document through ``step``."""
    out = list(step.run([Document("d", text, "test")]))
    reasons = list(step.stats.dropped)
    return (out[0].text if out else None), (reasons[0] if reasons else None)


def reason(step, text: str) -> str | None:
    return run(step, text)[1]


@pytest.mark.parametrize("step", [GopherQuality(), GopherRepetition(), C4Filter(), FineWebFilter()])
def test_prose_passes(step):
    assert run(step, PROSE) == (PROSE, None)


# ---------------------------------------------------------------------------------------------------------------------
# Gopher quality


def test_gopher_rule_by_rule():
    g = GopherQuality
    assert reason(g(), "Far too short a text, with the few words of it.") == "gopher:word_count"
    assert reason(g(), "the word " * 50_001) == "gopher:word_count"  # 100,002 words
    assert reason(g(), " ".join(["the", "internationalization"] * 30)) == "gopher:mean_word_length"  # mean 11.5
    assert reason(g(), " ".join(["the", "of", "a", "an"] * 15)) == "gopher:mean_word_length"  # mean 2
    assert reason(g(), PROSE + " #news" * 10) == "gopher:hash_ratio"  # 10 / 96 words
    assert reason(g(), PROSE + " and..." * 10) == "gopher:ellipsis_ratio"
    bullets = "\n".join(f"- the {w} can be seen with care and that is all" for w in FILLER[:10])
    assert reason(g(), bullets) == "gopher:bullet_lines"
    trailing = "\n".join(["It went on and on and on for a long time..."] * 3)
    assert reason(g(), PROSE + "\n" + trailing) == "gopher:ellipsis_lines"  # 3 of 8 lines; 3 "..." in 119 words
    assert reason(g(), PROSE + " 12" * 25) == "gopher:alpha_words"  # 86 of 111 words have a letter
    latin = "Gallia est omnis divisa in partes tres, quarum unam incolunt Belgae, aliam Aquitani. " * 5
    assert reason(g(), latin) == "gopher:stop_words"


def test_gopher_thresholds_are_the_boundaries():
    # 50 words is the minimum; 49 fails. Words of "the" and "and" keep the stop-word rule satisfied.
    text = " ".join(["the", "and"] * 25)  # mean word length 3: on the lower boundary, kept
    assert reason(GopherQuality(), text) is None
    assert reason(GopherQuality(), text.rsplit(" ", 1)[0]) == "gopher:word_count"
    assert reason(GopherQuality(GopherQualityConfig(min_words=10, min_mean_word_length=3.1)), text) == (
        "gopher:mean_word_length"
    )


def test_gopher_stop_words_are_distinct_words():
    text = " ".join(FILLER * 2) + " with with with"  # 53 words, one distinct stop word
    assert reason(GopherQuality(), text) == "gopher:stop_words"
    assert reason(GopherQuality(GopherQualityConfig(min_stop_words=1)), text) is None
    assert reason(GopherQuality(), text + " to") is None


def test_gopher_config_validation():
    with pytest.raises(ConfigError, match="max_bullet_lines"):
        GopherQualityConfig(max_bullet_lines=1.5)
    with pytest.raises(ConfigError, match="min_"):
        GopherQualityConfig(min_words=200, max_words=100)
    assert GopherQualityConfig(stop_words=["x", "y"]).stop_words == ("x", "y")  # a TOML list becomes a tuple


# ---------------------------------------------------------------------------------------------------------------------
# Gopher repetition


def test_duplicates_count_repeats_not_first_occurrences():
    assert duplicates(["a", "bb", "a", "bb", "a", "c"]) == (3, 4)
    assert duplicates([]) == (0, 0)


def test_ngram_measures_on_worked_examples():
    words = "a b c a b c".split()
    # (a, b, c) repeats at position 3 and covers words 3..5: 3 of 6 characters.
    assert dup_ngram_char_fraction(words, 3, 6) == 0.5
    # Overlapping repeats count each word once: every 2-gram of "x x x x" after the first repeats, covering 1..3.
    assert dup_ngram_char_fraction(["x"] * 4, 2, 4) == 0.75
    # The most frequent 2-gram of "a bb a bb a" is ("a", "bb"), twice, covering 6 of 7 characters.
    assert top_ngram_char_fraction("a bb a bb a".split(), 2, 7) == 6 / 7
    # ("x", "x") occurs three times in "x x x x y", overlapping; it covers the four x's once each.
    assert top_ngram_char_fraction("x x x x y".split(), 2, 5) == 4 / 5
    assert top_ngram_char_fraction("a b c d".split(), 2, 4) == 0.0  # nothing repeats


def test_repetition_paragraphs_and_lines():
    g = GopherRepetition
    paragraphs = PROSE.split("\n")
    assert reason(g(), "\n\n".join(paragraphs + paragraphs[:3])) == "gopher_repetition:dup_para_frac"  # 3 of 8
    short = [f"The {w} sat." for w in FILLER[:9]]
    long_para = paragraphs[2]
    text = "\n\n".join(short + [long_para, long_para])  # 1 of 11 repeats, but it holds 111 of 361 characters
    assert reason(g(), text) == "gopher_repetition:dup_para_char_frac"
    assert reason(g(), "\n".join(paragraphs + [paragraphs[0]] * 3)) == "gopher_repetition:dup_line_frac"  # 3 of 8
    text = "\n".join(short + [long_para, long_para])
    assert reason(g(), text) == "gopher_repetition:dup_line_char_frac"


def test_repetition_top_ngrams():
    text = " ".join(f"of the {w}" for w in FILLER)  # ("of", "the") covers 125 of 310 characters
    assert reason(GopherRepetition(), text) == "gopher_repetition:top_2gram_char_frac"
    for n in (2, 3, 4):
        limits = [1.0, 1.0, 1.0]
        limits[n - 2] = 0.2
        cfg = GopherRepetitionConfig(top_ngram_char_frac=limits, dup_ngram_char_frac=[1.0] * 6)
        text = " ".join(" ".join(["jumping"] * n + [w]) for w in FILLER)  # a run of n "jumping" 25 times
        assert reason(GopherRepetition(cfg), text) == f"gopher_repetition:top_{n}gram_char_frac"


@pytest.mark.parametrize("n", range(5, 11))
def test_repetition_duplicated_ngrams(n):
    limits = [1.0] * 6
    limits[n - 5] = 0.1
    cfg = GopherRepetitionConfig(top_ngram_char_frac=[1.0] * 3, dup_ngram_char_frac=limits)
    phrase = " ".join(FILLER[:10])
    text = " ".join([phrase, *FILLER[10:], phrase])  # one 10-word phrase twice: 10 of 35 words repeat
    assert reason(GopherRepetition(cfg), text) == f"gopher_repetition:dup_{n}gram_char_frac"
    assert reason(GopherRepetition(cfg), " ".join(FILLER)) is None
    # With the default thresholds the most frequent 4-gram (in the phrase, so twice) already covers more than 16%.
    assert reason(GopherRepetition(), text) == "gopher_repetition:top_4gram_char_frac"


# ---------------------------------------------------------------------------------------------------------------------
# C4


def test_c4_removes_lines():
    lines = PROSE.split("\n")
    text = "\n".join(
        [
            "Home | About | Contact",  # no terminal punctuation
            lines[0],
            "Thanks!",  # fewer than 5 words
            "Please enable JavaScript to view the comments below.",
            lines[1] + "[12]",  # a citation marker, removed from the line
            "By using this site you agree to our Terms of Use and policies.",
            "This line has a " + "x" * 1001 + " word in it.",
            "It just trails off with an ellipsis at the end...",
            lines[2],
        ]
    )
    step = C4Filter()
    assert run(step, text) == ("\n".join(lines[:3]), None)
    assert step.stats.counters == {
        "lines_no_end_mark": 2, "lines_too_short": 1, "lines_javascript": 1, "lines_policy": 1, "lines_long_word": 1,
        "changed": 1,
    }  # fmt: skip


def test_c4_drops_pages():
    assert reason(C4Filter(), PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.") == "c4:lorem_ipsum"
    assert reason(C4Filter(), PROSE + "\nThe set is written {1, 2, 3} in the notation.") == "c4:curly_bracket"
    assert reason(C4Filter(), "\n".join(PROSE.split("\n")[:2])) == "c4:too_few_sentences"
    # As in the reference code, only kept lines can drop the page: a removed line with a bracket does not.
    assert reason(C4Filter(), PROSE + "\nfunction f() { return 1 }") is None


def test_c4_counts_sentences_within_lines():
    text = "The cat sat on the mat. Then it slept for an hour. Nobody woke it up at all!"
    assert reason(C4Filter(), text) is None  # one line, three sentences
    assert reason(C4Filter(C4Config(min_sentences=4)), text) == "c4:too_few_sentences"


def test_c4_typographic_end_quote():
    text = PROSE + "\nShe said, \u201cthe press will change everything we know.\u201d"
    assert run(C4Filter(), text) == (text, None)


# ---------------------------------------------------------------------------------------------------------------------
# FineWeb


def test_fineweb_rule_by_rule():
    menu = "\n".join(f"{w} products and services overview" for w in FILLER[:10])  # no line ends with punctuation
    assert reason(FineWebFilter(), menu) == "fineweb:line_punct_ratio"
    assert reason(FineWebFilter(), "") == "fineweb:line_punct_ratio"
    lines = PROSE.split("\n")
    assert reason(FineWebFilter(), "\n".join(lines + lines[:1])) == "fineweb:dup_line_char_ratio"  # 97 of 607
    chat = "\n".join(f"The {w} said yes." for w in FILLER[:7]) + "\n" + "\n".join(lines[:3])
    assert reason(FineWebFilter(), chat) == "fineweb:short_line_ratio"  # 7 of 10 lines under 30 characters


def test_fineweb_boundaries_are_inclusive():
    lines = [f"The {w} said yes." for w in FILLER[:4]] + PROSE.split("\n")[:2]  # 4 of 6 short: 0.667 < 0.67
    assert reason(FineWebFilter(), "\n".join(lines)) is None
    assert reason(FineWebFilter(FineWebConfig(max_short_line_ratio=4 / 6)), "\n".join(lines)) == (
        "fineweb:short_line_ratio"
    )
    # 1 of 9 lines ends with punctuation: 0.111 <= 0.12 drops; 0.11 as the threshold keeps it.
    text = "\n".join([PROSE.split("\n")[0]] + [f"{w} products overview and more here" for w in FILLER[:8]])
    assert reason(FineWebFilter(), text) == "fineweb:line_punct_ratio"
    assert reason(FineWebFilter(FineWebConfig(min_line_punct_ratio=0.11, max_short_line_ratio=1.0)), text) is None


# ---------------------------------------------------------------------------------------------------------------------
# Real English, and the plumbing every step needs


def test_real_stories_pass(shared_data):
    sample = (shared_data / "tinystories" / "tinystories_sample.txt").read_text(encoding="utf-8")
    stories = [Document(f"s{i}", s.strip(), "tinystories") for i, s in enumerate(sample.split("<|endoftext|>"))]
    stories = list(Normalize().run(s for s in stories if s.text))
    assert len(stories) == 5
    for step in (GopherQuality(), GopherRepetition(), C4Filter(), FineWebFilter()):
        kept = list(step.run(stories))
        assert len(kept) == 5, (step.name, dict(step.stats.dropped))


def test_steps_pickle_and_record_reasons():
    steps = [GopherQuality(), GopherRepetition(), C4Filter(), FineWebFilter()]
    for step in steps:
        copy = pickle.loads(pickle.dumps(step))
        assert copy.config == step.config
        docs = [Document("good", PROSE, "t"), Document("bad", "Buy now.\n" * 10, "t")]
        assert [d.id for d in copy.run(docs)] == ["good"]
        reason = next(iter(copy.stats.dropped))
        assert reason.startswith(copy.name + ":")
        assert copy.stats.examples[reason][0]["id"] == "bad"
