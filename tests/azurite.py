"""Azurite (Microsoft's Azure Storage emulator) for the high-availability tests.

:func:`azurite` starts ``azurite-blob`` (installed by scripts/install-azurite) on a free
loopback port with its data in a temporary directory and stops it, whatever the test
did; :class:`Azurite` can also be stopped and started again on the same port and data
(the storage-outage test). :class:`TcpProxy` is a small asyncio TCP proxy in its own
thread that a test can cut and restore (a daemon partitioned from storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port

# Azurite's well-known development account (public, in Microsoft's docs; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Azurite:
    """One ``azurite-blob`` process; :meth:`stop` and :meth:`start` keep port and data."""

    def __init__(self, data: Path, port: int | None = None) -> None:
        self.data = data
        self.port = port or free_port()
        self.log = data.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self) -> None:
        binary = shutil.which("azurite-blob")
        if binary is None:
            pytest.fail("azurite-blob is not on PATH: run scripts/install-azurite")
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    binary,
                    "--blobHost", "127.0.0.1",
                    "--blobPort", str(self.port),
                    "--location", str(self.data),
                    "--skipApiVersionCheck",  # the SDK may be newer than the emulator
                    "--loose",
                    "--silent",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 90  # node on a loaded 2-core CI machine
        while not _listening(self.port):
            if self._proc.poll() is not None:
                pytest.fail(f"azurite-blob exited: {self.log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail("azurite-blob did not listen within 90 s")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def azurite(data: Path) -> Iterator[Azurite]:
    server = Azurite(data)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream>, in a thread with its own event loop.

    :meth:`cut` closes every open connection and refuses new ones until
    :meth:`restore`: to the client it looks like storage went away."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.cut_off = False
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def cut(self) -> None:
        def close_all() -> None:
            self.cut_off = True
            for w in list(self._writers):
                w.close()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(lambda: setattr(self, "cut_off", False))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.cut_off:
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
