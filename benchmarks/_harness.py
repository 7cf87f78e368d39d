"""Shared plumbing of the benchmark scripts: the emulator process, databases, workers, tables.

Each measured piece runs in a fresh Python process (``_worker.py``), so its peak RSS is its own
and nothing warms up between pieces; the Graph emulator runs in another process
(``tenant.py serve``), so it never shares the GIL with the code being measured.
"""

from __future__ import annotations

import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("LICSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- the emulator process


class EmulatorProcess:
    """``tenant.py serve`` in a child process: the synthetic tenant behind the licsync Graph emulator."""

    def __init__(
        self,
        users: int,
        workdir: Path,
        *,
        seed: int = 1,
        enrolled_fraction: float = 0.8,
        catalogs: int | None = None,
        timeout: float = 900,
    ) -> None:
        cmd = [
            sys.executable,
            str(HERE / "tenant.py"),
            "serve",
            "--users",
            str(users),
            "--seed",
            str(seed),
            "--enrolled-fraction",
            str(enrolled_fraction),
            "--workdir",
            str(workdir),
        ]
        if catalogs is not None:
            cmd += ["--catalogs", str(catalogs)]
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = (workdir / "emulator.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.info = self._reply(timeout)

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise BenchError(
                f"the emulator process exited ({self.proc.returncode}); see {self.workdir / 'emulator.log'}:\n"
                + (self.workdir / "emulator.log").read_text(errors="replace")[-3000:]
            )
        return orjson.loads(line)

    def command(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
        self.proc.stdin.flush()
        return self._reply(600)

    def churn(self, k: int, seed: int = 7) -> dict[str, int]:
        return self.command(op="churn", k=k, seed=seed)["churn"]

    def tenant_kwargs(self, name: str = "bench") -> dict[str, Any]:
        i = self.info
        return {
            "name": name,
            "tenant_id": i["tenant_id"],
            "client_id": i["client_id"],
            "client_secret": f"file:{i['client_secret_file']}",
            "authority": i["authority"],
            "graph_url": i["graph_url"],
            "ca_bundle": i["ca_bundle"],
        }

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.terminate()
                self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- databases


@contextmanager
def database(kind: str, workdir: Path, *, keep: bool = False) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a PostgreSQL schema of its own (dropped after)."""
    if kind == "sqlite":
        path = workdir / f"licsync-{secrets.token_hex(3)}.db"
        yield f"sqlite:///{path}"
        if not keep:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    if kind != "postgresql":
        raise BenchError(f"unknown database kind {kind!r}")
    from sqlalchemy import create_engine, text

    schema = "bench_" + secrets.token_hex(5)
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        raise BenchError(f"PostgreSQL at {PG_URL} is not usable ({type(exc).__name__}: {exc})") from None
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        if not keep:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


ANALYZED = (
    "directory_user",
    "directory_change",
    "catalog",
    "course",
    "enrollment",
    "learner_list",
    "seat",
    "audit_log",
)


def analyze(url: str) -> float:
    """``ANALYZE`` licsync's tables on PostgreSQL (what autovacuum does some time after a bulk load).

    Without it, tables bulk-loaded in one transaction have no statistics, and the planner's
    row estimates of 1 turn the per-catalog seat count into nested loops (see README).
    """
    if not url.startswith("postgresql"):
        return 0.0
    from sqlalchemy import create_engine, text

    t = time.perf_counter()
    eng = create_engine(url)
    try:
        with eng.begin() as c:
            c.execute(text("ANALYZE " + ", ".join(ANALYZED)))
    finally:
        eng.dispose()
    return time.perf_counter() - t


def pg_available() -> bool:
    from sqlalchemy import create_engine, text

    probe = create_engine(PG_URL)
    try:
        with probe.connect() as c:
            c.execute(text("select 1"))
        return True
    except Exception:
        return False
    finally:
        probe.dispose()


def db_kinds(choice: str) -> list[str]:
    if choice == "both":
        return ["sqlite", "postgresql"] if pg_available() else ["sqlite"]
    return [choice]


# --------------------------------------------------------------------------- workers


def run_piece(piece: str, ctx: dict[str, Any], *, timeout: float = 3600, worker: str = "_worker.py") -> dict[str, Any]:
    """Run one measured piece in a fresh process; returns its JSON result (plus ``rss_peak_mb``).

    The peak RSS is the child's ``ru_maxrss`` as the kernel reports it when the child is reaped.
    """
    cmd = [sys.executable, str(HERE / worker), piece]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(orjson.dumps(ctx), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"piece {piece} took longer than {timeout:.0f} s") from None
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("@@RESULT ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"piece {piece} failed (exit {proc.returncode}):\n{err.decode(errors='replace')[-4000:]}")
    return orjson.loads(lines[-1].removeprefix("@@RESULT "))


# --------------------------------------------------------------------------- output


def fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, spec or ".2f")
    if isinstance(value, int):
        return format(value, spec or ",")
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> str:
    """A Markdown table (readable in a terminal and pasteable into README.md)."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_numeric(r[i]) for r in cells) if cells else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    out = [f"\n{title}\n"] if title else []
    out.append(line(headers))
    out.append(
        "|"
        + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True))
        + "|"
    )
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _numeric(s: str) -> bool:
    t = s.replace(",", "").replace("×", "").replace("%", "").replace("–", "").strip()
    try:
        float(t)
        return True
    except ValueError:
        return t == ""


def machine_line() -> str:
    load = os.getloadavg()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · {os.cpu_count()} CPU · "
        f"Python {platform.python_version()} · load avg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} · "
        f"git {_git_rev()}"
    )


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "licsync"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return f"{rev}{'+dirty licsync/' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return "?"


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def lap(self) -> float:
        t, self.t0 = self.t0, time.perf_counter()
        return self.t0 - t


def per_user_us(seconds: float | None, users: int) -> float | None:
    return None if seconds is None or not users else seconds / users * 1e6


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "–"
    return f"{a / b:.1f}×" if a / b < 100 else f"{a / b:,.0f}×"
