"""CSV conventions shared by every import and export. Pure.

Imports: UTF-8 (a BOM is accepted, UTF-16 gets a "save as UTF-8" message), columns in any order,
each problem names ``line N`` (the header is line 1). Cells are data: nothing is evaluated.

Exports: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a
formula to Excel and LibreOffice (CSV injection, OWASP): a display name like ``=HYPERLINK(…)`` set
in the directory would run when an admin opens the file. Such cells get a leading ``'``, which
spreadsheets show as text; numbers stay numbers.
"""

from __future__ import annotations

import codecs
from typing import Any

from licsync.errors import InputError

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def show(value: str, limit: int = 40) -> str:
    """A cell quoted and shortened for an error message."""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def decode(data: bytes, problems: list[str]) -> str:
    """The file as text. Lines that are not UTF-8 are added to ``problems``, each named by number."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError("the file is UTF-16 text; save it as UTF-8 (CSV UTF-8) and import again")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_lines(data, 0, problems)


def decode_lines(block: bytes, done: int, problems: list[str]) -> str:
    """Text that is not all UTF-8, each bad line named in ``problems`` (numbered after ``done``
    lines); UTF-8 never uses the byte ``\\n`` inside a character, so a block may be any run of lines."""
    for n, raw in enumerate(block.split(b"\n"), start=done + 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                f"line {n}: not UTF-8 text (byte 0x{raw[exc.start]:02X} at column {exc.start + 1}); "
                "save the file as UTF-8"
            )
    return block.decode("utf-8", errors="replace")


def check_header(record: list[str], expected: tuple[str, ...]) -> dict[str, int]:
    """``{column: index}`` of a header line, or InputError naming what is missing, unknown or doubled."""
    names = [c.strip().lstrip("\ufeff").lower() for c in record]
    problems = []
    missing = [h for h in expected if h not in names]
    unknown = [n for n in names if n not in expected]
    twice = sorted({n for n in names if n in expected and names.count(n) > 1})
    if missing:
        problems.append(f"line 1: missing column(s): {', '.join(missing)}")
    if unknown:
        problems.append(f"line 1: unknown column(s): {', '.join(show(u) for u in unknown)}")
    if twice:
        problems.append(f"line 1: column(s) given more than once: {', '.join(twice)}")
    if problems:
        raise InputError(f"bad header; expected: {','.join(expected)}", problems)
    return {n: i for i, n in enumerate(names)}


def safe_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
