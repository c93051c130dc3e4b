"""The book build: the whole manual builds from the committed experiment results (no experiment runs here), the PDF
holds the chapters, listings are the source's current lines, no code block copies the package, and a broken
reference fails the build with one line and exit status 2."""

from __future__ import annotations

import ast
import inspect
import json
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("typst")
pypdf = pytest.importorskip("pypdf")

from scratchllm.book.build import build, chapter_files  # noqa: E402
from scratchllm.book.cache import code_key, ensure, read_manifest  # noqa: E402
from scratchllm.book.directives import Numbers, expand  # noqa: E402
from scratchllm.book.experiments.registry import Experiment  # noqa: E402
from scratchllm.book.latex_math import to_typst  # noqa: E402
from scratchllm.book.source import BookError, find_symbol, parse_listing, pasted_source, source_windows  # noqa: E402
from scratchllm.cli.main import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    start = time.perf_counter()
    result = build(ROOT, out, run=False, log=lambda msg: None)
    return result, out, time.perf_counter() - start


def test_build_writes_site_and_pdf(built):
    result, out, seconds = built
    assert result.pdf.is_file() and (out / "html" / "index.html").is_file()
    for doc in chapter_files(DOCS):
        assert (out / "html" / f"{doc.stem}.html").is_file()
    assert seconds < 90


def test_pdf_has_the_chapter_titles(built):
    result, _, _ = built
    reader = pypdf.PdfReader(result.pdf)
    # the PDF's bookmarks say where each chapter starts; only those pages are read (text extraction is slow)
    starts = {
        item.title: reader.get_destination_page_number(item) for item in reader.outline if not isinstance(item, list)
    }
    for doc in sorted(DOCS.glob("0[1-5]-*.md")):
        title = doc.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ")  # the chapter's own first line
        assert title in starts, f"no bookmark for {title}"
        text = re.sub(r"\s+", " ", reader.pages[starts[title]].extract_text())
        assert title in text, title


def test_every_figure_is_in_the_site(built):
    _, out, _ = built
    for page in (out / "html").glob("*.html"):
        for src in re.findall(r'<img src="([^"]+)"', page.read_text(encoding="utf-8")):
            assert (out / "html" / src).is_file(), f"{page.name} shows {src}, which was not copied"
    assert any((out / "html" / "figures").glob("*.png"))


def test_every_listing_is_the_current_source():
    count = 0
    for doc in chapter_files(DOCS):
        for line in doc.read_text(encoding="utf-8").splitlines():
            if not line.startswith("> Listing:"):
                continue
            file, symbol, _ = parse_listing(line)
            listing = find_symbol(ROOT, file, symbol)
            lines = (ROOT / file).read_text(encoding="utf-8").splitlines()
            # oracle: the file's own lines at the reported numbers, and the name defined on one of them
            span = lines[listing.first_line - 1 : listing.last_line]
            assert [s.strip() for s in span] == [s.strip() for s in listing.code.splitlines()]
            name = symbol.split(".")[-1]
            assert any(re.match(rf"\s*(async def|def|class) {name}\b|\s*{name}\s*[:=]", s) for s in span)
            count += 1
    assert count >= 10


def test_no_code_block_pastes_the_package():
    windows = source_windows(ROOT)
    for doc in chapter_files(DOCS):
        assert pasted_source(doc.read_text(encoding="utf-8"), windows) == [], doc.name


def test_a_pasted_function_is_caught():
    from scratchllm.data import minhash

    pasted = "Some text.\n\n```python\n" + inspect.getsource(minhash.s_curve) + "```\n"
    hits = pasted_source(pasted, source_windows(ROOT))
    assert hits and hits[0][1].startswith("scratchllm/data/minhash.py:")


def _tmp_repo(tmp_path: Path, chapter: str) -> Path:
    (tmp_path / "scratchllm").symlink_to(ROOT / "scratchllm")
    figures = tmp_path / "docs" / "figures"
    figures.mkdir(parents=True)
    (figures / "positions.json").write_text((DOCS / "figures" / "positions.json").read_text())
    (tmp_path / "docs" / "01-test.md").write_text(chapter)
    return tmp_path


@pytest.mark.parametrize(
    "line, message",
    [
        ("> Listing: [`scratchllm/nowhere.py` · `f`](../scratchllm/nowhere.py)", "nowhere.py does not exist"),
        ("> Listing: [`scratchllm/fileio.py` · `nothing_here`](../scratchllm/fileio.py)", "nothing_here"),
        ("The loss was {{ positions.results.rope.no_such_key:.3f }}.", "no_such_key"),
        ("A figure: ![x](figures/missing.png)", "missing.png"),
        (
            "  > Listing: [`scratchllm/fileio.py` · `atomic_write_text`](../scratchllm/fileio.py)",  # in a list item
            "a directive must start its line",
        ),
    ],
)
def test_broken_reference_fails_with_one_line(tmp_path, capsys, line, message):
    repo = _tmp_repo(tmp_path, f"# Chapter 1. Test\n\nText.\n\n{line}\n")
    code = main(["book", "--root", str(repo), "--out", str(tmp_path / "out"), "--no-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err and "01-test.md:5" in err


def test_numbers_and_tables(tmp_path):
    figures = tmp_path / "docs" / "figures"
    figures.mkdir(parents=True)
    data = {"steps": 800, "results": [{"name": "rope", "loss": 3.14159}, {"name": "none", "loss": 2.5}]}
    (figures / "exp.json").write_text(json.dumps(data))
    (figures / "exp.md").write_text("| a |\n|---|\n| 1 |\n")
    doc = tmp_path / "docs" / "01-x.md"
    doc.write_text(
        "{{ exp.steps:, }} steps, loss {{ exp.results.rope.loss:.2f }}, {{ exp.results[1].loss }}.\n\n"
        "> Table: [`exp`](figures/exp.md)\n\n```\n{{ exp.steps }} stays in code\n```\n"
    )
    text = expand(doc, tmp_path, figures, Numbers(figures)).text
    assert text.splitlines()[0] == "800 steps, loss 3.14, 2.5."
    assert "| a |\n|---|\n| 1 |" in text
    assert "{{ exp.steps }} stays in code" in text


@pytest.mark.parametrize(
    "latex, typst_math",
    [
        (r"\frac{a}{b}", "frac(a, b)"),
        (r"x_{<t}", "x_(<t)"),
        (r"QK^\top", "Q K^(top)"),
        (r"\mathcal{L} = \log V", "cal(L)=log V"),
        (r"z \in \mathbb{R}^V", "z in RR^V"),
        (r"\sqrt{d_k}", "sqrt(d_k)"),
        (r"\text{pass@}k", '"pass@"k'),
        (r"a/b", r"a\/b"),
    ],
)
def test_latex_to_typst(latex, typst_math):
    assert to_typst(latex) == typst_math


def test_all_formulas_of_the_docs_compile(tmp_path):
    import typst

    formulas = []
    for doc in chapter_files(DOCS):
        text = re.sub(r"```.*?```|`[^`\n]*`", "", doc.read_text(encoding="utf-8"), flags=re.S)
        formulas += [m[0] or m[1] for m in re.findall(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", text, flags=re.S)]
    source = tmp_path / "math.typ"
    source.write_text("\n\n".join(f"$ {to_typst(f)} $" for f in formulas))
    typst.compile(str(source), ignore_system_fonts=True)  # raises on any invalid formula


def test_unknown_latex_command_is_an_error():
    with pytest.raises(BookError, match="unknown command"):
        to_typst(r"\weird{x}")


def _fake_package(root: Path) -> None:
    pkg = root / "scratchllm"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "exp.py").write_text("from .sub import helper\nimport scratchllm.other\n")
    (pkg / "sub" / "helper.py").write_text("X = 1\n")
    (pkg / "other.py").write_text("Y = 1\n")
    (pkg / "unrelated.py").write_text("Z = 1\n")


def test_cache_key_follows_the_imports(tmp_path):
    _fake_package(tmp_path)
    exp = Experiment("exp", "scratchllm.exp", ("exp.json",), lambda *a: None)
    key = code_key(tmp_path, exp)
    (tmp_path / "scratchllm" / "unrelated.py").write_text("Z = 2\n")
    assert code_key(tmp_path, exp) == key
    (tmp_path / "scratchllm" / "sub" / "helper.py").write_text("X = 2\n")
    changed = code_key(tmp_path, exp)
    assert changed != key
    (tmp_path / "scratchllm" / "other.py").write_text("Y = 2\n")
    assert code_key(tmp_path, exp) != changed


def _set_entry(figures: Path, name: str) -> None:
    from scratchllm.book.cache import update_manifest

    update_manifest(figures, {name: {"key": name}})


def test_concurrent_manifest_updates_keep_every_entry(tmp_path):
    """Builds running at once each write their own experiments' entries; none erases another's."""
    import multiprocessing

    names = [f"exp{i}" for i in range(48)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_set_entry, [(tmp_path, n) for n in names])
    assert sorted(read_manifest(tmp_path)) == sorted(names)


def test_a_needed_experiment_reruns_only_when_its_scratch_output_is_gone(tmp_path, monkeypatch):
    """`eval_tiny` reads the demo's run directory, not its figures: a fresh demo result is reused only while the
    work directory still holds the run that made it."""
    import scratchllm.book.cache as cache

    runs: list[str] = []

    def runner(name):
        def run(kwargs, out, work):
            runs.append(name)
            (out / f"{name}.json").write_text("{}")

        return run

    module = "scratchllm.book.experiments.output"
    fakes = {"a": Experiment("a", module, ("a.json",), runner("a")),
             "b": Experiment("b", module, ("b.json",), runner("b"), needs=("a",))}  # fmt: skip
    monkeypatch.setattr(cache, "EXPERIMENTS", fakes)
    figures, work = tmp_path / "figures", tmp_path / "work"
    figures.mkdir()
    ensure(ROOT, figures, work, ["b"], log=lambda m: None)
    assert runs == ["a", "b"]
    ensure(ROOT, figures, work, ["b"], force=("b",), log=lambda m: None)
    assert runs == ["a", "b", "b"]  # a's result is fresh and its scratch output is still there
    (work / ".a.done").unlink()  # a new build directory, or a run of a that failed
    ensure(ROOT, figures, work, ["b"], force=("b",), log=lambda m: None)
    assert runs == ["a", "b", "b", "a", "b"]


def test_demo_experiment_is_keyed_by_the_demo_not_the_whole_cli():
    """The demo's cached result must not go stale when the book's or the server's code changes."""
    from scratchllm.book.cache import dependencies
    from scratchllm.book.experiments.registry import EXPERIMENTS

    files = {str(p.relative_to(ROOT)) for p in dependencies(ROOT, EXPERIMENTS["demo"].module)}
    assert {"scratchllm/cli/demo.py", "scratchllm/train/trainer.py", "scratchllm/finetune/sft.py"} <= files
    assert not {"scratchllm/cli/main.py", "scratchllm/book/build.py", "scratchllm/serve/server.py"} & files


@pytest.mark.slow
def test_quick_experiment_runs_once_then_is_cached(tmp_path):
    figures = tmp_path / "figures"
    log: list[str] = []
    ensure(ROOT, figures, tmp_path / "work", ["minhash_scurve"], log=log.append)
    assert any("running experiment minhash_scurve" in m for m in log)
    result = json.loads((figures / "minhash_scurve.json").read_text())
    assert result["pairs_per_level"] == 50 and (figures / "minhash_scurve.png").is_file()
    assert read_manifest(figures)["minhash_scurve"]["mode"] == "quick"
    log.clear()
    statuses = ensure(ROOT, figures, tmp_path / "work", ["minhash_scurve"], log=log.append)
    assert log == [] and statuses[0].fresh


def test_every_docs_directive_names_a_known_experiment():
    from scratchllm.book.directives import references
    from scratchllm.book.experiments.registry import EXPERIMENTS

    for doc in chapter_files(DOCS):
        assert references(doc.read_text(encoding="utf-8")) <= set(EXPERIMENTS), doc.name


def test_ast_listing_matches_inspect():
    """A second oracle for one listing: inspect.getsource of the imported function."""
    from scratchllm.data import minhash

    listing = find_symbol(ROOT, "scratchllm/data/minhash.py", "s_curve")
    assert listing.code == inspect.getsource(minhash.s_curve).rstrip("\n")
    assert ast.parse(listing.code)
