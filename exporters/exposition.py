"""Pre-rendered exposition text that a scrape appends without formatting it again,
plain or as the first blocks of a gzip stream (see :meth:`Exposition.gzip_with`)."""

from __future__ import annotations

import contextvars
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

GZIP_LEVEL = 6


def _deflate(data: bytes, final: bool) -> bytes:
    """Raw deflate of ``data``; not final: ends byte-aligned so more blocks may follow."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH
    )


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True, slots=True)
class Exposition:
    """Pre-rendered text (0.0.4 format), and the same compressed as the first deflate
    blocks of a gzip stream, with its CRC (see :meth:`gzip_with`)."""

    text: bytes = b""
    deflated: bytes = b""
    crc: int = 0

    @classmethod
    def of(cls, text: bytes) -> Exposition:
        if not text:
            return cls()
        return cls(text, _deflate(text, final=False), zlib.crc32(text))

    def plain_with(self, tail: bytes) -> bytes:
        return self.text + tail

    def gzip_with(self, tail: bytes) -> bytes:
        """One gzip stream (a single member, which every client reads) of this text
        followed by ``tail``. The pre-compressed blocks end on a byte boundary (a sync
        flush, not final); ``tail`` is compressed now by a fresh compressor, which
        never refers back before its own start, and ends the stream: one valid deflate
        stream. The CRC continues from the stored one, so per scrape only ``tail`` is
        read: compressing or checksumming the big part again would cost milliseconds."""
        crc = zlib.crc32(tail, self.crc)
        size = (len(self.text) + len(tail)) & 0xFFFFFFFF
        trailer = struct.pack("<II", crc, size)
        return b"".join((_GZIP_HEADER, self.deflated, _deflate(tail, final=True), trailer))


# Set while a scrape renders the registry after prepending pre-rendered text: a collector
# whose families are in that text (exporters.metrics.Metrics) yields nothing then, so
# they are neither collected nor formatted twice. Any other reader of the registry
# (get_sample_value, a test, a bench) sees every family as usual.
_prerendered_served: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "_prerendered_served", default=False
)


@contextmanager
def prerendered_served() -> Iterator[None]:
    """Within this block, collectors that serve pre-rendered text yield nothing."""
    token = _prerendered_served.set(True)
    try:
        yield
    finally:
        _prerendered_served.reset(token)


def serving_prerendered() -> bool:
    return _prerendered_served.get()
