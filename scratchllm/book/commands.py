"""The command reference, generated: the ``> Commands:`` directive expanded from the real argparse parser.

A chapter writes one line, which on GitHub reads as a link to the entry point:

    > Commands: [`scratchllm`](../scratchllm/cli/main.py)

and the build replaces it with a section per subcommand (nested ones included): what it does, its usage line, and a
table of its arguments with their help text and their defaults, all read from ``build_parser()`` at build time. A
flag added, renamed or re-documented in the CLI is therefore in the next build of the manual; the reference cannot
drift from ``--help``. ``> Commands: [`scratchllm train`](...)`` gives the reference of one command alone.

Help texts go through argparse's own expansion (``%(default)s``, ``%%``), as ``--help`` prints them, and are escaped
only as much as Markdown needs, so they read verbatim in the HTML and the PDF. The idea is that of the
``sphinx-argparse`` and ``mkdocs-click`` extensions: documentation rendered from the parser, not copied from it. It
reads argparse's internals (``_actions``, ``_SubParsersAction``, the formatter's ``_expand_help``), which are stable
across the Python versions this project supports and are what ``--help`` itself uses.
"""

from __future__ import annotations

import argparse
import re

from .source import BookError

COMMANDS = re.compile(r"^> Commands: \[`(?P<command>[^`]+)`\]\((?P<link>[^)]+)\)\s*$")
USAGE_WIDTH = 96  # the usage line is wrapped as a terminal this wide would show it (fits the PDF's code blocks)
NUMBERED = re.compile(r"^## (?P<prefix>[A-Z0-9]+)\.(?P<n>\d+) ")
CHAPTER = re.compile(r"^# (?:Chapter|Appendix) (?P<prefix>[A-Z0-9]+)\.")


def parse_commands(line: str) -> tuple[str, str] | None:
    """(command, link) of a ``> Commands:`` line, or None for any other line."""
    m = COMMANDS.match(line)
    return (m["command"], m["link"]) if m else None


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each direct subcommand, in the order the CLI registers them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: _expand(parser, c) for c in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def walk(parser: argparse.ArgumentParser, depth: int = 0):
    """Every subcommand below ``parser``, depth first: (depth, one-line help, parser); ``parser.prog`` names it."""
    for _, help_text, sub in subcommands(parser):
        yield depth, help_text, sub
        yield from walk(sub, depth + 1)


def find(parser: argparse.ArgumentParser, command: str) -> tuple[argparse.ArgumentParser, str]:
    """The parser of ``command`` ('scratchllm', 'scratchllm eval mmlu') and its one-line help, or ``BookError``
    naming the subcommands that exist."""
    words, help_text = command.split(), ""
    if not words or words[0] != parser.prog:
        raise BookError(f"commands {command!r}: the program is {parser.prog!r}")
    for word in words[1:]:
        subs = {name: (sub, text) for name, text, sub in subcommands(parser)}
        if word not in subs:
            raise BookError(f"commands {command!r}: {parser.prog} has no subcommand {word!r} "
                            f"(there are: {', '.join(subs) or 'none'})")  # fmt: skip
        parser, help_text = subs[word]
    return parser, help_text


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    # A fixed width, not the terminal's, so that the build is the same on every machine.
    return parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)


def _expand(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An action's help as ``--help`` prints it (``%(default)s`` and ``%%`` expanded), before line wrapping."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return _formatter(parser)._expand_help(action)  # argparse's own expansion, so the text is --help's


def usage(parser: argparse.ArgumentParser) -> str:
    fmt = _formatter(parser)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return fmt.format_help().strip()


def invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """'--vocab-size VOCAB_SIZE', '--format {hf,tiktoken}', 'key=value': the argument as --help lists it."""
    return _formatter(parser)._format_action_invocation(action)


def default(action: argparse.Action) -> str:
    """The parser's own default, or 'required'; empty where the parser has none (a config file may supply one)."""
    if action.required and action.option_strings:
        return "required"
    value = action.default
    if value is None or value is False or value == [] or value == argparse.SUPPRESS:
        return ""
    if isinstance(value, float) and float(f"{value:g}") == value:
        return f"{value:g}"
    return str(value)


def escape(text: str) -> str:
    """Markdown for a table cell that renders as ``text``: code spans kept (only their pipes escaped), and outside
    them the characters Markdown or the math plugin would interpret, backslashed."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        part.replace("|", "\\|") if k % 2 else re.sub(r"([\\`*_$\[\]<>|#])", r"\\\1", part)
        for k, part in enumerate(parts)
    )


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text.replace('|', chr(92) + '|')}{fence}"


def arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        value = default(action)
        shown = value if value in ("", "required") else _code(value)
        rows.append(f"| {_code(invocation(parser, action))} | {shown} | {escape(_expand(parser, action))} |")
    if not rows:
        return []
    return ["| argument | default | what it does |", "|---|---|---|", *rows]


def exclusive_groups(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for group in parser._mutually_exclusive_groups:
        names = ", ".join(_code(a.option_strings[-1]) for a in group._group_actions if a.option_strings)
        lines.append(f"{'Exactly' if group.required else 'At most'} one of {names}.")
    return lines


def section(parser: argparse.ArgumentParser, help_text: str, heading: str) -> list[str]:
    """One command: heading, what it does, usage, its subcommands or its arguments."""
    out = [heading, ""]
    if help_text:
        out += [escape(help_text[0].upper() + help_text[1:]) + ("" if help_text.endswith(".") else "."), ""]
    if parser.description:
        out += [escape(" ".join(parser.description.split())), ""]
    out += ["```text", usage(parser), "```", ""]
    subs = subcommands(parser)
    if subs:
        out += ["Subcommands: " + ", ".join(_code(name) for name, _, _ in subs) + ".", ""]
    table = arguments_table(parser)
    if table:
        out += [*table, ""]
    groups = exclusive_groups(parser)
    if groups:
        out += [" ".join(groups), ""]
    if parser.epilog:
        out += [escape(" ".join(parser.epilog.split())), ""]
    return out


def numbering(before: list[str]) -> tuple[str, int] | None:
    """Where the generated sections' numbers continue: after the last '## B.3 ...' heading above the directive, or
    at 1 under '# Appendix B. ...'; None when the chapter does not number its sections."""
    prefix, last = None, 0
    for line in before:
        if m := CHAPTER.match(line):
            prefix, last = m["prefix"], 0
        elif (m := NUMBERED.match(line)) and m["prefix"] == prefix:
            last = int(m["n"])
    return (prefix, last + 1) if prefix else None


def reference(parser: argparse.ArgumentParser, command: str, before: list[str]) -> list[str]:
    """The Markdown of ``command``'s reference: a summary table of every command under it (linked to its section),
    then a level-2 section per command, its subcommands as level-3 sections inside it."""
    from .html import slugify  # the renderers' heading ids (html.py needs the book extra, so only when used)

    root, root_help = find(parser, command)
    start = numbering(before)
    n = start[1] if start else 1
    entries = []  # (depth, help, parser, heading title)
    for depth, help_text, sub in walk(root) if subcommands(root) else [(0, root_help, root)]:
        title = f"`{sub.prog}`"
        if depth == 0 and start:
            title, n = f"{start[0]}.{n} {title}", n + 1
        entries.append((depth, help_text, sub, title))
    out = []
    if len(entries) > 1:
        seen: dict[str, int] = {}
        out += ["| command | what it does |", "|---|---|"]
        for _, help_text, sub, title in entries:
            anchor = slugify(title.replace("`", ""), seen)
            out.append(f"| [{_code(sub.prog)}](#{anchor}) | {escape(help_text)} |")
        out.append("")
    for depth, help_text, sub, title in entries:
        out += section(sub, help_text, f"{'#' * (2 + depth)} {title}")
    return out


def expand_commands(line: str, doc, root, before: list[str], where: str) -> list[str]:
    """The directive line ``line`` of chapter ``doc`` replaced by its reference; ``before``: the expanded lines above
    it (for the section numbers). Raises ``BookError`` naming ``where`` when the line does not resolve."""
    parsed = parse_commands(line)
    if not parsed:
        expected = "> Commands: [`scratchllm`](../scratchllm/cli/main.py)"
        raise BookError(f"{where}: malformed commands line (expected {expected})")
    command, link = parsed
    if "://" in link or not (doc.parent / link).resolve().is_file():
        raise BookError(f"{where}: the commands line's link {link} points at no file of the repository")
    # Imported here, not at the top of the module: nothing in the package imports `cli` (DESIGN.md section 3), and the
    # book sits on top of it only when a chapter asks for the reference. A top-level import would also be a cycle:
    # cli.common imports book.source for BookError.
    from ..cli.main import build_parser

    try:
        return reference(build_parser(), command, before)
    except BookError as exc:
        raise BookError(f"{where}: {exc}") from None
