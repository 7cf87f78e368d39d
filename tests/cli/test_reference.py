"""The docs site: the generated references match the code, every command the docs show exists, and
the site builds without a broken link."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from licsync.cli.app import build_command
from licsync.cli.reference import cli_reference, config_keys, config_reference
from licsync.cli.reference_config import DESCRIPTIONS
from tests.cli.conftest import REPO, licsync

DOCS = REPO / "docs"
REGENERATE = "run `python -m licsync.cli.reference docs`"


def test_the_committed_cli_reference_is_the_code() -> None:
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == cli_reference(), REGENERATE


def test_the_committed_configuration_reference_is_the_code() -> None:
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == config_reference(), REGENERATE


def test_every_configuration_key_is_described_and_no_description_is_stale() -> None:
    keys = set(config_keys())
    assert keys - set(DESCRIPTIONS) == set(), "describe these keys in licsync/cli/reference_config.py"
    assert set(DESCRIPTIONS) - keys == set(), "these described keys no longer exist"


def _shown_commands() -> list[tuple[str, list[str]]]:
    """Every ``licsync …`` line in a code block of the README and the docs, as words."""
    found = []
    for path in [REPO / "README.md", *sorted(p for p in DOCS.glob("*.md") if p.name != "cli.md")]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|\|\||;|\$\(|\|", line):
                    part = part.split("#")[0].strip().lstrip("(").removeprefix("until ").removeprefix("while ")
                    if part.startswith("licsync "):
                        try:
                            words = shlex.split(part)
                        except ValueError:
                            words = part.split()
                        found.append((path.name, words))
    return found


def test_every_command_the_docs_show_exists() -> None:
    root = build_command()
    shown = _shown_commands()
    assert len(shown) >= 25, shown
    for where, words in shown:
        command, rest = root, words[1:]
        while rest and rest[0].startswith("-"):  # global options and their values
            rest = rest[2:] if rest[0] in ("--config", "--now", "--log-level") else rest[1:]
        while rest and getattr(command, "commands", None) and not rest[0].startswith("-"):
            name = rest[0]
            assert name in command.commands, f"{where}: `{' '.join(words)}`: no command {name!r}"
            command, rest = command.commands[name], rest[1:]
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{where}: `{' '.join(words)}`: no option {word}"


def test_token_revoke_says_within_2_s_as_the_readme_does() -> None:
    r = licsync("token", "revoke", "--help")
    assert "within 2 s" in r.out and "at once" not in r.out


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed: pip install -e '.[docs]'")
def test_the_site_builds_strict(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
