"""Human-readable output that is safe and readable wherever it goes.

Text from the data (asset keys, notes, check output) may hold control characters: an ANSI escape
(`\\x1b[31m`) would recolour or rewrite the user's terminal, a bidi override would reorder what they read.
`printable` shows them as visible escapes. `print_tables` draws rich tables at the terminal's width, and
as wide as their content when stdout is a pipe or a file (one line per row, no word split across lines).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from typing import TextIO


def printable(value: object) -> str:
    """`value` as text with every control or format character (Unicode Cc/Cf) shown as an escape."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch != " " and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


Row = Sequence[object]
UNWRAPPED_WIDTH = 100_000  # a pipe or a file has no width: tables take what they need, never wrap


def print_tables(
    tables: Sequence[tuple[str, Sequence[str], Sequence[Row]]],
    stream: TextIO | None = None,
    show_header: bool = True,
) -> None:
    """Each `(title, columns, rows)` as a rich table: the terminal's width on a terminal; to a pipe or a
    file, as wide as the content (one line per row: `grep` and `less -S` see whole words, not `kafka_dlq_de pth`).
    Every cell and title goes through `printable`, and as `Text`, so markup in data is never interpreted."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = stream or sys.stdout
    console = Console(file=out, highlight=False, soft_wrap=False, width=None if out.isatty() else UNWRAPPED_WIDTH)
    for title, columns, rows in tables:
        table = Table(title=Text(printable(title)), show_header=show_header)
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*(Text(printable(cell)) for cell in row))
        console.print(table)


def print_line(text: object, stream: TextIO | None = None) -> None:
    """One line of human-readable output, control characters escaped."""
    out = stream or sys.stdout
    out.write(printable(text) + "\n")
