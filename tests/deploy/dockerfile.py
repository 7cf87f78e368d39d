"""A reader of the Dockerfile's final stage and of the ``docker run`` lines in docs/deploy.md.

Enough of the Dockerfile grammar for what the image promises (ENV, WORKDIR, VOLUME, USER, LABEL,
ENTRYPOINT, CMD, HEALTHCHECK, COPY): the tests lay the image's file layout out in a directory and
run the documented commands against it, without Docker.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Image:
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    workdir: str = "/"
    user: str = "root"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination) from the context
    exposed: list[str] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _pairs(rest: str) -> dict[str, str]:
    out = {}
    for item in shlex.split(rest):
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"not the exec form: {rest}"
    return [str(v) for v in value]


def final_stage(path: Path = REPO / "Dockerfile") -> Image:
    stages: list[Image] = []
    for word, rest in _instructions(path.read_text(encoding="utf-8")):
        if word == "FROM":
            stages.append(Image())
            continue
        if not stages:
            continue
        img = stages[-1]
        if word == "ENV":
            img.env.update(_pairs(rest))
        elif word == "LABEL":
            img.labels.update(_pairs(rest))
        elif word == "VOLUME":
            img.volumes += _exec_form(rest) if rest.startswith("[") else rest.split()
        elif word == "WORKDIR":
            img.workdir = rest
        elif word == "USER":
            img.user = rest
        elif word == "ENTRYPOINT":
            img.entrypoint = _exec_form(rest)
        elif word == "CMD":
            img.cmd = _exec_form(rest)
        elif word == "EXPOSE":
            img.exposed += rest.split()
        elif word == "HEALTHCHECK":
            m = re.search(r"\bCMD\s+(\[.*\])\s*$", rest)
            assert m, f"HEALTHCHECK not in exec form: {rest}"
            img.healthcheck = _exec_form(m.group(1))
        elif word == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            img.copies.append((parts[:-1], parts[-1]))
    assert stages, "no FROM in the Dockerfile"
    return stages[-1]


@dataclass
class DockerRun:
    detach: bool
    volumes: list[tuple[str, str, bool]]  # (source, target, read-only)
    env: dict[str, str]
    ports: list[str]
    image: str
    args: list[str]


def documented_runs(doc: Path = REPO / "docs" / "deploy.md") -> list[DockerRun]:
    """Every ``docker run`` line in the doc's shell blocks (continuation lines joined)."""
    runs: list[DockerRun] = []
    text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("docker run "):
            continue
        words = shlex.split(line.split("  #", 1)[0])[2:]
        run = DockerRun(detach=False, volumes=[], env={}, ports=[], image="", args=[])
        i = 0
        while i < len(words):
            w = words[i]
            if w in ("-d", "--detach"):
                run.detach = True
            elif w == "--rm":
                pass
            elif w in ("-v", "--volume", "-e", "--env", "-p", "--publish", "--name", "--user"):
                value = words[i + 1]
                i += 1
                if w in ("-v", "--volume"):
                    src, target, *mode = value.split(":")
                    run.volumes.append((src, target, "ro" in mode))
                elif w in ("-e", "--env"):
                    key, _, val = value.partition("=")
                    run.env[key] = val
                elif w in ("-p", "--publish"):
                    run.ports.append(value)
            elif w.startswith("-"):
                raise AssertionError(f"docs/deploy.md: an option the test does not know: {w} in {line}")
            else:
                run.image, run.args = w, words[i + 1 :]
                break
            i += 1
        runs.append(run)
    return runs
