"""The generated command reference (``> Commands:``, scratchllm/book/commands.py): every subcommand of the real parser
gets a section, every option's help text renders exactly as ``--help`` prints it, the defaults are the ones argparse
itself fills in, and the summary's links land on the generated headings."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

pytest.importorskip("markdown_it")

from scratchllm.book.commands import reference  # noqa: E402
from scratchllm.book.directives import Numbers, expand  # noqa: E402
from scratchllm.book.html import heading_texts, parser  # noqa: E402
from scratchllm.book.source import BookError  # noqa: E402
from scratchllm.cli.main import build_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# DESIGN.md section 5, "Public interface": the subcommands users rely on.
PUBLIC = "data tokenizer tokenize train eval sft generate chat serve export plan book demo".split()


def all_parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``p``, found by walking argparse's subparser actions (written here, not taken from the
    module under test)."""
    found = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub, *all_parsers(sub)]
    return found


def plain(inline) -> str:
    """The text a reader sees in an inline token: text and code spans, markup dropped."""
    return "".join(c.content for c in inline.children if c.type in ("text", "code_inline"))


def tables(markdown: str) -> dict[str | None, list[list[str]]]:
    """{heading text: rows of the first table under it, each row its cells' visible text}; None: before any heading."""
    tokens = parser().parse(markdown)
    out: dict[str | None, list[list[str]]] = {}
    heading, rows = None, None
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            heading = plain(tokens[i + 1])
        elif tok.type == "table_open" and heading not in out:
            rows = out[heading] = []
        elif tok.type == "table_close":
            rows = None
        elif tok.type == "tr_open" and rows is not None:
            rows.append([])
        elif tok.type in ("th_open", "td_open") and rows is not None:
            rows[-1].append(plain(tokens[i + 1]))
    return out


@pytest.fixture(scope="module")
def cli():
    return build_parser()


@pytest.fixture(scope="module")
def markdown(cli):
    return "\n".join(reference(cli, "scratchllm", ["# Appendix B. Commands", "## B.1 Conventions"]))


@pytest.fixture(scope="module")
def by_heading(markdown):
    # heading text without the section number: 'B.7 scratchllm train' -> 'scratchllm train'
    return {h and re.sub(r"^B\.\d+ ", "", h): rows for h, rows in tables(markdown).items()}


def test_every_subcommand_has_a_section(cli, markdown):
    headings = {re.sub(r"^B\.\d+ ", "", text) for _, text, _ in heading_texts(parser().parse(markdown))}
    progs = {p.prog for p in all_parsers(cli)}
    assert progs and progs <= headings, progs - headings
    assert {f"scratchllm {name}" for name in PUBLIC} <= headings
    assert "scratchllm eval mmlu" in headings and "scratchllm tokenizer train" in headings  # nested ones too


def test_help_texts_are_verbatim(cli, by_heading):
    checked = 0
    for p in all_parsers(cli):
        if any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            continue
        rows = {row[0]: row for row in by_heading[p.prog][1:]}
        # the oracle: argparse's own --help output, whitespace-normalized (its wrapping is not part of the text)
        help_page = " ".join(p.format_help().split())
        for action in p._actions:
            if isinstance(action, argparse._HelpAction) or not action.help:
                continue
            name = action.option_strings[0] if action.option_strings else action.metavar or action.dest
            row = next(r for invocation, r in rows.items() if invocation.split()[0] == name)
            if "%(" not in action.help:  # no argparse substitution: the text itself, code spans shown as code
                assert row[2] == action.help.replace("%%", "%").replace("`", ""), (p.prog, name)
            assert " ".join(row[2].split()) in help_page.replace("`", ""), (p.prog, name)
            checked += 1
    assert checked > 100


def test_a_percent_sign_comes_out_once(by_heading):
    mmlu = next(row for row in by_heading[None] if row[0] == "scratchllm eval mmlu")  # the summary table
    assert mmlu[1] == "MMLU accuracy by log-likelihood, per category, with 95% intervals"


@pytest.mark.parametrize("argv", [["plan"], ["serve", "--checkpoint", "x"], ["demo"], ["book"]])
def test_defaults_are_what_argparse_fills_in(cli, by_heading, argv):
    parsed = vars(cli.parse_args(argv))
    rows = by_heading[f"scratchllm {argv[0]}"][1:]
    sub = next(p for p in all_parsers(cli) if p.prog == f"scratchllm {argv[0]}")
    dests = {a.option_strings[0]: a.dest for a in sub._actions if a.option_strings and a.option_strings[0] not in argv}
    for row in rows:
        dest = dests.get(row[0].split()[0])
        value = parsed.get(dest)
        if dest is None or value is None or value is False or value == []:  # 0 is a default, False is not
            assert row[1] in ("", "required"), row
        elif isinstance(value, float):
            assert float(row[1]) == value, row
        else:
            assert row[1] == str(value), row


def test_markdown_specials_in_help_render_as_written():
    p = argparse.ArgumentParser(prog="tool")
    subs = p.add_subparsers()
    cmd = subs.add_parser("cmd", help="a command")
    nasty = "a *b* _c_ $x$ [d](e) <f> a|b \\n #g 50%% `code|x`"
    cmd.add_argument("--x", metavar="A|B", help=nasty)
    rows = tables("\n".join(reference(p, "tool", [])))["tool cmd"]
    assert rows[1] == ["--x A|B", "", "a *b* _c_ $x$ [d](e) <f> a|b \\n #g 50% code|x"]


def _chapter(tmp_path: Path, text: str) -> Path:
    doc = tmp_path / "docs" / "appendix-x.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "scratchllm").mkdir(exist_ok=True)
    (tmp_path / "scratchllm" / "cli.py").write_text("")
    doc.write_text(text)
    return doc


def test_directive_numbers_sections_and_links_resolve(tmp_path):
    line = "> Commands: [`scratchllm`](../scratchllm/cli.py)"
    doc = _chapter(tmp_path, f"# Appendix B. Commands\n\n## B.1 First\n\n{line}\n")
    text = expand(doc, tmp_path, tmp_path / "figures", Numbers(tmp_path / "figures")).text
    heads = heading_texts(parser().parse(text))
    assert heads[2][1] == "B.2 scratchllm tokenizer" and heads[2][0] == 2
    ids = {hid for _, _, hid in heads}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) == len(all_parsers(build_parser())) and set(links) <= ids


def test_directive_for_one_command(tmp_path):
    doc = _chapter(tmp_path, "# Chapter 9. X\n\n> Commands: [`scratchllm train`](../scratchllm/cli.py)\n")
    text = expand(doc, tmp_path, tmp_path / "figures", Numbers(tmp_path / "figures")).text
    heads = heading_texts(parser().parse(text))
    assert [h[1] for h in heads] == ["Chapter 9. X", "9.1 scratchllm train"]
    assert "| `--resume` |" in text


@pytest.mark.parametrize(
    "line, message",
    [
        ("> Commands: [`scratchllm nosuch`](../scratchllm/cli.py)", "no subcommand 'nosuch'"),
        ("> Commands: [`scratchllm`](../scratchllm/missing.py)", "points at no file"),
        ("> Commands: scratchllm", "malformed commands line"),
    ],
)
def test_broken_directive_names_the_line(tmp_path, line, message):
    doc = _chapter(tmp_path, f"# Appendix B. Commands\n\n{line}\n")
    with pytest.raises(BookError, match=message) as err:
        expand(doc, tmp_path, tmp_path / "figures", Numbers(tmp_path / "figures"))
    assert "docs/appendix-x.md:3" in str(err.value)
