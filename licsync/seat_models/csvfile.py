"""Reading the seat-model CSV files (activity, roles, orgs, users): header check and rows by line. Pure.

The same conventions as ``licsync import enrollments``: UTF-8 (a BOM is accepted), columns in any
order, each problem names ``line N`` (the header is line 1), any problem refuses the whole file.
Cells are data: nothing is evaluated, a cell starting with ``=`` is stored as written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

from licsync.csvfiles import check_header, decode, safe_cell
from licsync.errors import InputError

T = TypeVar("T")


def _decode(data: bytes) -> str:
    problems: list[str] = []
    text = decode(data, problems)
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the file; nothing was imported", problems)
    return text


def rows(data: bytes, header: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: stripped cell})`` per data row; raises InputError for a bad header or shape."""
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise InputError("the header line is not valid CSV", [f"line 1: {exc}"]) from None
    if first is None or not any(c.strip() for c in first):
        raise InputError("the file is empty: it needs the header line " + ",".join(header))
    check_header(first, header)
    names = [c.strip().lstrip("\ufeff").lower() for c in first]
    bad: list[str] = []
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad.append(f"line {line}: not valid CSV: {exc}")
            continue
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != len(names):
            bad.append(f"line {line}: expected {len(names)} columns, found {len(record)}")
            continue
        if any("\x00" in c for c in record):
            bad.append(f"line {line}: a cell holds a NUL character")
            continue
        yield line, {n: c.strip() for n, c in zip(names, record, strict=True)}
    if bad:
        raise InputError(f"{len(bad)} problem(s) in the file; nothing was imported", bad)


def parse_all(
    data: bytes, header: tuple[str, ...], parse: Callable[[int, dict[str, str], list[str]], T | None]
) -> list[T]:
    """Parse every row with ``parse(line, cells, problems)``; any problem refuses the whole file."""
    out: list[T] = []
    problems: list[str] = []
    try:
        for line, cells in rows(data, header):
            why: list[str] = []
            item = parse(line, cells, why)
            if why:
                problems.append(f"line {line}: {'; '.join(why)}")
            elif item is not None:
                out.append(item)
    except InputError as exc:
        if not exc.problems or not problems:
            raise
        raise InputError(
            f"{len(problems) + len(exc.problems)} problem(s) in the file; nothing was imported",
            sorted(problems + exc.problems, key=_line_no),
        ) from None
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the file; nothing was imported", problems)
    return out


def _line_no(problem: str) -> int:
    try:
        return int(problem.split(":", 1)[0].removeprefix("line "))
    except ValueError:
        return 0


def instant(text: str) -> datetime:
    """An ISO-8601 date or date-time as aware UTC (no offset means UTC); raises ValueError."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def check_len(cells: dict[str, str], limits: dict[str, int], why: list[str]) -> None:
    for name, limit in limits.items():
        if len(cells.get(name, "")) > limit:
            why.append(f"{name} is longer than {limit} characters")


def require(cells: dict[str, str], names: tuple[str, ...], why: list[str]) -> None:
    for name in names:
        if not cells.get(name):
            why.append(f"{name} is empty")


def to_csv(header: tuple[str, ...] | list[str], records: list[dict[str, object]] | list[list[object]]) -> str:
    """CSV text (``\\r\\n`` line ends) of dict records (by ``header``) or lists, every cell made safe."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in records:
        cells = [r.get(h) for h in header] if isinstance(r, dict) else r
        w.writerow([safe_cell(c) for c in cells])
    return buf.getvalue()
