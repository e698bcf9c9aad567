"""Structured logs: JSON lines for journald, readable lines on a terminal.

Every event passes :class:`Redactor`, which masks registered secret values wherever
they appear and any field whose name says it holds a secret. ``SecretValue`` already
prints as asterisks; the redactor is the second wall for a value that arrived as a
plain string (a config file, an SDK error text).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "**********"
_SENSITIVE_KEY = re.compile(
    r"secret|password|passwd|token|authorization|credential_value|api[-_]?key|cookie"
    r"|private[-_]?key|assertion",
    re.I,
)
# Key names that contain "secret"/"token" but hold no secret (names, ids, counts).
_SAFE_KEYS = frozenset(
    {"secret_name", "token_failure", "secret_version", "keyvault_version", "token_ok"}
)


class Redactor:
    """A structlog processor. :meth:`register` adds a value that must never be printed."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str) -> None:
        if len(value) < 4:  # too short to mask without mangling ordinary words
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                alts = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alts))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            pattern = self._pattern
            return pattern.sub(MASK, value) if pattern is not None else value
        if isinstance(value, Mapping):
            # any mapping: a dict, aiohttp's CIMultiDict, httpx.Headers (their str()
            # would print every header, Authorization included)
            return {str(k): self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = [self._pair(v) for v in value]
            return items if isinstance(value, list | set | frozenset) else tuple(items)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._scrub(str(value))

    def _pair(self, value: Any) -> Any:
        """A ``(name, value)`` pair (headers as a list of tuples) is a field too."""
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str | bytes):
            name = value[0].decode(errors="replace") if isinstance(value[0], bytes) else value[0]
            return (value[0], self._field(name, value[1]))
        return self._scrub(value)

    def _field(self, key: str, value: Any) -> Any:
        if key not in _SAFE_KEYS and _SENSITIVE_KEY.search(key) and value not in (None, ""):
            return MASK
        return self._scrub(value)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {k: self._field(k, v) for k, v in event_dict.items()}


REDACTOR = Redactor()

LogFormat = Literal["auto", "json", "console"]


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Set structlog (and stdlib logging, which the SDKs use) up for the process."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        REDACTOR,
    ]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # The SDKs log through stdlib logging; send their warnings through the same
    # redaction and renderer, and keep their chatty INFO lines (every HTTP request) out.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                # An SDK's exception becomes text here, so the redactor sees it; left
                # as exc_info, the console renderer would print it (with its frames'
                # local variables) after redaction.
                structlog.processors.format_exc_info,
                REDACTOR,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


class OutcomeTracker:
    """Logs one event when a probe's outcome changes, not one per run."""

    def __init__(self) -> None:
        self._last: MutableMapping[tuple[str, str], str] = {}

    def changed(self, target: str, probe: str, outcome: str) -> str | None:
        """Returns the previous outcome ("unknown" at first) when it changed, else None."""
        key = (target, probe)
        previous = self._last.get(key)
        if previous == outcome:
            return None
        self._last[key] = outcome
        return previous or "unknown"

    def forget(self, target: str) -> None:
        for key in [k for k in self._last if k[0] == target]:
            del self._last[key]
