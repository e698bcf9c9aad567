"""``run --config.check`` refuses what ``run`` refuses, and ``run`` fails to start with
one clear line and exit 2 (never a traceback): secret files others may read (also
behind a symlink), unreadable or garbage TLS keys, an unreadable state directory or
journal, a listen host that does not resolve, a port in use.

Unreadable files are made for real: as root (CI containers), the command runs as
``nobody`` with the files it may read handed to it; otherwise by ``chmod``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.certs import ensure_tls

ROOT = Path(__file__).parents[2]
NOBODY = 65534
AS_ROOT = os.geteuid() == 0
SETPRIV = shutil.which("setpriv") or "setpriv"
pytestmark = pytest.mark.skipif(
    AS_ROOT and shutil.which("setpriv") is None, reason="as root, needs setpriv (util-linux)"
)

TARGET = """
[[targets]]
name = "portal"
tenant_id = "11111111-1111-4111-8111-111111111111"
app_object_id = "00000000-0000-0000-0000-000000000001"
key_vault_url = "https://kv.vault.azure.net"
subscription_id = "33333333-3333-4333-8333-333333333333"
resource_group = "rg"
site_name = "portal"
health_url = "https://portal.example/health"
"""


class World:
    """A directory the command (as ``nobody`` under root) may use, and its files."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.token = self.secret("token", "wh-token-value-7731")
        tls = ensure_tls(base / "tls", [])
        self.cert, self.key = tls.cert_file, tls.key_file
        self.state = base / "state"
        self.state.mkdir()
        for path in (base / "tls", *sorted((base / "tls").iterdir()), self.state):
            self.own(path)
        self.listen = "127.0.0.1:9877"

    def own(self, path: Path) -> None:
        if AS_ROOT:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)

    def secret(self, name: str, value: str, mode: int = 0o600) -> Path:
        path = self.base / name
        path.write_text(value + "\n")
        path.chmod(mode)
        self.own(path)
        return path

    def unreadable(self, path: Path) -> None:
        """Make ``path`` unreadable to the command."""
        if AS_ROOT:
            os.chown(path, 0, 0)
            path.chmod(0o700 if path.is_dir() else 0o600)
        else:
            path.chmod(0)

    def config(self, *, tls: bool = True, token: Path | None = None) -> Path:
        text = f'[daemon]\nstate_directory = "{self.state}"\n'
        text += f'[web]\nlisten_address = "{self.listen}"\n'
        if tls:
            text += f'tls_cert_file = "{self.cert}"\ntls_key_file = "{self.key}"\n'
        text += f'[remediation]\nwebhook_token_file = "{token or self.token}"\n'
        path = self.base / "sw.toml"
        path.write_text(text + TARGET)
        path.chmod(0o644)
        return path

    def run(
        self, *args: str, timeout: float = 60, as_root: bool = False
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "daemon.cli", *args]
        if AS_ROOT and not as_root:
            # util-linux's setpriv: subprocess's own user= cannot exec the venv's python
            # here (its interpreter lives under root's home)
            ids = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            command = [SETPRIV, *ids, *command]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(self.base)},
        )

    def check(self, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("run", "--config.check", "--config.file", str(config), *extra)


@pytest.fixture
def world() -> Iterator[World]:
    # not under pytest's tmp_path: its parents are root's alone (0700)
    base = Path(tempfile.mkdtemp(prefix="sw-startup-"))
    base.chmod(0o755)
    try:
        yield World(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, and every line of stderr but info logs is the one problem's line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, result.stderr
    for text in expected:
        assert text in plain[0], result.stderr


def test_a_good_config_passes_the_check(world: World) -> None:
    result = world.check(world.config())
    assert result.returncode == 0, result.stderr
    assert "is valid (1 target(s): portal)" in result.stdout


def test_a_token_file_others_may_read_is_refused_by_check_and_run_alike(world: World) -> None:
    token = world.secret("open-token", "wh-token-value-7731", mode=0o644)
    config = world.config(token=token)
    problem = (
        f"remediation.webhook_token_file: {token} is readable by its group and others (mode 644)"
    )
    refused(world.check(config), problem)
    refused(world.run("run", "--config.file", str(config)), problem)


def test_a_secret_file_behind_a_symlink_is_judged_by_its_target(world: World) -> None:
    target = world.secret("real-token", "wh-token-value-7731", mode=0o644)
    link = world.base / "token-link"
    link.symlink_to(target)
    world.own(link)
    refused(
        world.check(world.config(token=link)),
        "readable by its group and others",
        "through the symlink",
    )
    target.chmod(0o600)
    assert world.check(world.config(token=link)).returncode == 0


def test_a_garbage_tls_key_is_refused(world: World) -> None:
    world.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    refused(world.check(world.config()), f"web: TLS: cannot load {world.cert} with {world.key}")


def test_a_tls_key_others_may_read_is_refused(world: World) -> None:
    world.key.chmod(0o644)
    refused(
        world.check(world.config()),
        f"web: TLS key: {world.key} is readable by its group and others",
    )


def test_an_unreadable_tls_key_is_refused(world: World) -> None:
    world.unreadable(world.key)
    refused(
        world.check(world.config()), f"web: TLS key: cannot read {world.key}: Permission denied"
    )


def test_an_unreadable_state_directory_is_refused(world: World) -> None:
    world.unreadable(world.state)
    refused(world.check(world.config()), f"daemon.state_directory: {world.state} is not readable")


def test_a_journal_root_left_behind_is_refused_with_the_fix(world: World) -> None:
    journal = world.state / "journal"
    journal.mkdir()
    world.own(journal)
    run_file = journal / "portal.jsonl"
    run_file.write_text("")
    world.unreadable(run_file)
    refused(
        world.check(world.config()),
        f"cannot read and write the journal file {run_file}",
        "chown -R",
    )
    # `run` itself starts (probes and metrics go on; that target's remediation stays off
    # until the owner is fixed): the check is where it shows before it costs anything


@pytest.mark.skipif(not AS_ROOT, reason="the check as root: needs root")
def test_the_check_run_as_root_still_sees_a_journal_file_of_another_owner(world: World) -> None:
    """deploy-systemd.md runs the check with sudo: root can read everything, so the
    journal file's owner (not the state directory's) is what gives it away."""
    journal = world.state / "journal"
    journal.mkdir()
    world.own(journal)
    (journal / "portal.jsonl").write_text("")  # root's: what `sudo secretwarden rotate` leaves
    config = world.config()
    result = world.run("run", "--config.check", "--config.file", str(config), as_root=True)
    refused(result, f"{journal}/portal.jsonl belongs to uid 0, the state directory to uid {NOBODY}")
    os.chown(journal / "portal.jsonl", NOBODY, NOBODY)
    result = world.run("run", "--config.check", "--config.file", str(config), as_root=True)
    assert result.returncode == 0, result.stderr


def test_an_unreadable_state_directory_stops_run_too(world: World) -> None:
    world.unreadable(world.state)
    config = world.config(tls=False)
    refused(world.run("run", "--config.file", str(config)), "daemon.state_directory")


def test_a_listen_host_that_does_not_resolve_is_refused(world: World) -> None:
    world.listen = "no-such-host.invalid:9877"
    config = world.config(tls=False)
    problem = "web.listen_address: cannot resolve the host of no-such-host.invalid:9877"
    refused(world.check(config), problem)
    refused(world.run("run", "--config.file", str(config)), problem)


def test_a_port_in_use_is_one_line_and_exit_2(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        world.listen = f"127.0.0.1:{port}"
        result = world.run("run", "--config.file", str(world.config(tls=False)))
    refused(
        result, f"secretwarden: cannot listen on 127.0.0.1:{port}: the address is already in use"
    )


def test_a_web_config_file_is_checked_too_and_wins_over_the_web_section(world: World) -> None:
    web = world.base / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {world.cert}\n  key_file: {world.base}/nokey\n"
    )
    web.chmod(0o644)
    config = world.config()
    refused(
        world.check(config, "--web.config.file", str(web)),
        f"web config file: TLS key: cannot read {world.base}/nokey",
    )
    web.write_text(f"tls_server_config:\n  cert_file: {world.cert}\n  key_file: {world.key}\n")
    result = world.check(config, "--web.config.file", str(web))
    assert result.returncode == 0, result.stderr
    assert f"{web} replaces web.tls_cert_file, web.tls_key_file of {config}" in result.stderr


def test_config_check_refuses_a_web_config_file_with_a_duplicate_key(world: World) -> None:
    """Issue 15: a second, empty tls_server_config served plain HTTP with no auth, and
    `--config.check` passed it; the peer's strict YAML refuses duplicate keys."""
    web = world.base / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {world.cert}\n  key_file: {world.key}\n"
        "tls_server_config:\n"
    )
    refused(
        world.check(world.config(), "--web.config.file", str(web)),
        "duplicate key 'tls_server_config' at line 4 (first at line 1)",
    )
