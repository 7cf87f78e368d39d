"""``licsync import enrollments``: a CSV export of the LMS, validated whole, applied in one transaction.

Contract (SPEC §5)::

    catalog_id,catalog_name,course_id,course_title,course_status,user_id,user_principal_name,role,enrolled_at,expires_at

* A ``learner`` row is an enrollment and puts the user on the catalog's learner list; an ``admin``
  row is an admin assignment (``enrollment.role = 'admin'``), not an enrollment.
* The whole file is checked before anything is written. Every problem names ``line N`` (the header
  is line 1) and its reason; any problem refuses the file and nothing changes.
* Without ``replace`` rows are upserted. With ``replace`` the file is the whole truth for the
  tenant's CSV catalogs: enrollments and admin assignments absent from it are removed, and so are
  learner-list entries that no learner row supports any more (the CSV carries the learner list
  only through learner rows, so a user left with no learner row in a catalog leaves its learner
  list). Catalogs fed by the OData connector (``source = 'odata'``) are refreshed by it each
  cycle; rows naming them are refused rather than fought over.
* The affected users are re-planned in the same transaction against the last directory state.
* Cells are plain data: a cell starting with ``=``, ``+``, ``-`` or ``@`` is stored as written.

Memory does not grow with the file: it is read once, line by line; each valid row goes straight to
a staging table (:mod:`licsync.catalogs.staging`) and only the first ``MAX_PROBLEMS`` problems (and
their count) and the catalogs and courses stay in Python — at most ``[imports] max_catalogs`` and
``max_courses`` of them: a file naming more is refused as soon as the reader meets one too many.
Repeated rows are checked in SQL once the file is read, and the same writer as every other source
(:func:`licsync.catalogs.store.apply_staged`) diffs the staged rows against the tenant's, all in the
caller's one transaction.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import insert, select
from sqlmodel import Session

from licsync.catalogs.bulk import refresh_planner_stats
from licsync.catalogs.records import (
    COURSE_STATUSES,
    ROLES,
    Applied,
    CatalogRecord,
    CatalogSnapshot,
    CourseRecord,
    parse_instant,
)
from licsync.catalogs.staging import Staging, staging
from licsync.catalogs.store import Known, apply_staged
from licsync.config import ImportsConfig
from licsync.csvfiles import check_header, decode_lines, show
from licsync.db import BULK_ROWS
from licsync.db.bulk import bulk_mode
from licsync.db.models import AuditLog, Catalog, Course
from licsync.errors import InputError

HEADER = (
    "catalog_id",
    "catalog_name",
    "course_id",
    "course_title",
    "course_status",
    "user_id",
    "user_principal_name",
    "role",
    "enrolled_at",
    "expires_at",
)
# The widths of the columns they land in (PostgreSQL enforces them; SQLite would not).
MAX_LEN = {
    "catalog_id": 128,
    "catalog_name": 512,
    "course_id": 128,
    "course_title": 512,
    "user_id": 64,
    "user_principal_name": 320,
}
REQUIRED = ("catalog_id", "course_id", "user_id", "enrolled_at")
SOURCE = "csv"


@dataclass
class ImportResult:
    tenant: str
    file: str
    replace: bool
    rows: int = 0
    applied: Applied = field(default_factory=Applied)
    seats_taken: int = 0
    seats_freed: int = 0
    seats_refused: int = 0
    frees_held: int = 0
    hold_id: str | None = None
    hold_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        a = self.applied
        return {
            "tenant": self.tenant,
            "file": self.file,
            "replace": self.replace,
            "rows": self.rows,
            **a.counts(),
            "courses_changed": a.courses_changed,
            "seats_taken": self.seats_taken,
            "seats_freed": self.seats_freed,
            "seats_refused": self.seats_refused,
            "frees_held": self.frees_held,
            "hold_id": self.hold_id,
            "hold_reason": self.hold_reason,
        }

    def line(self) -> str:
        a = self.applied
        text = (
            f"{self.tenant}: imported {self.rows} rows from {self.file}{' (replace)' if self.replace else ''} — "
            f"enrollments +{a.enrollments_added} −{a.enrollments_removed} ({a.enrollments_updated} updated), "
            f"admin assignments +{a.admins_added} −{a.admins_removed}, "
            f"learner lists +{a.learners_added} −{a.learners_removed}, {a.courses_changed} courses changed; "
            f"{len(a.affected)} users re-planned: seats +{self.seats_taken} −{self.seats_freed}"
        )
        if self.seats_refused:
            text += f" (refused {self.seats_refused})"
        if self.hold_id:
            text += f"; {self.frees_held} FREES HELD for approval as {self.hold_id}: {self.hold_reason}"
        return text


# --------------------------------------------------------------------------- reading

BLOCK = 256 * 1024  # bytes read at a time (then up to the end of the line); StringIO holds 4 bytes a character
MAX_DATES = 100_000  # distinct date texts remembered while reading
MAX_PROBLEMS = 50  # problems kept to show (the CLI prints them); the rest are counted


class Problems(list):  # type: ignore[type-arg]
    """A list that keeps its first ``MAX_PROBLEMS`` items and counts the others (``total``)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def append(self, item: Any) -> None:
        self.total += 1
        if len(self) < MAX_PROBLEMS:
            super().append(item)

    def __iadd__(self, items: Any) -> Problems:  # type: ignore[override,misc]
        for item in items:
            self.append(item)
        return self


def _header(record: list[str]) -> dict[str, int]:
    return check_header(record, HEADER)


def _date(raw: str, dates: dict[str, datetime | None]) -> datetime | None:
    """Parse once per distinct text (exports repeat the same instants a lot); None when unparsable."""
    try:
        return dates[raw]
    except KeyError:
        if len(dates) >= MAX_DATES:  # an export with an instant per row: start again rather than grow
            dates.clear()
            dates[""] = None
        try:
            value = dates[raw] = parse_instant(raw)
        except ValueError:
            value = dates[raw] = None
        return value


def _cell_problems(cells: list[str], dates: dict[str, datetime | None]) -> list[str]:
    """Every reason a row's own cells are wrong (the slow path, for rows the fast checks refused)."""
    values = dict(zip(HEADER, cells, strict=True))
    why = ["a cell holds a NUL character"] if any("\x00" in c for c in cells) else []
    why += [f"{name} is empty" for name in REQUIRED if not values[name]]
    why += [f"{name} is longer than {limit} characters" for name, limit in MAX_LEN.items() if len(values[name]) > limit]
    if values["course_status"].lower() not in COURSE_STATUSES:
        why.append(f"course_status {show(values['course_status'])} is not one of {', '.join(COURSE_STATUSES)}")
    if values["role"].lower() not in ROLES:
        why.append(f"role {show(values['role'])} is not one of {', '.join(ROLES)}")
    for name in ("enrolled_at", "expires_at"):
        if values[name] and _date(values[name], dates) is None:
            why.append(f"{name} {show(values[name])} is not an ISO-8601 date or date-time")
    enrolled, expires = _date(values["enrolled_at"], dates), _date(values["expires_at"], dates)
    if enrolled is not None and expires is not None and expires < enrolled:
        why.append(f"expires_at {values['expires_at']} is before enrolled_at {values['enrolled_at']}")
    return why


@dataclass
class Reading:
    """What one pass over a file keeps: the small facts (catalogs, courses), the problems, the row count.

    The rows themselves go to the staging table as they are read.
    """

    catalogs: dict[str, tuple[str, int]] = field(default_factory=dict)  # id: (name, first line)
    courses: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # id: (catalog, title, status, line)
    decode_problems: Problems = field(default_factory=Problems)  # reported first, as the file's encoding comes first
    problems: Problems = field(default_factory=Problems)  # (line, sentence), the first MAX_PROBLEMS of them
    rows: int = 0
    has_nul: bool = False
    limits: ImportsConfig = field(default_factory=ImportsConfig)

    def problem_count(self) -> int:
        return self.decode_problems.total + self.problems.total

    def all_problems(self) -> list[str]:
        shown = self.decode_problems + [text for _, text in sorted(self.problems, key=lambda p: p[0])]
        return shown[:MAX_PROBLEMS]

    def head(self) -> CatalogSnapshot:
        """The file's catalogs and courses; its enrollments and learner lists are staged."""
        return CatalogSnapshot(
            catalogs=[CatalogRecord(cid, name) for cid, (name, _) in self.catalogs.items()],
            courses=[CourseRecord(cid, c[0], c[1], c[2]) for cid, c in self.courses.items()],
        )


def _lines(fh: BinaryIO, reading: Reading) -> Iterator[str]:
    """The file as text lines, split as ``newline=""`` splits them; lines that are not UTF-8 become problems.

    Read in blocks of whole lines: a valid block is decoded and split in C; a block that is not
    valid UTF-8 is decoded line by line (``\\n``-separated), each bad line named by its number.
    """
    first, done = True, 0  # physical lines before this block
    while block := fh.read(BLOCK):
        if not block.endswith(b"\n"):
            block += fh.readline()
        if first:
            if block.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise InputError("the file is UTF-16 text; save it as UTF-8 (CSV UTF-8) and import again")
            block, first = block.removeprefix(codecs.BOM_UTF8), False
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            text = decode_lines(block, done, reading.decode_problems)
        done += block.count(b"\n")
        if "\x00" in text:
            reading.has_nul = True
        yield from io.StringIO(text, newline="")


def read_enrollments(fh: BinaryIO, st: Staging, limits: ImportsConfig | None = None) -> Reading:
    """Validate a whole file in one pass, staging its valid rows; returns what the pass found.

    Raises InputError at once only for what makes the rest unreadable (encoding, header); every
    other problem is collected. The caller refuses the file if ``Reading.problems`` is not empty
    once the staged rows were checked for conflicting repeats (:meth:`Staging.conflicting_duplicates`).
    """
    reading = Reading(limits=limits or ImportsConfig())
    reader = csv.reader(_lines(fh, reading), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise InputError("the header line is not valid CSV", [f"line 1: {exc}"]) from None
    if first is None or not any(c.strip() for c in first):
        raise InputError("the file is empty: it needs the header line " + ",".join(HEADER))
    col = _header(first)
    st.add_enrollments(_valid_rows(reader, col, len(first), reading))
    return reading


def _valid_rows(reader: Any, col: dict[str, int], width: int, reading: Reading) -> Iterator[tuple[Any, ...]]:
    """Staging rows ``(line, course, user, role, enrolled, expires, upn)`` of the rows without problems."""
    order = [col[h] for h in HEADER]
    in_order = order == list(range(len(HEADER)))
    statuses, roles = frozenset(COURSE_STATUSES), frozenset(ROLES)
    max_cat, max_name, max_course, max_title, max_user, max_upn = MAX_LEN.values()
    catalogs, courses, problems = reading.catalogs, reading.courses, reading.problems
    dates: dict[str, datetime | None] = {"": None}
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append((line, f"line {line}: not valid CSV: {exc}"))
            continue  # the reader resumes at the next line
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        reading.rows += 1
        if len(record) != width:
            problems.append((line, f"line {line}: expected {width} columns, found {len(record)}"))
            continue
        cells = [c.strip() for c in record] if in_order else [record[i].strip() for i in order]
        cat, cat_name, course, title, status, user, upn, role, enrolled_s, expires_s = cells
        status, role = status.lower(), role.lower()
        enrolled, expires = _date(enrolled_s, dates), _date(expires_s, dates)
        good = (
            cat
            and course
            and user
            and enrolled is not None
            and (expires is not None or not expires_s)
            and status in statuses
            and role in roles
            and (expires is None or expires >= enrolled)
            and len(cat) <= max_cat
            and len(course) <= max_course
            and len(user) <= max_user
            and len(cat_name) <= max_name
            and len(title) <= max_title
            and len(upn) <= max_upn
            and not (reading.has_nul and any("\x00" in c for c in cells))
        )
        why = [] if good else _cell_problems(cells, dates)
        if cat and cat not in catalogs and len(catalogs) >= reading.limits.max_catalogs:
            raise InputError(f"line {line}: the file names more than {reading.limits.max_catalogs} catalogs "
                             "([imports] max_catalogs); nothing was imported")
        if course and course not in courses and len(courses) >= reading.limits.max_courses:
            raise InputError(f"line {line}: the file names more than {reading.limits.max_courses} courses "
                             "([imports] max_courses); nothing was imported")
        if cat:
            seen_cat = catalogs.setdefault(cat, (cat_name, line))
            if seen_cat[0] != cat_name:
                why.append(
                    f"catalog {show(cat)} is named {show(cat_name)} here but {show(seen_cat[0])} on line {seen_cat[1]}"
                )
        if course:
            seen_course = courses.setdefault(course, (cat, title, status, line))
            if seen_course[:3] != (cat, title, status):
                for i, what, mine in ((0, "catalog", cat), (1, "title", title), (2, "status", status)):
                    if seen_course[i] != mine:
                        why.append(
                            f"course {show(course)} has {what} {show(mine)} here "
                            f"but {show(seen_course[i])} on line {seen_course[3]}"
                        )
        if why:
            problems.append((line, f"line {line}: {'; '.join(why)}"))
            continue
        yield (line, course, user, role, enrolled, expires, upn or None)


def _repeats(st: Staging) -> Iterator[tuple[int, str]]:
    """A user given twice the same role in a course must be given the same dates and UPN (exact repeats are fine).
    Yielded one by one: the caller keeps the first few and counts the rest."""
    for line, course, user, role, first in st.conflicting_duplicates():
        yield (
            line,
            f"line {line}: user {show(user)} is given again as {role} of course {show(course)} "
            f"with other dates or user_principal_name than on line {first}",
        )


def _foreign_catalogs(session: Session, tenant: str, snap: CatalogSnapshot) -> list[str]:
    """Catalogs and courses in the file that another source (the OData connector) owns."""
    conn = session.connection()
    ca, co = Catalog.__table__, Course.__table__  # type: ignore[attr-defined]
    foreign = {r[0] for r in conn.execute(select(ca.c.id).where(ca.c.tenant == tenant, ca.c.source != SOURCE))}
    if not foreign:
        return []
    problems = [
        f"catalog {show(c.id)} is fed by the LMS connector (source odata), not by CSV imports"
        for c in snap.catalogs
        if c.id in foreign
    ]
    foreign_courses = {
        r[0]: r[1]
        for r in conn.execute(
            select(co.c.id, co.c.catalog_id).where(co.c.tenant == tenant, co.c.catalog_id.in_(foreign))
        )
    }
    problems += [
        f"course {show(c.id)} belongs to catalog {show(foreign_courses[c.id])}, fed by the LMS connector (source odata)"
        for c in snap.courses
        if c.id in foreign_courses and c.catalog_id not in foreign
    ]
    return problems


# --------------------------------------------------------------------------- import


def read_file(session: Session, tenant: str, path: Path, *, replace: bool, now: datetime,
              limits: ImportsConfig | None = None) -> ImportResult:
    """Validate ``path`` whole and write its catalog facts in the caller's transaction; the affected
    users are ``result.applied.affected`` (``licsync.service.import_enrollments`` re-plans them).
    ``limits``: ``[imports]`` caps on catalogs and courses per file."""
    try:
        fh = Path(path).open("rb")  # noqa: SIM115 - closed by the ``with`` below; an open error is the user's
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with fh, bulk_mode(session):
        rows, applied = apply_file(session, tenant, Path(path), fh, replace=replace, now=now, limits=limits)
    result = ImportResult(tenant=tenant, file=Path(path).name, replace=replace, rows=rows, applied=applied)
    if result.applied.rows_written >= BULK_ROWS:
        refresh_planner_stats(session)  # the re-plan that follows joins the tables just filled
    return result


def audit(session: Session, result: ImportResult, now: datetime, actor: str) -> None:
    session.connection().execute(
        insert(AuditLog.__table__),  # type: ignore[attr-defined]
        [{"at": now, "tenant": result.tenant, "actor": actor, "action": "enrollments_imported",
          "subject": result.file, "detail": result.summary()}],
    )


def apply_file(
    session: Session, tenant: str, path: Path, fh: BinaryIO, *, replace: bool, now: datetime,
    limits: ImportsConfig | None = None,
) -> tuple[int, Applied]:
    """Validate a file whole and write its catalog facts (no re-plan); returns its row count and the changes."""
    with staging(session) as st:
        try:
            reading = read_enrollments(fh, st, limits)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        st.index()
        reading.problems += _repeats(st)
        if reading.problems.total or reading.decode_problems.total:
            problems, count = reading.all_problems(), reading.problem_count()
            shown = f" (the first {len(problems)} below)" if count > len(problems) else ""
            raise InputError(f"{count} problem(s) in the file{shown}; nothing was imported", problems)
        if replace and reading.rows == 0:
            raise InputError(
                f"{path} has no rows: with --replace it would remove every enrollment of tenant {tenant}; refused"
            )
        head = reading.head()
        foreign = _foreign_catalogs(session, tenant, head)
        if foreign:
            raise InputError(f"{len(foreign)} problem(s) in the file; nothing was imported", foreign)

        def learner_lists(_known: Known) -> int:
            st.learners_from_enrollments(tenant)
            return 0

        return reading.rows, apply_staged(st, tenant, head, now, source=SOURCE, replace=replace, load=learner_lists)
