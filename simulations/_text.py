"""Formatting for the results document: the helpers every section writes its numbers with.

:mod:`simulations.report` writes the document's skeleton and each experiment
module its own section (its ``report``); both format numbers and sentences
with these helpers, so that a value prints alike wherever it appears. Also the
names the sections share: data sets (:data:`DATA`, :data:`SHORT`). A label
type's family (CL / RCL / PCL / RL) is its class's ``family``
(:class:`metastructure.noise.LabelNoise`), never read from a name.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

WIDTH = 100  # line width of the paragraphs
DATA = {"er": "ER-like", "mito": "MITO-like", "nuclei": "NUC-like", "real_nuclei": "real nuclei"}  # in sentences
SHORT = {"er": "ER", "mito": "MITO", "nuclei": "NUC", "real_nuclei": "real"}  # in tables and lists


def num(x: float | None, nd: int = 3) -> str:
    """``x`` to ``nd`` decimals; ``n/a`` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f}"


def g(x: float) -> str:
    """A parameter (rate, radius, lr) in its shortest form: 0.1, 3, 0.002."""
    return f"{x:g}"


def unet_name(widths: Iterable[int], activation: str | None = "relu") -> str:
    """"16-32-64", with the activation where it is not ReLU: "16-32-64, leaky ReLU"."""
    text = "-".join(str(int(w)) for w in widths)
    return text if activation in (None, "relu") else f"{text}, {activation.replace('_relu', ' ReLU')}"


def pct(x: float | None, nd: int = 0) -> str:
    """A fraction as a percentage, rounded half up (0.625 -> 63%)."""
    if x is None:
        return "n/a"
    q = Decimal(1).scaleb(-nd)
    return f"{Decimal(repr(x * 100)).quantize(q, rounding=ROUND_HALF_UP)}%"


def mean(st: dict | None) -> float | None:
    """The mean of a ``{"mean", "std", "n"}`` stats dict (None when missing)."""
    return None if st is None else st.get("mean")


def pm(st: dict | None, nd: int = 3) -> str:
    """``mean +- sd`` of a stats dict; the mean alone when the sd is 0 or there is one value."""
    m = mean(st)
    if m is None:
        return "n/a"
    sd, n = st.get("std"), st.get("n", 0)
    if not sd or n <= 1:
        return num(m, nd)
    if sd < 0.5 * 10.0**-nd:  # an sd that would print as 0: its first significant digit
        return f"{num(m, nd)} +- {sd:.{-math.floor(math.log10(sd))}f}"
    return f"{num(m, nd)} +- {num(sd, nd)}"


def span(values: Iterable[float | None], nd: int = 3) -> str:
    """The range ``lo-hi`` of the values (one value when they print alike; None skipped)."""
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    lo, hi = num(min(v), nd), num(max(v), nd)
    if lo == hi:
        return lo
    return f"{lo} to {hi}" if min(v) < 0 else f"{lo}-{hi}"


def slash(values: Iterable[Any], nd: int = 3) -> str:
    """Values joined by `` / `` (numbers formatted to ``nd`` decimals)."""
    return " / ".join(v if isinstance(v, str) else num(v, nd) for v in values)


def listing(items: list[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


_GLUE = {"-", "+", "*", ">", "<", ">=", "<=", "->", "=", "+-", "1."}  # never first on a line (markdown syntax)


def _fill(text: str, **kw: Any) -> str:
    """Wrap ``text`` so that no line starts with a word markdown would read as a list, quote or heading, and
    no code span (a command a reader copies) is broken across lines."""
    words = []
    in_code = False  # inside a `code span` that an earlier word opened
    for w in text.split():
        if words and (in_code or w in _GLUE or w.startswith("#") or words[-1].endswith("+-")):  # "a +- b" whole
            words[-1] += "\u00a0" + w  # a no-break space: textwrap does not break there
        else:
            words.append(w)
        in_code ^= w.count("`") % 2 == 1
    out = textwrap.fill(" ".join(words), WIDTH, break_long_words=False, break_on_hyphens=False, **kw)
    return out.replace("\u00a0", " ")


def para(text: str) -> str:
    """One paragraph, wrapped."""
    return _fill(text)


def bullet(text: str) -> str:
    """One list item, wrapped with a hanging indent."""
    return _fill(text, initial_indent="- ", subsequent_indent="  ")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of strings, the ``header`` row first."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def nearest(xs: list[float], x: float, tol: float = 1e-6) -> int | None:
    """The index of the value of ``xs`` nearest ``x``, or None when none lies within ``tol``."""
    i = min(range(len(xs)), key=lambda k: abs(xs[k] - x)) if xs else None
    return i if i is not None and abs(xs[i] - x) <= tol else None


def verdict(flags: dict[str, bool], names: dict[str, str]) -> str:
    """Where a per-data-set statement is true: ``on both``, ``on X only``, ``on neither``..."""
    yes = [names.get(k, k) for k, v in flags.items() if v]
    if len(flags) == 1:
        return f"on {yes[0]}" if yes else f"not on {names.get(*flags, *flags)}"
    if len(yes) == len(flags):
        return "on both" if len(flags) == 2 else "on every data set"
    if not yes:
        return "on neither" if len(flags) == 2 else "on no data set"
    return f"on {listing(yes)} only"


def steps_note(record: dict, default_steps: int | None) -> str:
    """``"N steps"`` when a record's network trains for other than ``default_steps`` steps, else ``""``."""
    steps = record["config"].get("opt", {}).get("steps")
    return f"{steps} steps" if steps is not None and steps != default_steps else ""
