"""Usage errors exit 64 with one line naming the problem and the --help to read (SPEC §5); the help
itself carries no ``<str>``/``<bool>`` type labels."""

from __future__ import annotations

import re

import pytest

from licsync.cli import main
from licsync.cli.app import build_command
from tests.cli.conftest import licsync


@pytest.mark.parametrize(
    ("args", "problem", "help_of"),
    [
        (["statuss"], "No such command 'statuss'", "licsync --help"),
        (["status"], "Missing option '--tenant'", "licsync status --help"),
        (["status", "--tenant", "contoso", "--foo"], "No such option: --foo", "licsync status --help"),
        (["--now", "tomorrow", "status", "--tenant", "contoso"], "Invalid value for '--now'", "licsync --help"),
        (["import", "enrollments", "--dry-run"], "No such option: --dry-run", "licsync import enrollments --help"),
        (["activate", "--tenant", "contoso"], "Missing argument 'KEY'", "licsync activate --help"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_64(args: list[str], problem: str, help_of: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 64, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("licsync: usage error: ") and problem in lines[0], err
    assert f"(see '{help_of}')" in lines[0]
    assert "internal error" not in err


def test_the_console_script_exits_64_on_a_typo(tmp_path) -> None:
    r = licsync("statuss", cwd=tmp_path)
    assert r.code == 64, r.err
    assert r.err.strip() == ("licsync: usage error: No such command 'statuss'. Did you mean 'status'? "
                             "(see 'licsync --help')")


def test_plain_licsync_prints_the_help_and_exits_0(tmp_path) -> None:
    r = licsync(cwd=tmp_path)
    assert r.code == 0 and "Usage: licsync" in r.out + r.err


def _commands(cmd, path=()):
    subs = getattr(cmd, "commands", {})
    if not subs:
        yield path
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


def test_no_help_shows_a_type_label(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    paths = [(), *_commands(build_command())]
    assert len(paths) > 30
    for path in paths:
        out = _help(list(path), capsys)
        assert "Usage:" in out, path
        assert not re.search(r"<(str|bool|int|float|path|list\[[a-z]+\]|datetime)>", out), (path, out)
    # flags stand alone, options name their value
    main_help = _help(["sync"], capsys)
    assert re.search(r"--tenant\s+TENANT", main_help) and re.search(r"--dry-run\s+Print", main_help)


def _help(path: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    main([*path, "--help"])  # returns: --help is no error
    return capsys.readouterr().out
