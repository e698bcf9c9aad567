"""deploy/kubernetes/: every resource valid against the Kubernetes API's schemas (strict:
an unknown or misspelt field fails), on the oldest version we claim and the newest the
validator bundles; and consistent with the image and the daemon: the config in each
ConfigMap loads with the daemon's own config model, the paths it names are mounted,
the ports and the user are the Containerfile's, only one daemon remediates unless the
daemons share Azure Blob Storage leases (ha/, docs/ha.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from daemon.config import Config, load_config

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


def check_pod(deployment: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every Deployment shares with the image: selector, user, port, probes, scrape
    annotations, a locked-down container. Returns the pod spec and its main container."""
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
    return spec, main


def mounted_config(
    spec: dict[str, Any], main: dict[str, Any], tmp_path: Path
) -> tuple[str, Config]:
    """The config.toml the pod mounts, loaded with the daemon's own loader."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    config_map = by_kind("ConfigMap")[
        volumes[mounts["/etc/secretwarden"]["name"]]["configMap"]["name"]
    ]
    toml_text: str = config_map["data"]["config.toml"]
    (tmp_path / "config.toml").write_text(toml_text)
    config = load_config(tmp_path / "config.toml")
    assert config.web.listen_address.endswith(f":{int(containerfile('EXPOSE'))}")
    state = mounts[str(config.daemon.state_directory)]
    assert not state.get("readOnly")
    assert "emptyDir" in volumes[state["name"]]
    return toml_text, config


def test_the_single_daemon_matches_the_image_and_its_config(tmp_path: Path) -> None:
    deployment = by_kind("Deployment")["secretwarden"]
    spec, main = check_pod(deployment)
    port = int(containerfile("EXPOSE"))

    # The config the pod mounts loads with the daemon's model, and every path it names
    # lies on a volume mounted into the container (writable only for the state directory).
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    _, config = mounted_config(spec, main, tmp_path)
    assert config.web.listen_address.endswith(f":{port}")
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

    # one remediating daemon without leases, never two at once (the run lock is per pod)
    assert config.remediation.enabled
    assert config.ha.backend == "none"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def ha_required_grace_seconds() -> int:
    """The grace period docs/ha.md asks a Kubernetes deployment for."""
    text = (ROOT / "docs" / "ha.md").read_text()
    match = re.search(r"`terminationGracePeriodSeconds` of at least (\d+) s", text)
    assert match, "docs/ha.md names the grace period the HA pods need"
    return int(match.group(1))


def uncomment(text: str, marker: str) -> str:
    """The alternative between ``# >>> marker`` and ``# <<< marker``, uncommented the way
    an operator would (one ``# `` off each line), so it is validated too."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in (f"# >>> {marker}", f"# <<< {marker}"):
            inside = stripped.startswith("# >>>")
            continue
        out.append(re.sub(r"^(\s*)# ?", r"\1", line) if inside else line)
    assert not inside, f"unterminated {marker} block"
    return "\n".join(out) + "\n"


def test_the_ha_deployment_runs_remediating_replicas_on_leases(tmp_path: Path) -> None:
    deployment = by_kind("Deployment")["secretwarden-ha"]
    spec, main = check_pod(deployment)
    _, config = mounted_config(spec, main, tmp_path)
    assert config.remediation.enabled
    assert config.ha.backend == "azure_blob"
    assert config.ha.account_url is not None
    assert config.ha.account_url.startswith("https://")
    # By default the storage credential is the pod's workload identity: no secret file.
    assert config.ha.connection_string_file is None
    assert config.identity.kind == "default"
    assert config.identity.client_secret_file is None
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"]
        == "true"
    )
    assert "initContainers" not in spec

    assert deployment["spec"]["replicas"] >= 2
    # Leases, not a per-pod lock, keep runs apart: old and new pods may overlap, and a
    # rollout never leaves zero daemons.
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    # Enough time for SIGTERM to stop the runs and release every lease; at least what
    # docs/ha.md asks, which covers a lease that lapses instead (lease_seconds).
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= ha_required_grace_seconds()
    assert grace >= config.ha.lease_seconds
    # One replica per node where it can.
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_ha_connection_string_alternative_is_valid_when_uncommented(tmp_path: Path) -> None:
    """The commented connection_string_file variant: the Deployment validates, the
    config loads, and the init container copies the Secret's file, mode 0400, to the
    path the config names."""
    ha = DEPLOY / "ha"
    (deployment,) = yaml.safe_load_all(
        uncomment((ha / "deployment-ha.yaml").read_text(), "connection_string_file")
    )
    for version in (OLDEST, kubernetes_validate.latest_version()):
        kubernetes_validate.validate(deployment, version, strict=True)
    (config_map,) = yaml.safe_load_all((ha / "configmap-ha.yaml").read_text())
    toml_text = config_map["data"]["config.toml"].replace(
        "# connection_string_file", "connection_string_file"
    )
    (tmp_path / "config.toml").write_text(toml_text)
    config = load_config(tmp_path / "config.toml")
    cs_file = config.ha.connection_string_file
    assert cs_file is not None

    spec = deployment["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts[str(cs_file.parent)]["readOnly"] is True
    (init,) = spec["initContainers"]
    assert init["command"][:3] == ["install", "-m", "0400"]
    assert init["command"][-1] == f"/secret-volume/{cs_file.name}"
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert init_mounts[str(cs_file.parent)] == mounts[str(cs_file.parent)]["name"]
    assert "emptyDir" in volumes[init_mounts[str(cs_file.parent)]]
    assert "secret" in volumes[init_mounts["/secret-volume"]]
    assert init["image"] == main["image"]


def test_the_ha_pod_disruption_budget_keeps_one_replica() -> None:
    (pdb,) = by_kind("PodDisruptionBudget").values()
    assert pdb["spec"]["minAvailable"] == 1
    selected = [
        name
        for name, d in by_kind("Deployment").items()
        if pdb["spec"]["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert selected == ["secretwarden-ha"]


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
