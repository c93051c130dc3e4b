"""Tests for HTML extraction: the main text is kept and the boilerplate dropped, only HTML documents are touched, and
a page that makes the extractor hang costs its deadline and no more, in the main thread, in a worker process and in
a thread of its own."""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import threading
import time

import pytest

from scratchllm.data import Document
from scratchllm.data import extract as extract_module
from scratchllm.data.extract import ExtractHTML, ExtractionTimeout, run_with_deadline

ARTICLE = [
    "The river rose three metres overnight after a week of rain in the hills above the town.",
    "Engineers opened the old sluice gates for the first time since they were rebuilt in 1998.",
    "By the morning the water had reached the steps of the library, but no further than that.",
    "The mayor thanked the volunteers who had filled sandbags through the night in the square.",
]
PAGE = (
    "<html><head><title>Flood news</title><script>var tracking = 1;</script></head><body>"
    "<nav><ul><li><a href='/'>Home</a></li><li><a href='/sport'>Sport</a></li><li><a href='/about'>About us</a></li>"
    "</ul></nav><div class='cookie'>We use cookies. <button>Accept all</button></div>"
    "<article><h1>River floods the old town</h1>" + "".join(f"<p>{s}</p>" for s in ARTICLE) + "</article>"
    "<footer><p>Copyright 2024 The Valley Gazette. All rights reserved.</p></footer></body></html>"
)


def html(doc_id: str, text: str = PAGE) -> Document:
    return Document(doc_id, text, "warc", {"url": f"https://e/{doc_id}", "format": "html"})


def test_extracts_the_main_text_and_drops_the_boilerplate():
    step = ExtractHTML()
    [doc] = step.run([html("a")])
    for sentence in ARTICLE:
        assert sentence in doc.text
    for boilerplate in ("Home", "Sport", "cookies", "Copyright", "tracking", "<p>"):
        assert boilerplate not in doc.text
    assert (doc.id, doc.source) == ("a", "warc")
    assert doc.meta == {"url": "https://e/a", "format": "text", "extractor": "trafilatura"}
    assert step.stats.seen == step.stats.kept == 1 and step.stats.counters["changed"] == 1


def test_only_html_is_touched_and_empty_pages_are_dropped_with_a_reason():
    plain = Document("t", "<p>markup in a text file stays as it is</p>", "files", {"format": "text"})
    bare = Document("b", "no meta at all", "jsonl")
    empty = html("e", "<html><head><title>x</title></head><body></body></html>")
    step = ExtractHTML()
    assert list(step.run([plain, bare, empty])) == [plain, bare]
    assert step.stats.dropped == {"extract:empty": 1} and step.stats.counters["not_html"] == 2
    assert step.stats.examples["extract:empty"][0]["id"] == "e"


def test_extractor_errors_drop_the_page_not_the_run(monkeypatch):
    def broken(text, favor_precision):
        if "bad" in text:
            raise ValueError("lxml could not make sense of it")
        return "fine"

    monkeypatch.setattr(extract_module, "extract_main_text", broken)
    step = ExtractHTML()
    out = list(step.run([html("1", "<html>bad</html>"), html("2", "<html>good</html>")]))
    assert [d.text for d in out] == ["fine"] and step.stats.dropped == {"extract:error": 1}


def sleeper(text: str, favor_precision: bool) -> str:
    if "hang" in text:
        time.sleep(30)
    return "extracted"


def spinner(text: str, favor_precision: bool) -> str:
    while "spin" in text:  # a pure-Python loop that never ends, as a pathological page can cause
        pass
    return "extracted"


@pytest.mark.parametrize("extractor", [sleeper, spinner])
def test_a_hanging_page_times_out_and_the_next_page_is_extracted(monkeypatch, extractor):
    monkeypatch.setattr(extract_module, "extract_main_text", extractor)
    previous = signal.getsignal(signal.SIGALRM)
    step = ExtractHTML(timeout=0.2)
    start = time.perf_counter()
    out = list(step.run([html("slow", "<html>hang spin</html>"), html("ok", "<html>fine</html>")]))
    assert time.perf_counter() - start < 5
    assert [d.id for d in out] == ["ok"] and out[0].text == "extracted"
    assert step.stats.dropped == {"extract:timeout": 1}
    # The timer is disarmed and the process's own SIGALRM handler is back.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is previous


def test_deadline_in_a_thread_that_is_not_the_main_one():
    # SIGALRM reaches only the main thread; elsewhere the page runs in a daemon thread that is waited for no longer.
    release = threading.Event()
    results = []

    def work():
        try:
            run_with_deadline(lambda: release.wait(30) and "late", 0.2)
        except ExtractionTimeout as e:
            results.append(str(e))
        results.append(run_with_deadline(lambda: "on time", 0.2))
        try:
            run_with_deadline(lambda: str(1 / 0), 0.2)
        except ZeroDivisionError:  # the extractor's own error reaches the step, which counts it as extract:error
            results.append("error passed on")

    thread = threading.Thread(target=work)
    start = time.perf_counter()
    thread.start()
    thread.join(10)
    release.set()  # let the abandoned extraction finish
    assert results == ["extraction ran past 0.2 s", "on time", "error passed on"]
    assert time.perf_counter() - start < 5


def _apply_in_worker(step_bytes: bytes) -> tuple[list[str], dict]:
    step = pickle.loads(step_bytes)
    out = list(step.run([html("slow", "<html>hang</html>"), html("ok", "<html>fine</html>")]))
    return [d.text for d in out], dict(step.stats.dropped)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork to inherit the patch")
def test_the_step_pickles_and_times_out_in_a_worker_process(monkeypatch):
    monkeypatch.setattr(extract_module, "extract_main_text", sleeper)  # inherited by the forked worker
    step = ExtractHTML(timeout=0.2, favor_precision=False)
    copy = pickle.loads(pickle.dumps(step))
    assert (copy.timeout, copy.favor_precision, copy.stats.name) == (0.2, False, "extract")
    with multiprocessing.get_context("fork").Pool(1) as pool:
        texts, dropped = pool.apply(_apply_in_worker, (pickle.dumps(step),))
    assert texts == ["extracted"] and dropped == {"extract:timeout": 1}


def test_timeout_must_not_be_negative():
    with pytest.raises(ValueError, match="timeout must be 0 .* got -1"):
        ExtractHTML(timeout=-1)
    assert run_with_deadline(lambda: "no deadline", 0) == "no deadline"
