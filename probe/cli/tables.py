"""Terminal tables (rich), used by the CLI's listing commands."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
                no_wrap: Sequence[str] = ()) -> None:
    """A rich table at the terminal's width; columns in ``no_wrap`` (names) are never broken mid-word."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # a rule under the header and no vertical borders: the width goes to the values
    table = Table(title=title or None, title_justify="left", show_lines=False, box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=header in no_wrap)
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, terminal_width())).print(table)


def terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 40)).columns
