"""CSV exports of the API, streamed; every cell made safe to open in a spreadsheet
(``licsync.csvfiles.safe_cell``: formula-like text gets a leading ``'``, numbers stay numbers)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from starlette.responses import StreamingResponse

from licsync.csvfiles import safe_cell


def _lines(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(row.get(col)) for col in header])
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
