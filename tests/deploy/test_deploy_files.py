"""deploy/: what the compose file, the systemd unit and the Kubernetes manifests promise, checked
against licsync itself (the syntax checks are deploy/check's, run by .ci/run)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from licsync.config import load_settings
from tests.deploy.dockerfile import REPO

DEPLOY = REPO / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for d in _docs(f):
            out[(d["kind"], d["metadata"]["name"])] = d
    return out


def test_compose_runs_migration_then_two_daemons_and_the_api() -> None:
    (compose,) = _docs(DEPLOY / "compose" / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"db", "migrate", "daemon", "api"}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["daemon"]["deploy"]["replicas"] == 2
    assert services["daemon"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("daemon", "api"):
        svc = services[name]
        assert svc["healthcheck"]["test"] == ["CMD", "licsync", "healthcheck"]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert "password" not in svc["environment"]["LICSYNC_DATABASE__URL"].split("@")[0].split("//")[1]
        for secret in svc["secrets"]:
            assert secret in compose["secrets"], secret
    assert all(p.startswith("127.0.0.1:") for p in services["api"]["ports"])


def test_systemd_unit_feeds_credentials_as_file_references(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "licsync.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE))
    for key, want in {"DynamicUser": "yes", "ProtectSystem": "strict", "StateDirectory": "licsync",
                      "NoNewPrivileges": "yes", "RestartPreventExitStatus": "78"}.items():
        assert settings.get(key) == want, key
    cred, _, source = settings["LoadCredential"].partition(":")
    assert source.startswith("/etc/licsync/credentials/")
    env = dict(kv.split("=", 1) for kv in re.findall(r"^Environment=(\S+=\S+)$", unit, re.MULTILINE))
    ref = env["LICSYNC_TENANT__CONTOSO__CLIENT_SECRET"]
    assert ref == f"file:%d/{cred}"
    # what licsync reads once systemd expanded %d to $CREDENTIALS_DIRECTORY
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / cred).write_text("s3cret\n")
    config = tmp_path / "licsync.toml"
    config.write_text(filled_in((REPO / "config" / "licsync.example.toml").read_text()))
    s = load_settings(config, environ={"LICSYNC_TENANT__CONTOSO__CLIENT_SECRET": ref.replace("%d", str(creds))})
    assert s.tenant[0].client_secret is not None and s.tenant[0].client_secret.resolve() == "s3cret"
    assert "run --migrate" in settings["ExecStart"]


def filled_in(config: str) -> str:
    """The configuration as an admin fills it in: the placeholders licsync refuses, replaced."""
    return config.replace("REPLACE-WITH-VENDOR-PUBLIC-KEY", "cHVibGlj").replace(
        "00000000-0000-0000-0000-000000000000", "11111111-2222-3333-4444-555555555555")


def test_kubernetes_config_is_valid_licsync_configuration(tmp_path: Path) -> None:
    objs = _k8s()
    toml = objs[("ConfigMap", "licsync-config")]["data"]["licsync.toml"]
    (tmp_path / "licsync.toml").write_text(filled_in(toml))
    secret = tmp_path / "contoso-client-secret"
    secret.write_text("x")
    ref = re.search(r'client_secret = "file:(\S+)"', toml)
    assert ref is not None
    s = load_settings(tmp_path / "licsync.toml", environ={"LICSYNC_TENANT__CONTOSO__CLIENT_SECRET": f"file:{secret}"})
    assert s.api.host == "0.0.0.0" and s.database.url.startswith("postgresql+psycopg://")
    # the file the config names is where the Deployments mount the Secret's key
    mount_dir, _, key = ref.group(1).rpartition("/")
    for comp in ("daemon", "api"):
        pod = objs[("Deployment", f"licsync-{comp}")]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert mounts["secrets"] == mount_dir
        assert key in {i["key"] for i in vols["secrets"]["secret"]["items"]}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["fsGroup"] == 10001
        assert c["livenessProbe"] and c["startupProbe"]
    api = objs[("Deployment", "licsync-api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert objs[("Job", "licsync-migrate")]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_metrics_stay_inside_the_cluster() -> None:
    objs = _k8s()
    paths = [p["path"] for r in objs[("Ingress", "licsync")]["spec"]["rules"] for p in r["http"]["paths"]]
    assert not any("/metrics".startswith(p) and p != "/" for p in paths) and "/metrics" not in paths
    exact_root = [p for r in objs[("Ingress", "licsync")]["spec"]["rules"] for p in r["http"]["paths"]
                  if p["path"] == "/"]
    assert all(p["pathType"] == "Exact" for p in exact_root)
    deny = objs[("NetworkPolicy", "licsync-default-deny")]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny


@pytest.mark.parametrize("doc", ["docs/deploy.md"])
def test_the_guide_covers_each_deployment(doc: str) -> None:
    text = (REPO / doc).read_text()
    for section in ("## Container", "## Docker Compose", "## systemd", "## Kubernetes", "## Upgrading"):
        assert section in text, section
    for path in re.findall(r"\(\.\./(deploy/[^)]+)\)", text):
        assert (REPO / path).exists(), path
