"""`scratchllm book`: build the manual (thin call into scratchllm.book.build).

scratchllm book                 # quick-mode experiments where stale, then build/book/html/ and scratchllm.pdf
scratchllm book --full          # experiments at full size
scratchllm book --no-run        # never run an experiment: use the results in docs/figures as they are
scratchllm book --force positions
"""

from __future__ import annotations

from pathlib import Path

from .common import UsageError


def cmd_book(args) -> int:
    try:
        import markdown_it  # noqa: F401  (the book extra: markdown-it-py, pygments, typst)
        import typst  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"the book build needs its extra ({exc.name} is missing): pip install -e '.[book]', "
                         "or run make book, which installs it") from None  # fmt: skip
    from ..book.build import build
    from ..book.cache import record
    from ..book.experiments.registry import EXPERIMENTS

    root = Path(args.root)
    if args.record:
        names = list(EXPERIMENTS) if args.record == ["all"] else args.record
        for name in record(root.resolve(), root.resolve() / "docs" / "figures", names, args.full):
            print(f"recorded {name} as made by the current code")
        return 0
    result = build(root, Path(args.out), full=args.full, run=not args.no_run, force=tuple(args.force),
                   html=not args.pdf_only, pdf=not args.html_only)  # fmt: skip
    print(f"built {len(result.chapters)} chapters: {result.html or ''} {result.pdf or ''}".rstrip())
    return 0


def add_parsers(stages) -> None:
    p = stages.add_parser("book", help="build the manual into HTML and PDF", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/book", help="output directory (default build/book)")
    p.add_argument("--root", default=".", help="the repository root with docs/ and scratchllm/ (default .)")
    p.add_argument("--full", action="store_true", help="run stale experiments at full size instead of quick mode")
    p.add_argument("--no-run", action="store_true", help="run no experiment; out-of-date results are used as they are")
    p.add_argument("--force", nargs="+", default=[], metavar="NAME", help="rerun these experiments even if fresh")
    p.add_argument("--html-only", action="store_true", help="skip the PDF")
    p.add_argument("--pdf-only", action="store_true", help="skip the HTML site")
    p.add_argument(
        "--record", nargs="+", metavar="NAME",
        help="mark the results now in docs/figures as made by the current code (with the quick arguments, or the "
        "full ones with --full) without running them; 'all' for every experiment. Only for results you know "
        "came from this code.",
    )  # fmt: skip
    p.set_defaults(func=cmd_book)
