"""Markdown that shows text from files exactly as it is: file, upload and class names,
and error messages that quote them, must never turn into bold, links, colours or HTML.
"""

from __future__ import annotations

import re

# Every ASCII punctuation mark: CommonMark prints one escaped with a backslash as itself.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub-flavoured Markdown makes links of www., http:// and e-mail addresses even when
# escaped; an invisible word joiner after www, :// or @ keeps them text.
_AUTOLINK = re.compile(r"(?<=www)(?=\.)|(?<=:)(?=//)|(?<=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def literal(text: object) -> str:
    """``text`` for Markdown (st.markdown, st.caption, st.error...) that shows it exactly
    as it is: for what comes from files (file, upload and class names, error messages that
    quote them), which must never turn into bold, links, colours or HTML."""
    one_line = " ".join(str(text).splitlines())
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, one_line))


def table(columns: dict[str, list]) -> str:
    """A small table as Markdown, cells shown literally. st.dataframe would import pandas
    and pyarrow (about 2 s on a 2-core laptop) for the first page a new user waits for."""
    rows = zip(*columns.values())
    lines = ["| " + " | ".join(literal(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(literal(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)



def percent(value: float, digits: int = 2) -> str:
    """A percentage as the pages print a checkpoint's accuracy: 78.73%, never the float a
    file stored (78.72999906539917)."""
    return f"{value:.{digits}f}%"
