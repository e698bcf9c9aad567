"""deploy/kubernetes/: every resource valid against the Kubernetes API's schemas (strict:
an unknown or misspelt field fails), on the oldest version we claim and the newest the
validator bundles; and consistent with the image and the daemon: the config in each
ConfigMap loads with the daemon's own config model, the paths it names are mounted,
the ports and the user are the Containerfile's, only one daemon remediates."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from daemon.config import load_config

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes minor the manifests are written for (docs/deploy-container.md).
OLDEST = "1.30.0"
FILES = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, doc) for p in FILES for doc in yaml.safe_load_all(p.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in resources() if d["kind"] == kind}


@pytest.mark.parametrize("version", [OLDEST, kubernetes_validate.latest_version()])
def test_every_resource_is_valid_for_the_api(version: str) -> None:
    assert len(FILES) >= 8
    for path, doc in resources():
        # raises ValidationError naming the field
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "secretwarden", path


def test_the_validator_refuses_a_misspelt_field() -> None:
    """Strict validation is what makes the test above worth having."""
    deployment = by_kind("Deployment")["secretwarden"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    bad = {**container, "securityContext": {"readOnlyRootFileSystem": True}}
    spec = {**deployment["spec"]["template"]["spec"], "containers": [bad]}
    doc = {**deployment, "spec": {**deployment["spec"], "template": {"spec": spec}}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(doc, OLDEST, strict=True)


def containerfile(instruction: str) -> str:
    text = (ROOT / "Containerfile").read_text()
    match = re.search(rf"^{instruction} (.+)$", text, re.MULTILINE)
    assert match, instruction
    return match.group(1).strip()


@pytest.mark.parametrize("name", ["secretwarden", "secretwarden-watch"])
def test_deployments_match_the_image_and_their_config(name: str, tmp_path: Path) -> None:
    deployment = by_kind("Deployment")[name]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    user, group = (int(x) for x in containerfile("USER").split(":"))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (
        user,
        group,
    )
    (main,) = spec["containers"]
    port = int(containerfile("EXPOSE"))
    assert main["ports"][0]["containerPort"] == port
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    assert main["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert main["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for container in [*spec.get("initContainers", []), main]:
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]

    # The config the pod mounts loads with the daemon's model, and every path it names
    # lies on a volume mounted into the container (writable only for the state directory).
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    config_mount = mounts["/etc/secretwarden"]
    config_map = by_kind("ConfigMap")[volumes[config_mount["name"]]["configMap"]["name"]]
    toml_text = config_map["data"]["config.toml"]
    (tmp_path / "config.toml").write_text(toml_text)
    config = load_config(tmp_path / "config.toml")
    assert config.web.listen_address.endswith(f":{port}")
    state = mounts[str(config.daemon.state_directory)]
    assert not state.get("readOnly")
    assert "emptyDir" in volumes[state["name"]]
    secret_file = config.identity.client_secret_file
    assert secret_file is not None
    secret_mount = mounts[str(secret_file.parent)]
    assert secret_mount["readOnly"] is True
    # ... and the init container puts the secret there, mode 0400, from the Secret.
    (init,) = spec["initContainers"]
    assert init["command"][:3] == ["install", "-m", "0400"]
    assert init["command"][-1] == f"/secret-volume/{secret_file.name}"
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert init_mounts[str(secret_file.parent)] == secret_mount["name"]
    secret = by_kind("Secret")[volumes[init_mounts["/secret-volume"]]["secret"]["secretName"]]
    assert secret_file.name in secret["stringData"]
    assert init["image"] == main["image"]

    remediates = tomllib.loads(toml_text).get("remediation", {}).get("enabled", False)
    if remediates:
        # one remediating daemon, never two at once (the run lock is per pod)
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
    else:
        assert deployment["spec"]["replicas"] >= 2


def test_the_ha_pod_disruption_budget_keeps_one_watcher() -> None:
    (pdb,) = by_kind("PodDisruptionBudget").values()
    assert pdb["spec"]["minAvailable"] == 1
    selected = [
        name
        for name, d in by_kind("Deployment").items()
        if pdb["spec"]["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert selected == ["secretwarden-watch"]


def test_the_service_targets_the_metrics_port() -> None:
    service = by_kind("Service")["secretwarden"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == int(containerfile("EXPOSE"))
    assert port["targetPort"] == "metrics"


def test_the_images_name_carries_the_release_version() -> None:
    from daemon import __version__

    for deployment in by_kind("Deployment").values():
        spec = deployment["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert container["image"] == f"secretwarden:{__version__}"


@pytest.mark.parametrize("directory", [DEPLOY, DEPLOY / "ha"])
def test_each_kustomization_applies_every_file_beside_it(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    beside = {p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(beside)
