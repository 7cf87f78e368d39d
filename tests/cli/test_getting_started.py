"""The getting-started guide, followed literally: its emulator block is read from docs/getting-started.md
and run in bash, as a newcomer would paste it — to a running daemon whose mail arrives at the SMTP
server the guide starts (aiosmtpd). Only the three ports are swapped for free ones, so the test
never collides with anything else on the machine."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.conftest import REPO

MARKER = "<!-- getting-started: emulator -->"


def guide_block() -> str:
    text = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```sh\n(.*?)```", after, flags=re.S)
    assert match, f"docs/getting-started.md: no ```sh block after {MARKER}"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_getting_started_guide_reaches_a_running_daemon_with_mail(tmp_path: Path) -> None:
    script = guide_block()
    for port in ("8443", "8025", "8080"):
        assert port in script
        script = re.sub(rf"\b{port}\b", str(free_port()), script)
    (tmp_path / "guide.sh").write_text("set -e\n" + script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICSYNC_")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", COLUMNS="100", NO_COLOR="1")
    out = tmp_path / "guide.out"
    with out.open("w") as fh:
        proc = subprocess.Popen(["bash", "guide.sh"], cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # the guide's background programs share its group
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        text = out.read_text(encoding="utf-8", errors="replace")
        assert proc.returncode == 0, text[-4000:]
        assert "is now active on contoso" in text
        assert "seats +60 −0" in text
        # the mail, as the SMTP server of the guide printed it
        assert "Subject: [licsync] contoso: over the seat maximum, 60 seats in use for 50 (120 %)" in text, text[-4000:]
        assert "Subject: [licsync] contoso: grace period started" in text
        assert text.count("To: it-admin@contoso.example") >= 2 and "---------- MESSAGE FOLLOWS" in text
        assert re.search(r"^ok: .* beat \d+s ago", text, flags=re.M), text[-2000:]  # licsync health
        assert '"consumed":60' in text.replace(" ", "")  # the API, with the token
        assert (tmp_path / "licsync-trial" / "licsync.db").is_file()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the emulator, the SMTP server and the daemon it started
        proc.wait(timeout=30)
