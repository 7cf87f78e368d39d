"""The container runs as non-root: a static check of the Dockerfile's final stage."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages: list[list[tuple[str, str]]] = []
    for ln in lines:
        instr, _, args = ln.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr.upper(), args.strip()))
    assert stages, "no FROM in the Dockerfile"
    return stages[-1]


def _uid(user: str, stage: list[tuple[str, str]]) -> int | None:
    """The numeric uid of a USER argument (``name``, ``uid`` or ``uid:gid``), resolved via useradd."""
    who = user.split(":")[0]
    if who.isdigit():
        return int(who)
    for instr, args in stage:
        m = re.search(r"useradd\b.*--uid\s+(\d+)\b.*\b" + re.escape(who) + r"\b", args) if instr == "RUN" else None
        if m:
            return int(m.group(1))
    return None


def test_the_process_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    kinds = [i for i, _ in stage]
    assert "USER" in kinds, "the final stage has no USER: the container would run as root"
    start = min(kinds.index(k) for k in ("CMD", "ENTRYPOINT") if k in kinds)
    users = [(n, args) for n, (i, args) in enumerate(stage) if i == "USER"]
    last_before = [args for n, args in users if n < start]
    assert last_before, "USER must come before CMD/ENTRYPOINT"
    assert all(n < start for n, _ in users), "a later USER switches identity after the entry point is set"
    uid = _uid(last_before[-1], stage)
    assert uid is not None and uid != 0, f"USER {last_before[-1]} is root or has no known uid"
    assert not any(i == "RUN" and "sudo" in a for i, a in stage[kinds.index("USER"):]), "sudo after USER"


def test_no_secret_is_baked_into_the_image() -> None:
    for instr, args in final_stage():
        if instr in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)(secret|password|token|api_key)\s*=\s*[^\s$]", args), args
