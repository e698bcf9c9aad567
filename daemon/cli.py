"""``secretwarden``: the command line (run, check, demo, sandbox, rotate, cleanup, status,
inventory).

Flags follow the Prometheus exporters' style (``--config.file``,
``--web.listen-address``). A bad config prints every problem with its path and exits
2, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import __version__
from daemon.config import (
    Config,
    ConfigError,
    journal_problems,
    load_checked_config,
    split_listen_address,
)
from daemon.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from daemon.webconfig import WebSettings

EXIT_CONFIG = 2
log = get_logger("secretwarden.cli")


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log.format",
        dest="log_format",
        choices=("auto", "json", "console"),
        default=None,
        help="json lines (journald), console, or auto: console on a terminal (default)",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="default: info, or the config's daemon.log_level",
    )


def _add_config(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        required=required,
        metavar="PATH",
        help="the TOML configuration (see docs/configuration.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secretwarden",
        description="Watches the Graph client secret of an Azure App Service, exports it "
        "to Prometheus, and rotates or reloads it before it breaks the app.",
    )
    parser.add_argument("--version", action="version", version=f"secretwarden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the daemon (probes, /metrics, remediation)")
    _add_config(run)
    run.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="overrides web.listen_address (default 127.0.0.1:9877)",
    )
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        metavar="PATH",
        help="a Prometheus exporter-toolkit web config (YAML: tls_server_config, "
        "basic_auth_users with bcrypt hashes); replaces [web]'s TLS and basic auth",
    )
    run.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config and the files it names, then exit (contacts no Azure service)",
    )
    _add_logging(run)

    check = sub.add_parser("check", help="validate the config, run every probe once, print a table")
    _add_config(check)
    _add_logging(check)

    demo = sub.add_parser("demo", help="the daemon against a built-in sandbox tenant")
    demo.add_argument(
        "--web.listen-address", dest="listen_address", metavar="HOST:PORT", default=None
    )
    demo.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS"
    )
    demo.add_argument("--describe", type=Path, metavar="FILE", help="write the sandbox's facts")
    demo.add_argument(
        "--log.file",
        dest="log_file",
        type=Path,
        metavar="FILE",
        default=None,
        help="where the daemon's log goes (JSON lines; default: secretwarden-demo.log in "
        "the temporary directory); the terminal shows the timeline",
    )
    _add_logging(demo)

    sb = sub.add_parser("sandbox", help="run the local stand-in for the Azure tenant")
    sb.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    sb.add_argument("--describe", type=Path, metavar="FILE", help="write its facts as JSON")
    sb.add_argument(
        "--write-config", type=Path, metavar="FILE", help="write a daemon config for it"
    )
    sb.add_argument("--state-file", type=Path, metavar="FILE", help="persist the tenant here")
    _add_logging(sb)

    rotate = sub.add_parser("rotate", help="rotate a target's secret now, step by step")
    _add_config(rotate)
    rotate.add_argument("--target", required=True, metavar="NAME")
    rotate.add_argument("--dry-run", action="store_true", help="show the plan, write nothing")
    _add_logging(rotate)

    clean = sub.add_parser(
        "cleanup",
        help="remove old secrets pending removal whose proof arrived or whose overlap ended",
    )
    _add_config(clean)
    clean.add_argument("--target", metavar="NAME", default=None, help="default: every target")
    _add_logging(clean)

    status = sub.add_parser("status", help="current and recent remediations")
    _add_config(status)
    _add_logging(status)

    inv = sub.add_parser(
        "inventory", help="scan every app registration's credentials once and print them"
    )
    _add_config(inv)
    inv.add_argument(
        "--expiring-within",
        dest="expiring_within",
        metavar="DURATION",
        default=None,
        help="only credentials expiring within DURATION (30d, 12h, 2w; expired ones too)",
    )
    inv.add_argument(
        "--output", choices=("table", "json", "csv"), default="table", help="default: table"
    )
    _add_logging(inv)

    hp = sub.add_parser(
        "hash-password", help="hash a password for web.basic_auth_users (or a web config file)"
    )
    hp.add_argument("--stdin", action="store_true", help="read it from stdin, not a prompt")
    hp.add_argument(
        "--bcrypt",
        action="store_true",
        help="a bcrypt hash (cost 10), as htpasswd -nB and Prometheus web config files use",
    )
    return parser


def _config_failed(exc: ConfigError) -> int:
    if len(exc.problems) == 1:  # one problem, one line (journald shows it whole)
        print(
            f"secretwarden: bad configuration in {exc.source}: {exc.problems[0]}", file=sys.stderr
        )
        return EXIT_CONFIG
    print(f"secretwarden: bad configuration in {exc.source}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_CONFIG


def _logging(
    args: argparse.Namespace, config: Config | None = None, *, default_level: str | None = None
) -> None:
    fmt = args.log_format or (config.daemon.log_format if config else "auto")
    level = args.log_level or default_level or (config.daemon.log_level if config else "info")
    configure_logging(fmt, level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        return _config_failed(exc)
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "hash-password":
        from daemon.webauth import BCRYPT_MAX_PASSWORD, hash_bcrypt, hash_password

        password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass()
        if args.bcrypt and len(password.encode()) > BCRYPT_MAX_PASSWORD:
            print(
                f"secretwarden: bcrypt reads {BCRYPT_MAX_PASSWORD} bytes at most", file=sys.stderr
            )
            return EXIT_CONFIG
        print(hash_bcrypt(password) if args.bcrypt else hash_password(password))
        return 0
    if command in ("rotate", "status"):
        return _remediate(command, args)
    if command == "cleanup":
        from daemon.cleanup_cli import cleanup

        return cleanup(args)
    if command == "sandbox":
        _logging(args)
        from daemon.sandbox_cmd import run_sandbox

        return asyncio.run(run_sandbox(args))
    if command == "demo":
        from daemon.demo import demo_log_file, run_demo

        log_file = args.log_file or demo_log_file()
        # The terminal is the timeline's; the daemon's own log goes to a file it names.
        with log_file.open("w", buffering=1) as stream:
            configure_logging(args.log_format or "json", args.log_level or "info", stream)
            return asyncio.run(run_demo(args, log_file=log_file))
    # `run --config.check` changes nothing on disk (no state directory made).
    check_only = command == "run" and args.config_check
    config = load_checked_config(args.config_file, create=not check_only)
    if command == "run":
        web = _web(config, args)
        if args.config_check:
            if problems := journal_problems(config):
                # `run` would start, with remediation of those targets off: say it now
                raise ConfigError(str(args.config_file), problems)
            names = ", ".join(t.name for t in config.targets)
            print(
                f"secretwarden: {args.config_file} is valid "
                f"({len(config.targets)} target(s): {names})"
            )
            return 0
    # check's answer is its table; its logs are only for what went wrong underneath.
    quiet = command in ("check", "inventory")  # their answer is what they print
    _logging(args, config, default_level="warning" if quiet else None)
    if command == "check":
        from daemon.check import run_check

        return asyncio.run(run_check(config))
    if command == "inventory":
        return _inventory(config, args)
    return asyncio.run(_run(config, args, web))


def _web(config: Config, args: argparse.Namespace) -> WebSettings:
    """The checked web settings of ``run`` (and ``run --config.check``): everything that
    would stop the server, bar a port taken at the time it starts."""
    from daemon.webconfig import ignored_section_keys, web_settings

    listen = args.listen_address or config.web.listen_address
    problems = []
    try:
        host = split_listen_address(listen)[0]
        socket.getaddrinfo(host, None, flags=socket.AI_PASSIVE)
    except ValueError as exc:
        problems.append(f"--web.listen-address: {exc}")
    except socket.gaierror as exc:
        problems.append(f"web.listen_address: cannot resolve the host of {listen}: {exc.strerror}")
    try:
        web = web_settings(config, args.web_config_file)
    except ConfigError as exc:
        source = exc.source if args.web_config_file is not None else str(args.config_file)
        raise ConfigError(source, problems + exc.problems) from None
    if problems:
        raise ConfigError(str(args.config_file), problems)
    if args.web_config_file is not None and (ignored := ignored_section_keys(config)):
        print(
            f"secretwarden: note: {args.web_config_file} replaces {', '.join(ignored)} "
            f"of {args.config_file}",
            file=sys.stderr,
        )
    return web


def _inventory(config: Config, args: argparse.Namespace) -> int:
    from daemon.inventory_cli import parse_duration, run_inventory

    within = None
    if args.expiring_within is not None:
        try:
            within = parse_duration(args.expiring_within)
        except ValueError as exc:
            print(f"secretwarden: --expiring-within: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return asyncio.run(run_inventory(config, expiring_within=within, output=args.output))


def _remediate(command: str, args: argparse.Namespace) -> int:
    # Imported here: the remediation stack is not needed for --help or `sandbox`.
    from daemon import remediate_cli

    code: int = getattr(remediate_cli, command)(args)
    return code


async def _run(config: Config, args: argparse.Namespace, web: WebSettings) -> int:
    from daemon.app import Daemon
    from daemon.remediate_cli import install
    from daemon.web import StartError

    daemon = Daemon(
        config,
        config_path=args.config_file,
        listen_address=args.listen_address,
        web=web,
        web_config_file=args.web_config_file,
    )
    install(daemon)
    try:
        await daemon.start()
    except StartError as exc:
        # one line, exit 2: systemd's RestartPreventExitStatus=2 does not retry it
        print(f"secretwarden: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        await daemon.run_until_stopped()
    finally:
        await daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
