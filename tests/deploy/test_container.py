"""The container, as docs/deploy.md runs it, without Docker: the image's file layout is laid out in
a directory (its volume, its configuration, secrets owned as the doc says) and each documented
``docker run`` is run as the image would run it — its ENV, WORKDIR, ENTRYPOINT and CMD, with the
documented mounts mapped into that directory. The HEALTHCHECK command must pass for ``run`` and
``serve`` alike, the API must listen on every interface, and the state must land on the volume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from licsync.graph.emulator import EmulatorServer
from tests.daemon.conftest import free_port, stop, wait_for
from tests.deploy.dockerfile import REPO, DockerRun, Image, documented_runs, final_stage


@pytest.fixture(scope="module")
def image() -> Image:
    return final_stage()


def test_image_promises(image: Image) -> None:
    assert image.user == "10001:10001"
    assert image.workdir == "/var/lib/licsync" and image.workdir in image.volumes
    assert image.env["LICSYNC_API__LISTEN"].startswith("0.0.0.0:")
    assert image.env["LICSYNC_API__LISTEN"].rpartition(":")[2] in image.exposed
    assert image.entrypoint == ["licsync"] and image.cmd == ["run", "--migrate"]
    assert image.healthcheck == ["licsync", "healthcheck"]
    for key in ("title", "version", "revision", "created", "licenses", "description"):
        assert f"org.opencontainers.image.{key}" in image.labels, key
    assert "PYTHON_IMAGE" in (REPO / "Dockerfile").read_text() and "@sha256" in (REPO / "Dockerfile").read_text()
    # uid 10001 must be able to read the secrets the doc mounts
    assert "install -o 10001 -g 10001 -m 0400" in (REPO / "docs" / "deploy.md").read_text()


def test_dockerignore_keeps_the_context_to_what_the_image_copies(image: Image) -> None:
    rules = [r for r in (REPO / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*", "the context starts empty and names what it needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    build_copies = {"pyproject.toml", "README.md", "licsync"}  # the build stage's COPY lines
    for sources, _dest in image.copies:
        build_copies.update(sources)
    for src in build_copies:
        assert (REPO / src).exists(), src
        assert src in allowed, f"{src} is copied but excluded by .dockerignore"
    assert not {"tests", ".git", "benchmarks"} & allowed


def _layout(root: Path, image: Image, server: EmulatorServer, run: DockerRun) -> dict[str, str]:
    """Lay out the image's filesystem and the host's mounts; return the process environment."""
    tenant = server.add_tenant()
    cfg_host = root / "host" / "etc" / "licsync"
    secrets = cfg_host / "secrets"
    secrets.mkdir(parents=True)
    secret = secrets / "contoso"
    secret.write_text(tenant.client_secret)
    secret.chmod(0o400)
    secrets.chmod(0o500)  # as documented: owned by 10001 (here: the user running the test), 0500/0400
    volume_root = root / "volumes"
    mapping: dict[str, Path] = {}
    for src, target, _ro in run.volumes:
        host = cfg_host if src == "/etc/licsync" else volume_root / src
        host.mkdir(parents=True, exist_ok=True)
        mapping[target] = host
    assert set(image.volumes) <= set(mapping), f"the doc mounts no volume on {image.volumes}"
    assert "/etc/licsync" in mapping

    example = tomllib.loads((REPO / "config" / "licsync.example.toml").read_text())
    t = server.tenant_config("contoso", tenant=tenant)
    example["tenant"][0].update(tenant_id=t["tenant_id"], client_id=t["client_id"], authority=t["authority"],
                                graph_url=t["graph_url"], ca_bundle=str(t["ca_bundle"]),
                                client_secret=f"file:{mapping['/etc/licsync'] / 'secrets' / 'contoso'}")
    example["notifications"]["transport"] = "none"
    db_path = example["database"]["url"].removeprefix("sqlite:///")
    for target, host in mapping.items():  # the database's container path → the laid-out volume
        if db_path.startswith(target + "/"):
            example["database"]["url"] = "sqlite:///" + str(host) + db_path[len(target):]
    example.pop("vendor")
    (cfg_host / "licsync.toml").write_text(tomli_w.dumps(example))

    env = {k: v for k, v in os.environ.items() if not k.startswith("LICSYNC_")}
    env.update(image.env)
    env.update(run.env)
    for key, value in env.items():  # container paths → the laid-out directories
        for target, host in mapping.items():
            if value.startswith(target + "/"):
                env[key] = str(host) + value[len(target):]
    port = free_port()
    env["LICSYNC_API__LISTEN"] = f"0.0.0.0:{port}"  # the image's address, on a port free here
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["WORKDIR"] = str(mapping[image.workdir])
    return env


def _licsync(argv: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "licsync", *argv[1:]], env=env, cwd=env["WORKDIR"],
                          capture_output=True, text=True, timeout=60, **kw)


def _started_line(err: str) -> dict[str, Any]:
    for line in err.splitlines():
        if line.startswith("{") and ('"daemon_started"' in line or '"api_listening"' in line):
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no start line with the listen address in: {err}")


def _cycle_line(err: str) -> dict[str, Any] | None:
    """A cycle's one line (JSON: not a terminal): its summary when it finished, its error when not."""
    for line in err.splitlines():
        if line.startswith("{") and ('"cycle_finished"' in line or '"cycle_failed"' in line):
            event = json.loads(line)
            assert event.get("line") or event.get("error"), event
            return event  # type: ignore[no-any-return]
    return None


def test_documented_runs_work_on_the_image_layout(tmp_path: Path, image: Image, graph_server: EmulatorServer) -> None:
    runs = [r for r in documented_runs() if r.image == "licsync"]
    detached = [r for r in runs if r.detach]
    assert {tuple(r.args) for r in detached} >= {(), ("serve", "--migrate")}, "the doc shows run and serve"
    for n, run in enumerate(detached):
        env = _layout(tmp_path / str(n), image, graph_server, run)
        argv = image.entrypoint + (run.args or image.cmd)
        logs = tmp_path / f"{n}.log"
        with logs.open("w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "licsync", *argv[1:]], env=env, cwd=env["WORKDIR"],
                                    stdout=subprocess.PIPE, stderr=log_file, text=True)
            try:
                wait_for("the HEALTHCHECK to pass",
                         lambda env=env: _licsync(image.healthcheck, env).returncode == 0, timeout=60, proc=proc)
                assert (Path(env["WORKDIR"]) / "licsync.db").is_file(), "the state is not on the volume"
                if not run.args:  # the daemon: its cycle's line reaches the log; a documented command works beside
                    wait_for("a cycle's log line", lambda logs=logs: _cycle_line(logs.read_text()), timeout=60,
                             proc=proc)
                    for once in (r for r in runs if not r.detach):
                        out = _licsync(image.entrypoint + once.args, env)
                        assert out.returncode == 0, (once.args, out.stderr)
            finally:
                code, _ = stop(proc, signal.SIGTERM)
        err = logs.read_text()
        assert code == 0, err
        line = _started_line(err)
        assert line["listen"] == env["LICSYNC_API__LISTEN"]
        assert line["level"] == "info"


def test_healthcheck_reads_the_heartbeat_without_an_api(tmp_path: Path, image: Image,
                                                        graph_server: EmulatorServer) -> None:
    run = DockerRun(detach=True, volumes=[("state", "/var/lib/licsync", False), ("/etc/licsync", "/etc/licsync", True)],
                    env={}, ports=[], image="licsync", args=["run", "--migrate", "--no-api"])
    env = _layout(tmp_path, image, graph_server, run)
    assert _licsync(image.healthcheck, env).returncode != 0  # nothing runs yet
    proc = subprocess.Popen([sys.executable, "-m", "licsync", *run.args], env=env, cwd=env["WORKDIR"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = wait_for("the heartbeat", lambda: (r := _licsync(image.healthcheck, env)).returncode == 0 and r,
                       timeout=60, proc=proc)
        assert "beat" in out.stdout
    finally:
        code, err = stop(proc, signal.SIGTERM)
    assert code == 0, err

