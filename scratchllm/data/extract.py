"""HTML to the text worth training on, with a deadline per page.

A web page is mostly not its content: navigation, headers, footers, cookie banners, share buttons, related links.
``ExtractHTML`` keeps the main text with trafilatura (Barbaresi, ACL 2021 demo), which scores the page's blocks and
drops the boilerplate; FineWeb (Penedo et al. 2024, arXiv:2406.17557) compared extractors and found trafilatura on
Common Crawl's raw HTML (WARC) better for the trained model than the text Common Crawl extracts itself (WET). Only
documents flagged ``meta["format"] == "html"`` (by the ``files`` and ``warc`` readers) are touched; the rest pass
through unchanged, so the step can sit in any pipeline.

A few pages in a crawl of billions make any extractor crawl (deep nesting, giant tables, pathological markup), and
one of them must not stall a worker. So each page runs under a deadline, and a page that misses it is dropped with
the reason ``extract:timeout``:

- in the main thread of a process (the pipeline's worker processes, or a single-process run) the deadline is a real
  interval timer, ``signal.setitimer(ITIMER_REAL)``: when it fires, SIGALRM's handler raises ExtractionTimeout in
  the middle of the extraction, the stack unwinds and the worker goes on with the next page. Python runs signal
  handlers between bytecodes, so a single C call (one lxml parse) finishes before the handler runs; trafilatura's
  slow paths are Python loops over the tree, which the timer interrupts.
- elsewhere (a thread other than the main one, or Windows, where there is no SIGALRM) the page is extracted in a
  daemon thread that the step waits for at most ``timeout`` seconds. Python cannot kill a thread, so a page that
  hangs there keeps a thread busy in the background; the pipeline goes on, which is what the deadline is for.

The other outcomes are ``extract:empty`` (trafilatura found no main text: a page of links, a login form) and
``extract:error`` (the HTML broke the parser); both are counted with examples in the step's stats.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trafilatura

from scratchllm.data.document import Document
from scratchllm.data.step import Mapper


class ExtractionTimeout(Exception):
    """The extraction of one page ran past its deadline."""


def extract_main_text(html: str, favor_precision: bool = True) -> str | None:
    """The main text of an HTML page, or None when trafilatura finds none.

    Comments are left out and tables kept. ``favor_precision`` drops borderline blocks (FineWeb's choice: a little
    lost text costs less than boilerplate learned a billion times). trafilatura's cross-page deduplication stays off:
    its cache would make a page's text depend on which pages came before it, so on the order and the sharding.
    """
    return trafilatura.extract(
        html,
        favor_precision=favor_precision,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
        output_format="txt",
    )


class ExtractHTML(Mapper):
    """Replace each HTML document's text by its main text; drop it with a reason when there is none or it times out.

    ``timeout`` is seconds per page (0 disables the deadline). The step holds only settings and stats, so it pickles
    to worker processes.
    """

    name = "extract"

    def __init__(self, timeout: float = 5.0, favor_precision: bool = True) -> None:
        super().__init__()
        if timeout < 0:
            raise ValueError(f"timeout must be 0 (none) or a positive number of seconds; got {timeout}")
        self.timeout = timeout
        self.favor_precision = favor_precision

    def apply(self, doc: Document) -> Document | str:
        if doc.meta.get("format") != "html":
            self.stats.counters["not_html"] += 1
            return doc
        try:
            text = run_with_deadline(lambda: extract_main_text(doc.text, self.favor_precision), self.timeout)
        except ExtractionTimeout:
            return "extract:timeout"
        except Exception:  # lxml and trafilatura raise many kinds on broken markup: the page is lost, not the run
            return "extract:error"
        if not text or not text.strip():
            return "extract:empty"
        return Document(doc.id, text, doc.source, {**doc.meta, "format": "text", "extractor": "trafilatura"})


def run_with_deadline(fn: Callable[[], str | None], timeout: float) -> str | None:
    """``fn()``, or ExtractionTimeout once it has run ``timeout`` seconds (see the module docstring for how)."""
    if timeout == 0:
        return fn()
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        with _alarm(timeout):
            return fn()
    return _in_thread(fn, timeout)


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise ExtractionTimeout(f"extraction ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        # Disarm first; the nested finally restores the previous handler even if the alarm fires in between.
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)


def _in_thread(fn: Callable[[], str | None], timeout: float) -> str | None:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["text"] = fn()
        except Exception as e:
            outcome["error"] = e

    # A daemon thread, so that one still stuck in a page does not keep the interpreter from exiting.
    worker = threading.Thread(target=target, name="scratchllm-extract", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ExtractionTimeout(f"extraction ran past {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["text"]
