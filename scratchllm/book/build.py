"""``scratchllm book``: the manual in ``docs/`` built into an HTML site and a PDF.

The steps, in order:

1. find the chapters (``docs/NN-*.md``, then ``docs/appendix-*.md``) and the experiments their figures, tables and
   numbers name (``directives.references``);
2. bring those experiments' results up to date (``cache.ensure``): a result is rerun only when the code it depends
   on or its arguments changed; quick mode by default, full size with ``full=True``;
3. expand the directives (``directives.expand``): listings pulled from the source, tables and numbers from the
   results; anything unresolved stops the build with one line;
4. render: ``build/book/html/`` (``html.HtmlSite``) and ``build/book/scratchllm.pdf`` (``typst_markup`` + the
   ``template.typ`` preamble, compiled by the typst compiler that the ``typst`` package ships).

Figures are numbered per chapter (Figure 1.1, ..., Figure A.1) in both outputs.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .cache import ensure
from .directives import Chapter, Numbers, expand, references
from .experiments.registry import EXPERIMENTS
from .html import HtmlSite, heading_texts, parser
from .source import BookError
from .typst_markup import TypstWriter, label, string

TITLE = "scratchllm"
SUBTITLE = "A large language model built from scratch in Python and PyTorch: the manual"
TEMPLATE = Path(__file__).with_name("template.typ")


@dataclass
class BuildResult:
    html: Path | None = None
    pdf: Path | None = None
    chapters: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # experiments whose results were used although out of date


def chapter_files(docs: Path) -> list[Path]:
    numbered = sorted(p for p in docs.glob("*.md") if re.match(r"\d\d-", p.name))
    return numbered + sorted(docs.glob("appendix-*.md"))


def chapter_number(title: str, fallback: int) -> str:
    """'1' for 'Chapter 1. Foundations', 'A' for 'Appendix A. ...'."""
    m = re.match(r"(?:Chapter|Appendix)\s+(\w+)", title)
    return m.group(1) if m else str(fallback)


def build(
    root: Path, out: Path, full: bool = False, run: bool = True, force: tuple[str, ...] = (), html: bool = True,
    pdf: bool = True, log=print,
) -> BuildResult:  # fmt: skip
    """Build the manual under ``out``; raises ``BookError`` on any unresolved reference."""
    root = root.resolve()
    docs, figures = root / "docs", root / "docs" / "figures"
    files = chapter_files(docs)
    if not files:
        raise BookError(f"no chapters in {docs}")
    names: set[str] = set()
    for path in files:
        for name in references(path.read_text(encoding="utf-8")):
            if name not in EXPERIMENTS:
                raise BookError(f"{path.relative_to(root)}: {name} is not an experiment of the registry "
                                f"(known: {', '.join(EXPERIMENTS)})")  # fmt: skip
            names.add(name)
    unknown = [n for n in force if n not in EXPERIMENTS]
    if unknown:
        raise BookError(f"--force {unknown[0]}: not an experiment (known: {', '.join(EXPERIMENTS)})")
    start = time.perf_counter()
    statuses = ensure(root, figures, out / "work", sorted(names | set(force)), full, run, force, log)
    if run and time.perf_counter() - start >= 1:  # something ran: the total, next to each experiment's own time
        log(f"book: experiments done in {time.perf_counter() - start:.0f} s in all")
    result = BuildResult()
    for st in statuses:
        if not st.fresh:
            result.stale.append(st.name)
            log(f"book: warning: using the results of {st.name} as they are, out of date ({st.why})")

    numbers = Numbers(figures)
    chapters: list[Chapter] = [expand(path, root, figures, numbers) for path in files]
    md = parser()
    parsed = []
    for k, ch in enumerate(chapters, start=1):
        tokens = md.parse(ch.text)
        heads = heading_texts(tokens)
        title = heads[0][1] if heads and heads[0][0] == 1 else ch.path.stem
        num = chapter_number(title, k)
        fig_numbers = {src: f"{num}.{i}" for i, src in enumerate(dict.fromkeys(ch.figures), start=1)}
        parsed.append((ch.path.stem, title, ch.text, fig_numbers))
        result.chapters.append(title)

    if html:
        site = HtmlSite(root, docs, out / "html")
        # each output parses afresh: the HTML renderer rewrites tokens in place
        result.html = site.write([(s, t, md.parse(text), n) for s, t, text, n in parsed], TITLE)
        site.copy_figures(sorted({f for ch in chapters for f in ch.figures}))
        log(f"book: wrote {result.html}")
    if pdf:
        result.pdf = _pdf(root, docs, out, [(s, t, md.parse(text), n) for s, t, text, n in parsed], chapters)
        log(f"book: wrote {result.pdf}")
    return result


def _pdf(root: Path, docs: Path, out: Path, parsed, chapters: list[Chapter]) -> Path:
    import typst

    work = out / "typst"
    shutil.rmtree(work, ignore_errors=True)
    (work / "figures").mkdir(parents=True)
    for rel in sorted({f for ch in chapters for f in ch.figures}):
        shutil.copyfile(docs / rel, work / "figures" / Path(rel).name)

    labels = set()
    for stem, _, tokens, _ in parsed:
        labels.add(stem)
        labels.update(label(stem, hid) for _, _, hid in heading_texts(tokens))

    parts = [TEMPLATE.read_text(encoding="utf-8")]
    for stem, _, tokens, fig_numbers in parsed:

        def link(href: str, stem=stem) -> str:
            if "://" in href or href.startswith("mailto:"):
                return string(href)
            path, _, anchor = href.partition("#")
            target_stem = stem if not path else Path(path).stem
            target = (docs / path).resolve() if path else None
            if target is None or (target.parent == docs.resolve() and target.suffix == ".md"):
                lbl = label(target_stem, anchor) if anchor else target_stem
                if lbl not in labels:
                    raise BookError(f"docs/{stem}.md: the link {href} points at no chapter or section")
                return f"<{lbl}>"
            return string(str(Path("../..") / target.relative_to(root)) if target.is_relative_to(root) else href)

        writer = TypstWriter(stem, link, fig_numbers, lambda src: f"figures/{Path(src).name}")
        parts.append(f"\n// ---- docs/{stem}.md\n\n" + writer.chapter(tokens))
    main = work / "main.typ"
    main.write_text("".join(parts), encoding="utf-8")
    pdf_path = out / "scratchllm.pdf"
    inputs = {"title": TITLE, "subtitle": SUBTITLE, "date": date.today().isoformat()}
    try:
        typst.compile(str(main), output=str(pdf_path), root=str(work), ignore_system_fonts=True, sys_inputs=inputs)
    except typst.TypstError as exc:
        raise BookError(f"typst could not compile {main}: {str(exc).splitlines()[0]}") from None
    return pdf_path
