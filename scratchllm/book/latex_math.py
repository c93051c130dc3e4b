"""LaTeX math, as the manual writes it between ``$...$`` and ``$$...$$``, translated into typst math for the PDF and
the HTML site.

typst has its own math syntax (``frac(a, b)``, ``x_(i j)``, ``RR``), so the book translates; the PDF and the HTML
site (``math_svg``: SVGs compiled by typst) typeset the same translation. This covers the subset of LaTeX the
chapters use: fractions, roots, binomials, sub- and superscripts, Greek letters and common symbols, ``\\text``/
``\\mathrm``/``\\mathbb``/``\\mathcal``, ``\\left``/``\\right``, spacing commands, and the ``cases`` and ``pmatrix``
environments. An unknown command raises ``BookError`` rather than printing garbage
(https://typst.app/docs/reference/math/ lists typst's side).
"""

from __future__ import annotations

import re

from .source import BookError

TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[A-Za-z]|\d+(?:\.\d+)?|\s+|.", re.S)

GREEK = set(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi psi "
    "omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)
SYMBOLS = {
    "cdot": "dot.op", "times": "times", "le": "<=", "leq": "<=", "ge": ">=", "geq": ">=", "ne": "!=", "neq": "!=",
    "in": "in", "notin": "in.not", "mid": "divides", "to": "arrow.r", "rightarrow": "arrow.r", "gets": "arrow.l",
    "leftarrow": "arrow.l", "Rightarrow": "arrow.r.double", "pm": "plus.minus", "approx": "approx", "sim": "tilde.op",
    "infty": "infinity", "dots": "dots", "ldots": "dots", "cdots": "dots.c", "top": "top", "nabla": "nabla",
    "partial": "partial", "sum": "sum", "prod": "product", "int": "integral", "propto": "prop", "equiv": "equiv",
    "ell": "ell", "circ": "circle.small", "oplus": "plus.circle", "otimes": "times.circle", "lfloor": "floor.l",
    "rfloor": "floor.r", "lceil": "ceil.l", "rceil": "ceil.r", "langle": "angle.l", "rangle": "angle.r",
    "cup": "union", "cap": "sect", "subset": "subset", "subseteq": "subset.eq", "forall": "forall",
    "exists": "exists", "neg": "not", "land": "and", "lor": "or", "setminus": "without", "emptyset": "emptyset",
    "varepsilon": "epsilon", "epsilon": "epsilon.alt", "vartheta": "theta.alt", "varphi": "phi", "phi": "phi.alt",
    "ll": "<<", "gg": ">>", "star": "star.op", "ast": "*",
}  # fmt: skip
OPERATORS = {"log", "ln", "exp", "max", "min", "sin", "cos", "tan", "lim", "sup", "inf", "arg", "det", "Pr", "mod"}
SPACES = {",": "thin", ";": "med", ":": "med", "!": "", " ": "space", "quad": "quad", "qquad": "wide"}
ESCAPED = {"{": "\\{", "}": "\\}", "%": "%", "_": "\\_", "&": "\\&", "#": "\\#", "$": "\\$", "|": "||"}
SPECIAL = {"/": "\\/", '"': '\\"', "#": "\\#", "$": "\\$", "@": "\\@", "~": " ", "\\": "\\\\"}
FONTS = {"mathbb": "bb", "mathcal": "cal", "mathbf": "bold", "mathit": "italic", "mathsf": "sans", "mathtt": "mono"}
ACCENTS = {"tilde": "tilde", "hat": "hat", "widehat": "hat", "bar": "macron", "overline": "overline",
           "vec": "arrow", "dot": "dot", "underline": "underline"}  # fmt: skip
DELIMS = {"(": "(", ")": ")", "[": "[", "]": "]", "\\{": "\\{", "\\}": "\\}", "|": "|", ".": "", "\\|": "||",
          "\\langle": "angle.l", "\\rangle": "angle.r"}  # fmt: skip
BIG = {"big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr"}


class _Parser:
    def __init__(self, latex: str):
        self.tokens = [t for t in TOKEN.findall(latex)]
        self.i = 0
        self.latex = latex

    def fail(self, what: str) -> BookError:
        return BookError(f"math ${self.latex.strip()}$: {what}")

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.fail("ends too early")
        self.i += 1
        return tok

    def skip_space(self) -> None:
        while (tok := self.peek()) is not None and tok.isspace():
            self.i += 1

    def group_raw(self) -> str:
        """The text of the next ``{...}`` group, unparsed (for \\text and \\begin)."""
        self.skip_space()
        if self.next() != "{":
            raise self.fail("expected {")
        depth, out = 1, []
        while True:
            tok = self.next()
            depth += (tok == "{") - (tok == "}")
            if depth == 0:
                return "".join(out)
            out.append(tok)

    def argument(self) -> str:
        """One argument: a {group} or a single token."""
        self.skip_space()
        if self.peek() == "{":
            self.next()
            return self.expr(stop={"}"}, closing="}")
        return self.atom(self.next())

    def expr(self, stop: set[str] = frozenset(), closing: str | None = None) -> str:
        out: list[str] = []
        while True:
            tok = self.peek()
            if tok is None:
                if closing:
                    raise self.fail(f"missing {closing}")
                break
            if tok in stop:
                if tok == closing:
                    self.next()
                break
            self.next()
            if tok in ("^", "_"):
                arg = self.argument()
                out.append(f"{tok}({arg})" if len(arg) > 1 or not arg.isalnum() else f"{tok}{arg}")
            else:
                out.append(self.atom(tok))
        return _join(out)

    def atom(self, tok: str) -> str:
        if tok.isspace():
            return ""
        if not tok.startswith("\\"):
            if tok == "{":  # a bare group only groups
                return self.expr(stop={"}"}, closing="}")
            if tok == "'":
                return "'"
            return SPECIAL.get(tok, tok)
        name = tok[1:]
        if name in GREEK:
            return name
        if name in SYMBOLS:
            return SYMBOLS[name]
        if name in OPERATORS:
            return name
        if name in SPACES:
            return SPACES[name]
        if name in ESCAPED:
            return ESCAPED[name]
        if name in ("frac", "tfrac", "dfrac", "binom"):
            a, b = self.argument(), self.argument()
            return f"{'binom' if name == 'binom' else 'frac'}({_arg(a)}, {_arg(b)})"
        if name == "sqrt":
            return f"sqrt({_arg(self.argument())})"
        if name in ("text", "textrm", "textit", "textbf", "operatorname", "mathrm"):
            raw = self.group_raw()
            quoted = '"' + raw.replace("\\", "").replace('"', '\\"') + '"'
            if name == "operatorname" or (name == "mathrm" and raw.isalpha() and len(raw) > 1):
                return f"op({quoted})"
            return f"upright({quoted})" if name == "mathrm" else quoted
        if name in FONTS:
            arg = self.argument()
            return "RR NN ZZ QQ CC".split()["RNZQC".index(arg)] if name == "mathbb" and arg in "RNZQC" else (
                f"{FONTS[name]}({arg})")  # fmt: skip
        if name in ACCENTS:
            return f"{ACCENTS[name]}({self.argument()})"
        if name == "left":
            opening = DELIMS.get(self._delim())
            inner = self.expr(stop={"\\right"})
            if self.next() != "\\right":
                raise self.fail("\\left without \\right")
            closing = DELIMS.get(self._delim())
            if opening is None or closing is None:
                raise self.fail("unknown delimiter")
            return f"lr({opening} {inner} {closing})"
        if name in BIG:
            delim = self._delim()
            return DELIMS.get(delim, SPECIAL.get(delim, delim))
        if name == "begin":
            return self.environment(self.group_raw())
        if name == "\\":
            return "\\ "
        raise self.fail(f"unknown command {tok} (teach scratchllm/book/latex_math.py)")

    def _delim(self) -> str:
        self.skip_space()
        return self.next()

    def environment(self, env: str) -> str:
        rows, cells, current = [], [], []
        while True:
            self.skip_space()
            tok = self.peek()
            if tok is None:
                raise self.fail(f"\\begin{{{env}}} without \\end")
            if tok in ("&", "\\\\", "\\end"):
                self.next()
                cells.append(_join(current))
                current = []
                if tok != "&":
                    rows.append(cells)
                    cells = []
                if tok == "\\end":
                    self.group_raw()
                    break
                continue
            current.append(self.expr(stop={"&", "\\\\", "\\end"}))
        rows = [r for r in rows if any(c.strip() for c in r)]
        if env == "cases":
            return "cases(" + ", ".join(" &quad ".join(_arg(c) for c in r) for r in rows) + ")"
        delim = {"pmatrix": '"("', "bmatrix": '"["', "vmatrix": '"|"', "matrix": "#none"}.get(env)
        if delim is None:
            raise self.fail(f"unknown environment {env}")
        return f"mat(delim: {delim}, " + "; ".join(", ".join(_arg(c) for c in r) for r in rows) + ")"


def _join(parts: list[str]) -> str:
    """Join translated atoms; a space between two alphanumeric atoms keeps ``QK`` from reading as one name."""
    out = ""
    for p in parts:
        if not p:
            continue
        if out and (out[-1].isalnum() or out[-1] in "')") and (p[0].isalnum() or p[0] == '"'):
            out += " "
        elif out and out[-1].isalpha() and p[0] == "(" and not out.endswith(("lr", "sqrt", "frac", "binom")):
            out += " "  # `f (x)`: typst reads `name(` as a function call
        out += p
    return out


def _arg(text: str) -> str:
    """Escape commas at the top level of a function argument, which typst would read as an argument separator."""
    out, depth = [], 0
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        out.append("\\," if ch == "," and depth == 0 else ch)
    return "".join(out).strip() or '""'


def to_typst(latex: str) -> str:
    """The typst math (without the ``$`` delimiters) for a LaTeX formula."""
    return _Parser(latex).expr().strip()
