"""The one escaping function for the terminal: stored text (a CSV cell, a catalog name, a label, an
error from a remote system) is shown, never interpreted. ``\\x1b[2J`` prints as ``\\x1b[2J``, not as a
cleared screen; rich markup in it (``[red]``) prints as written.

Every CLI path that prints stored text goes through :func:`echo` (lines), :func:`clean` (a read
model, before rich renders it) or :func:`write_text` (CSV on a terminal). JSON output needs nothing:
orjson writes control characters as ``\\u001b``.
"""

from __future__ import annotations

import sys
from typing import Any

import typer


def printable(text: str) -> str:
    """``text`` on one line: control characters that came from input (a line break or a terminal
    escape in a key name, a cell, a file name) are shown escaped, never interpreted."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def echo(text: str, *, err: bool = False) -> None:
    """``typer.echo`` for lines that hold stored text: each line printable, the line breaks kept."""
    typer.echo("\n".join(printable(line) for line in text.split("\n")), err=err)


def clean(data: Any, *, markup: bool = False) -> Any:
    """A read model with every string printable (and, for rich, its markup escaped)."""
    if isinstance(data, str):
        out = printable(data)
        if markup:
            from rich.markup import escape

            out = escape(out)
        return out
    if isinstance(data, dict):
        return {k: clean(v, markup=markup) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [clean(v, markup=markup) for v in data]
    return data


def write_text(text: str) -> None:
    """Write a document (CSV) to stdout as is, unless stdout is a terminal: then each line printable."""
    if sys.stdout.isatty():
        text = "".join(printable(line.rstrip("\r\n")) + "\n" for line in text.splitlines())
    sys.stdout.write(text)
