"""No secret reaches a log line: the real renderer's output is captured and searched."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog

from daemon.logging import REDACTOR, OutcomeTracker, configure_logging, get_logger
from tenant.models import SecretValue

SECRET = "Xq8~abcDEF.ghiJKL-1234567890mnopQRSTuv"


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    yield
    REDACTOR.clear()
    structlog.reset_defaults()
    logging.getLogger().handlers = []


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secret_never_reaches_a_log_line(fmt: str) -> None:
    out = io.StringIO()
    configure_logging(fmt, "debug", stream=out)  # type: ignore[arg-type]
    REDACTOR.register(SECRET)
    log = get_logger("test")
    log.info(f"value is {SECRET} in the message")
    log.info("fields", detail=f"prefix-{SECRET}-suffix", nested={"deep": [SECRET]})
    log.info("named", client_secret="short", password="pw", authorization="Bearer x")
    log.info("wrapped", value=SecretValue(SECRET))
    # the SDKs log through stdlib logging
    logging.getLogger("azure.core").warning("sdk says %s", SECRET)
    # an exception carrying the value, in its message and in a frame's local variable
    secret_in_a_local = SECRET
    try:
        raise ValueError(f"refused {secret_in_a_local}")
    except ValueError:
        logging.getLogger("azure.identity").exception("sdk failed")
        log.exception("we failed")
    text = out.getvalue()
    assert SECRET not in text
    assert "Bearer x" not in text
    assert '"pw"' not in text
    assert "=pw" not in text
    assert text.count("**********") >= 8
    assert text.count("ValueError: refused **********") == 2  # the tracebacks are kept
    assert "sdk says" in text
    assert "value is" in text


def test_json_lines_keep_safe_names() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)  # type: ignore[arg-type]
    get_logger("t").warning("probe outcome changed", secret_name="AzureAdClientSecret", target="p")
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["secret_name"] == "AzureAdClientSecret"
    assert line["level"] == "warning"
    assert line["event"] == "probe outcome changed"


def test_outcome_tracker_reports_changes_only() -> None:
    t = OutcomeTracker()
    assert t.changed("p", "graph", "ok") == "unknown"
    assert t.changed("p", "graph", "ok") is None
    assert t.changed("p", "graph", "failed:aadsts_7000222") == "ok"
    assert t.changed("p", "graph", "failed:aadsts_7000222") is None


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secret_named_keys_are_masked_inside_nested_dicts_lists_and_header_types(
    fmt: str,
) -> None:
    """Headers reach a log line in many shapes: a dict, a list of dicts, a list of
    (name, value) pairs, aiohttp's CIMultiDict, httpx.Headers. None may print the value
    of a secret-named key (the values here are not registered with the redactor)."""
    from multidict import CIMultiDict

    out = io.StringIO()
    configure_logging(fmt, "debug", stream=out)  # type: ignore[arg-type]
    values = [f"value-{i}-3f9a" for i in range(9)]
    log = get_logger("test")
    log.info("dict", headers={"Authorization": f"Bearer {values[0]}", "Accept": "text/plain"})
    log.info("deep", request={"calls": [{"headers": {"authorization": values[1]}}]})
    log.info("pairs", headers=[("Authorization", f"Basic {values[2]}"), ("Host", "x")])
    log.info("tuple pairs", form=(("client_secret", values[3]),))
    log.info("multidict", headers=CIMultiDict({"Authorization": f"Bearer {values[4]}"}))
    log.info("httpx", headers=httpx.Headers({"Cookie": f"session={values[5]}"}))
    log.info("api key", headers={"X-Api-Key": values[6]})
    log.info("bytes pair", raw=[(b"authorization", values[7].encode())])
    log.info("set", things={("password", values[8])})
    text = out.getvalue()
    for value in values:
        assert value not in text, text
    # what is not secret stays readable
    assert "text/plain" in text
    assert "Host" in text
    assert text.count("**********") == 9
