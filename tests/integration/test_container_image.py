"""The container image (Containerfile) built and started the way docs/deploy-container.md
says, on this machine: a base image made from Debian's packages with mmdebstrap (no
registry image is reachable here; cached between runs), the locked wheels built on the
host, `buildah build`, then the image's own ENTRYPOINT and CMD started with
`buildah run --isolation=chroot` (podman run fails on setrlimit here) against the
sandbox, as the image's non-root user, with every directory of the image mounted
read-only and only the config, the secret and the state volume mounted from outside.
It must serve /metrics with every probe succeeding, pass its HEALTHCHECK, and stop
cleanly on SIGTERM. Needs root and buildah, podman, mmdebstrap (make test installs
them: scripts/install-system-deps); it fails rather than skips when they are missing.

About 2 minutes on an idle 2-core machine with the base cached, 45 s more the first
time (docs/deploy-container.md has the measurements): the image build installs and
byte-compiles the Azure SDKs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from daemon import __version__
from daemon.sandbox_config import sandbox_config_toml
from sandbox.testing import SandboxHandle

ROOT = Path(__file__).parents[2]
# What the base needs: Python 3.11 (the wheels are built by the host's 3.11) with venv,
# and the CA bundle a real deployment talks to Azure with.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_MIRROR = "http://deb.debian.org/debian"

pytestmark = pytest.mark.image


def run(args: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(args[:4])} ... exited {proc.returncode}:\n" + (
        proc.stdout[-2000:] + proc.stderr[-3000:]
    )
    return proc  # type: ignore[no-any-return]


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, re.MULTILINE)
    return {normal(name): version for name, version in pins}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_tools() -> None:
    """Fail (not skip) with the reason: CI must run this test."""
    missing = [t for t in ("buildah", "podman", "mmdebstrap") if shutil.which(t) is None]
    assert not missing, f"{missing} not installed: run scripts/install-system-deps"
    assert os.geteuid() == 0, "buildah --isolation=chroot needs root here (CI runs as root)"


def base_image(tmp: Path) -> str:
    """A minimal Debian with Python, imported as a local image; built once per package
    list (the tag is its hash) and reused, since the test only needs *a* Python 3.11."""
    key = hashlib.sha256(repr((BASE_SUITE, BASE_PACKAGES, BASE_MIRROR)).encode()).hexdigest()
    tag = f"localhost/secretwarden-test-base:{key[:12]}"
    if subprocess.run(
        ["buildah", "inspect", "--type", "image", tag], capture_output=True
    ).returncode:
        tarball = tmp / "base.tar"
        include = ",".join(BASE_PACKAGES)
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={include}",
                BASE_SUITE,
                str(tarball),
                BASE_MIRROR,
            ],
            timeout=300,
        )
        run(["podman", "import", str(tarball), tag], timeout=120)
        tarball.unlink()
    return tag


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    check_tools()
    tmp = tmp_path_factory.mktemp("image")
    base = base_image(tmp)
    # The build context `make image` prepares: dist/ (the release wheel) and
    # build/wheels/ (the locked dependencies), in a copy so the checkout stays as it is.
    ctx = tmp / "context"
    ctx.mkdir()
    for name in ("Containerfile", ".containerignore", "requirements.lock"):
        shutil.copy(ROOT / name, ctx / name)
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(ctx / "dist"), str(ROOT)],
        timeout=120,
    )
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--require-hashes",
            "--no-deps",
            "-r",
            str(ROOT / "requirements.lock"),
            "-w",
            str(ctx / "build" / "wheels"),
        ],
        timeout=300,
    )
    tag = f"localhost/secretwarden-test:{uuid.uuid4().hex[:8]}"
    run(
        [
            "buildah",
            "build",
            "--isolation=chroot",
            "--format",
            "docker",
            "--layers=false",
            "--build-arg",
            f"BASE={base}",
            "-t",
            tag,
            "-f",
            str(ctx / "Containerfile"),
            str(ctx),
        ],
        timeout=600,
    )
    try:
        yield tag
    finally:
        subprocess.run(["buildah", "rmi", "--force", tag], capture_output=True)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def the_daemon(buildah_pid: int) -> int:
    """The container's main process: the one `python3 .../secretwarden` under buildah."""
    for pid in descendants(buildah_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"python3") and argv[1].endswith(b"/bin/secretwarden"):
            return pid
    raise AssertionError("no secretwarden process under buildah run")


def metrics(address: str) -> dict[str, float]:
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_the_image_runs_read_only_as_non_root_against_the_sandbox(
    image: str, sb: SandboxHandle, tmp_path: Path
) -> None:
    info = json.loads(run(["buildah", "inspect", "--type", "image", image], timeout=30).stdout)
    config = info["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert "9877/tcp" in config["ExposedPorts"]
    assert config["Labels"]["org.opencontainers.image.title"] == "secretwarden"
    healthcheck = info["Docker"]["config"]["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD"
    assert "/-/healthy" in healthcheck[-1]

    # What an operator mounts: the config and the sandbox's CA (read-only), the secret,
    # and the state volume (owned by the image's user). The secret arrives as Kubernetes
    # mounts a Secret with fsGroup (root:10001, 0440), which the daemon refuses, and goes
    # through deploy/kubernetes/deployment.yaml's init container, which copies it 0400.
    etc, volume, secrets, state = (tmp_path / n for n in ("etc", "volume", "secrets", "state"))
    for d in (etc, volume, secrets, state):
        d.mkdir()
    shutil.copy(sb.ca_file, etc / "sandbox-ca.pem")
    inside = {**sb.describe, "ca_file": "/etc/secretwarden/sandbox-ca.pem"}
    (etc / "config.toml").write_text(
        sandbox_config_toml(
            inside,
            state_directory=Path("/var/lib/secretwarden"),
            secret_file=Path("/run/secrets/secretwarden/client-secret"),
        )
    )
    (volume / "client-secret").write_text(sb.describe["operator"]["client_secret"] + "\n")
    os.chown(volume / "client-secret", 0, 10001)
    (volume / "client-secret").chmod(0o440)
    os.chown(secrets, 0, 10001)  # an emptyDir with fsGroup
    secrets.chmod(0o2770)
    os.chown(state, 10001, 10001)
    etc.chmod(0o755)
    for f in etc.iterdir():
        f.chmod(0o644)
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]

    ctr = run(["buildah", "from", "--pull-never", image], timeout=60).stdout.strip()
    try:
        rootfs = Path(run(["buildah", "mount", ctr], timeout=30).stdout.strip())
        # Every real directory of the image over itself, read-only: a write anywhere but
        # the state volume fails, as with readOnlyRootFilesystem (Kubernetes) or --read-only.
        ro_image = [
            f"type=bind,src={d},dst=/{d.name},ro=true"
            for d in sorted(rootfs.iterdir())
            if d.is_dir() and not d.is_symlink() and d.name not in ("dev", "proc", "sys", "run")
        ]
        as_user = ["buildah", "run", "--isolation=chroot", "--user", config["User"]]
        as_user += [arg for m in ro_image for arg in ("--mount", m)]
        etc_mount = ["--mount", f"type=bind,src={etc},dst=/etc/secretwarden,ro=true"]
        check = [*as_user, *etc_mount, "--mount"]
        check += [f"type=bind,src={volume},dst=/run/secrets/secretwarden,ro=true", ctr, "--"]
        config_check = ["run", "--config.check", "--config.file", "/etc/secretwarden/config.toml"]
        refused = subprocess.run(
            [*check, "secretwarden", *config_check],
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2
        assert "is readable by its group (mode 440)" in refused.stderr, refused.stderr[-2000:]
        copy = [*as_user, "--mount", f"type=bind,src={volume},dst=/secret-volume,ro=true"]
        copy += ["--mount", f"type=bind,src={secrets},dst=/run/secrets/secretwarden,rw=true"]
        run([*copy, ctr, "--", *init["command"]], timeout=60)
        copied = (secrets / "client-secret").stat()
        assert (copied.st_uid, copied.st_mode & 0o777) == (10001, 0o400)

        # The image's venv holds requirements.lock and the wheel, nothing else.
        listing = "import importlib.metadata as m\n"
        listing += "for d in m.distributions(): print(d.name, d.version)"
        listed = run([*as_user, ctr, "--", "python3", "-c", listing], timeout=60).stdout.split()
        names, versions = listed[::2], listed[1::2]
        installed = {normal(n): v for n, v in zip(names, versions, strict=True)}
        assert installed == {**locked(), "secretwarden": __version__}

        mounts = [
            f"type=bind,src={etc},dst=/etc/secretwarden,ro=true",
            f"type=bind,src={secrets},dst=/run/secrets/secretwarden,ro=true",
            f"type=bind,src={state},dst=/var/lib/secretwarden,rw=true",
        ]
        # The image's own ENTRYPOINT and CMD; one flag appended (the last one wins) puts
        # /metrics on a free loopback port, since chroot isolation shares the host's network.
        address = f"127.0.0.1:{free_port()}"
        argv = [*config["Entrypoint"], *config["Cmd"], "--web.listen-address", address]
        assert argv[:4] == ["secretwarden", "run", "--config.file", "/etc/secretwarden/config.toml"]
        base = [*as_user, *(arg for m in mounts for arg in ("--mount", m))]
        log = tmp_path / "container.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*base, ctr, "--", *argv], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                try:
                    if httpx.get(f"http://{address}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
            s = metrics(address)
            for probe in ("expiry", "health", "graph", "reference"):
                assert s[f'secretwarden_probe_success{{probe="{probe}",target="portal"}}'] == 1
            assert s['secretwarden_keyvault_secret_matches_credential{target="portal"}'] == 1

            # The HEALTHCHECK, as the image declares it, from inside the container, pointed
            # at the port this run listens on.
            check = [a.replace(":9877/", f":{address.split(':')[1]}/") for a in healthcheck[1:]]
            run([*base, ctr, "--", *check], timeout=60)
            # ... and the premise: with these mounts even root cannot write to the image.
            write = ["python3", "-c", "open('/opt/secretwarden/x', 'w')"]
            root = [a if a != config["User"] else "0:0" for a in base]
            refused = subprocess.run([*root, ctr, "--", *write], capture_output=True, text=True)
            assert "Read-only file system" in refused.stderr, refused.stderr[-2000:]

            # SIGTERM to the container's main process (what `docker stop` and a pod's
            # termination send): a clean stop with exit status 0.
            daemon = the_daemon(proc.pid)
            assert Path(f"/proc/{daemon}/status").read_text().count("\t10001\t") >= 2
            os.kill(daemon, signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                for pid in descendants(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(10)
    finally:
        subprocess.run(["buildah", "umount", ctr], capture_output=True)
        subprocess.run(["buildah", "rm", ctr], capture_output=True)

    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names[-1] == "daemon stopped", names[-5:]
    started = next(e for e in events if e["event"] == "daemon started")
    assert started["version"] == __version__
    assert sb.describe["operator"]["client_secret"] not in log.read_text()
