"""Terminal tables (rich), used by the CLI's listing commands.

A value is never cut: a model name, a path, a number or a command is printed whole or not at all.
Columns of prose (descriptions, reasons) wrap at spaces, never inside a word. When the whole values
do not fit the terminal, the columns a command marks optional are left out (and the table says which);
when even that does not fit, each row is printed as an entry of its own, one field per line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

#: the space rich puts between two columns of these tables
_GAP = 2


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
                prose: Sequence[str] = (), optional: Sequence[str] = (), width: int | None = None) -> None:
    """Print a table that fits ``width`` (the terminal's by default) without cutting a value.

    ``prose``: columns that may wrap at spaces; every other column keeps each value on one line.
    ``optional``: columns left out, in this order, when the table would not fit otherwise.
    """
    import click

    width = width or terminal_width()
    rows = [[str(cell) for cell in row] for row in rows]
    shown = list(headers)
    for column in [c for c in optional if c in headers]:
        if _needed(headers, rows, shown, prose) <= width:
            break
        shown.remove(column)
    if _needed(headers, rows, shown, prose) > width:
        _print_entries(headers, rows, title, width)
        return
    _print_rich(headers, rows, shown, title, prose, width)
    left_out = [c for c in headers if c not in shown]
    if left_out:
        click.echo(f"(left out at {width} columns: {', '.join(left_out)}; a wider terminal or --json shows them)")


def _widths(headers: Sequence[str], rows: Sequence[Sequence[str]], column: str, prose: Sequence[str]) -> int:
    """The narrowest a column may be: its longest value (or, for prose, its longest word)."""
    index = list(headers).index(column)
    cells = [row[index] for row in rows]
    if column in prose:
        return max([len(column.split()[0]) if column else 0, *(len(w) for c in cells for w in c.split())])
    return max([len(column), *(len(c) for c in cells)])


def _needed(headers: Sequence[str], rows: Sequence[Sequence[str]], shown: Sequence[str],
            prose: Sequence[str]) -> int:
    return sum(_widths(headers, rows, c, prose) for c in shown) + _GAP * (len(shown) - 1)


def _print_rich(headers: Sequence[str], rows: Sequence[Sequence[str]], shown: Sequence[str], title: str,
                prose: Sequence[str], width: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # a rule under the header and no vertical borders: the width goes to the values
    table = Table(title=title or None, title_justify="left", show_lines=False, box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True, show_edge=False)
    for column, fixed in zip(shown, _column_widths(headers, rows, shown, prose, width), strict=True):
        if column in prose:
            table.add_column(column, overflow="fold", width=fixed)
        else:
            table.add_column(column, no_wrap=True, overflow="ignore", width=fixed)
    indices = [list(headers).index(c) for c in shown]
    for row in rows:
        table.add_row(*(row[i] for i in indices))
    Console(width=width, soft_wrap=False).print(table)


def _column_widths(headers: Sequence[str], rows: Sequence[Sequence[str]], shown: Sequence[str],
                   prose: Sequence[str], width: int) -> list[int]:
    """Each shown column's width, chosen here rather than by rich (which narrows a column below its
    longest word and then crops that word): every column gets its narrowest (:func:`_widths`), then
    prose columns share what is left in proportion to their text, never wider than their longest value."""
    least = [_widths(headers, rows, c, prose) for c in shown]
    longest = [max([len(c), *(len(row[list(headers).index(c)]) for row in rows)]) for c in shown]
    spare = width - sum(least) - _GAP * (len(shown) - 1)
    widths = list(least)
    wants = {i: longest[i] - least[i] for i, c in enumerate(shown) if c in prose and longest[i] > least[i]}
    while spare > 0 and wants:
        total = sum(wants.values())
        given = 0
        for i, want in list(wants.items()):
            share = min(want, max(1, spare * want // total))
            widths[i] += share
            given += share
            wants[i] -= share
            if not wants[i]:
                del wants[i]
            if given >= spare:
                break
        spare -= given
    return widths


def _print_entries(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str, width: int) -> None:
    """One entry per row: its first value on a line, then ``header: value`` lines, wrapped at spaces."""
    import click

    if title:
        click.echo(title)
    for row in rows:
        click.echo(row[0])
        for header, value in zip(headers[1:], row[1:], strict=True):
            click.echo(textwrap.fill(f"{header}: {value}", width=width, initial_indent="  ",
                                     subsequent_indent="    ", break_long_words=False, break_on_hyphens=False))


def terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 40)).columns
