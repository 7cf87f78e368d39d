"""CSV exports that are safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel and LibreOffice (CSV/formula injection, OWASP): a display name like ``=HYPERLINK(…)`` set in
the directory would run when an admin opens the export. Such text cells get a leading ``'``, which
spreadsheets show as text. Numbers are written as numbers (a negative ``available`` stays numeric).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from starlette.responses import StreamingResponse

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(_DANGEROUS) else text


def _lines(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralise(row.get(col)) for col in header])
        if buf.tell() > 16_384:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def csv_response(filename: str, header: Sequence[str], rows: Iterable[dict[str, Any]]) -> StreamingResponse:
    return StreamingResponse(
        _lines(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
