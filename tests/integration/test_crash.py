"""Killed at every step boundary, then started again: the rotation converges.

``secretwarden rotate`` runs as a real subprocess with
``SECRETWARDEN_CRASH_AFTER_STEP=<step>:<phase>``, which SIGKILLs it right after that
journal line is on disk. Then the daemon's recovery runs (``Remediator.recover``, what
``secretwarden run`` and ``secretwarden rotate`` do on start) and must leave exactly one
Key Vault value that works, the app healthy on it, no orphan credential, and the old
credential removed; the app's own Graph calls never got a 401.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_rotation_fixtures import TARGET, Rig, assert_converged

from daemon.config import load_config
from daemon.remediate_cli import print_status
from daemon.sandbox_config import sandbox_config_toml
from remediation.journal import CRASH_ENV
from remediation.lock import TargetBusy

pytest_plugins = ("test_rotation_fixtures",)

BOUNDARIES = [
    "run:begin",
    "plan:done",
    "add_password:begin",
    "add_password:returned",  # Graph answered; the journal has no keyId yet
    "add_password:done",
    "wait_propagation:begin",
    "wait_propagation:done",
    "write_keyvault:begin",
    "write_keyvault:done",
    "reload.refresh:begin",
    "reload.refresh:done",
    "verify:done",
    "remove_old:begin",
    "remove_old:done",
]
REMEDIATION = """
[remediation]
propagation_timeout_seconds = 20
propagation_poll_seconds = 0.2
refresh_timeout_seconds = 5
cold_start_timeout_seconds = 10
verify_poll_seconds = 0.2
step_attempts = 2
"""


def write_config(sb: Any, tmp: Path, state_dir: Path) -> Path:
    secret = tmp / "operator.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, sb.describe["operator"]["client_secret"].encode())
    os.close(fd)
    toml = sandbox_config_toml(
        sb.describe, state_directory=state_dir, secret_file=secret, retry_total=0
    )
    path = tmp / "secretwarden.toml"
    path.write_text(toml + REMEDIATION)
    return path


def rotate(config: Path, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "rotate",
            "--config.file",
            str(config),
            "--target",
            TARGET,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sandbox_secrets(sb: Any) -> set[str]:
    """Every secret the tenant holds now: credentials (orphans too), Key Vault, operator."""
    portal = sb.thread.portal
    creds: list[str] = sb.thread.call(lambda: [c.secret_text for c in portal.credentials])
    kv = [v["value"] for v in sb.state()["keyvault"]["versions"]]
    return {*creds, *kv, sb.describe["operator"]["client_secret"]}


def assert_no_secret_on_disk(state_dir: Path, secrets: set[str], *outputs: str) -> None:
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert files  # the journal and the lock at least
    texts = {str(p): p.read_bytes().decode(errors="replace") for p in files}
    texts.update({f"output {i}": out for i, out in enumerate(outputs)})
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret value is in {where}"


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_killed_at_a_step_boundary_then_recovered_converges(
    sb: Any, rig: Rig, tmp_path: Path, boundary: str
) -> None:
    old = sb.in_use_key_id()
    config = write_config(sb, tmp_path, rig.state_dir)
    proc = rotate(config, crash=boundary)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    unfinished = rig.rem.journal(TARGET).unfinished()
    assert unfinished is not None
    secrets = sandbox_secrets(sb)  # a value lost in the crash is still here, as an orphan

    [outcome] = await rig.rem.recover()
    assert outcome.outcome == "success", outcome.detail
    st = assert_converged(sb, gone=[old])
    assert len(st["credentials"]) == 1  # no orphan, old one removed
    assert rig.rem.journal(TARGET).unfinished() is None
    secrets |= sandbox_secrets(sb)
    assert_no_secret_on_disk(rig.state_dir, secrets, proc.stdout, proc.stderr)


ROLLBACK_BOUNDARIES = [
    "verify:failed",
    "rollback.restore:begin",
    "rollback.restore:done",
    "rollback.remove_new:begin",
]


@pytest.mark.parametrize("boundary", ROLLBACK_BOUNDARIES)
async def test_killed_during_a_rollback_then_recovered_rolls_back(
    sb: Any, rig: Rig, tmp_path: Path, boundary: str
) -> None:
    """The app never gets healthy on the new secret; killed while giving up on it or
    rolling back, the recovery finishes the rollback (without climbing the new
    version's ladder again): the old value in Key Vault, the app on it, the new
    credential gone, the old one kept."""
    old = sb.in_use_key_id()
    old_value = sb.state()["keyvault"]["versions"][-1]["value"]
    sb.faults(never_healthy=True)
    config = write_config(sb, tmp_path, rig.state_dir)
    short = config.read_text().replace("_timeout_seconds = 5", "_timeout_seconds = 1")
    config.write_text(short.replace("_timeout_seconds = 10", "_timeout_seconds = 1"))
    proc = rotate(config, crash=boundary)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr

    [outcome] = await rig.rem.recover()
    assert outcome.outcome == "rolled_back", outcome.detail
    st = sb.state()
    assert [c["keyId"] for c in st["credentials"]] == [old]
    kv = st["keyvault"]
    assert (
        next(v for v in kv["versions"] if v["version"] == kv["current_version"])["value"]
        == old_value
    )
    assert st["site"]["resolved_version"] == kv["current_version"]
    [run] = rig.rem.journal(TARGET).runs()
    ladder = [e for e in run.entries if e.step.startswith("reload.") and e.phase == "begin"]
    assert len(ladder) == 4  # one climb (4 rungs) for the new version, in the killed process only


async def test_the_rotate_command_started_again_finishes_the_interrupted_run(
    sb: Any, rig: Rig, tmp_path: Path
) -> None:
    old = sb.in_use_key_id()
    config = write_config(sb, tmp_path, rig.state_dir)
    assert rotate(config, crash="add_password:done").returncode == -signal.SIGKILL
    proc = rotate(config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming run" in proc.stdout
    assert "compensate" in proc.stdout  # the lost value's credential went first
    st = assert_converged(sb, gone=[old])
    assert len(st["credentials"]) == 1
    runs = rig.rem.journal(TARGET).runs()
    assert [r.outcome for r in runs] == ["compensated", "success"]

    out = io.StringIO()
    print_status(load_config(config), out)
    text = out.getvalue()
    assert f"target {TARGET}" in text
    assert "current:" not in text
    assert "rotate success in" in text
    assert "trigger: restart after lost value" in text


async def test_one_remediation_per_target_across_processes(
    sb: Any, rig: Rig, tmp_path: Path
) -> None:
    """While one process holds the target, the rotate command, the daemon's triggers
    and its recovery all stand back, and nothing is written to Azure."""
    old = sb.in_use_key_id()
    config = write_config(sb, tmp_path, rig.state_dir)
    assert rotate(config, crash="add_password:done").returncode == -signal.SIGKILL
    writes_before = sb.state()["counters_by_method"]
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(rig.state_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline() == "held\n"
        proc = rotate(config)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"target {TARGET}: another secretwarden process (pid {other.pid})" in proc.stderr
        assert await rig.rem.recover() == []
        result = rig.rem.trigger(TARGET, "heal", "test")
        assert result.status == "busy"
        assert f"pid {other.pid}" in result.detail
        with pytest.raises(TargetBusy):
            await rig.rem.run(TARGET, "rotate", "test")
        assert sb.state()["counters_by_method"] == writes_before
        assert rig.rem.journal(TARGET).unfinished() is not None
        assert f"IN PROGRESS at add_password (pid {other.pid})" in status_text(config)
    finally:
        other.kill()
        other.wait()
    assert "INTERRUPTED at add_password; finished when" in status_text(config)
    [outcome] = await rig.rem.recover()  # the owner died: the run is ours to finish
    assert outcome.outcome == "success", outcome.detail
    assert_converged(sb, gone=[old])


def status_text(config: Path) -> str:
    out = io.StringIO()
    print_status(load_config(config), out)
    return out.getvalue()


HOLD = (
    "import sys, time; from pathlib import Path\n"
    "from remediation.journal import Journal\n"
    f"Journal(Path(sys.argv[1]), {TARGET!r}).lock().acquire()\n"
    "print('held', flush=True); time.sleep(60)\n"
)


@pytest.mark.parametrize("boundary", ["add_password:returned", "write_keyvault:done"])
def test_the_daemon_killed_mid_rotation_then_restarted_converges(
    sb: Any, rig: Rig, tmp_path: Path, boundary: str
) -> None:
    """`secretwarden run` itself, its policy rotating a secret that is due, SIGKILLed
    at a step boundary (a value lost in flight; a value written but not yet loaded) and
    started again: the new daemon finishes the job with nothing left behind."""
    old = sb.in_use_key_id()
    config = write_config(sb, tmp_path, rig.state_dir)
    # The sandbox's secret expires in a year: a 400-day window makes it due at once.
    config.write_text(
        config.read_text()
        + "enabled = true\nrotate_before_days = 400\nsecret_lifetime_days = 730\n"
        + "\n[probes.expiry]\ninterval_seconds = 1\n"
    )
    run = [sys.executable, "-m", "daemon.cli", "run", "--config.file", str(config)]
    run += ["--web.listen-address", "127.0.0.1:0", "--log.format", "json"]
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}

    killed = subprocess.run(
        run, env={**env, CRASH_ENV: boundary}, capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert rig.rem.journal(TARGET).unfinished() is not None
    secrets = sandbox_secrets(sb)

    daemon = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and rig.rem.journal(TARGET).unfinished() is not None:
            time.sleep(0.2)
        assert rig.rem.journal(TARGET).unfinished() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err.decode()[-3000:]
    st = assert_converged(sb, gone=[old])
    assert len(st["credentials"]) == 1  # no orphan, the old one removed
    assert rig.rem.journal(TARGET).runs()[-1].outcome == "success"
    secrets |= sandbox_secrets(sb)
    assert_no_secret_on_disk(rig.state_dir, secrets, killed.stderr, err.decode(), out.decode())
