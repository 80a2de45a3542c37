"""Structured logs: one JSON object per line on stderr, without secrets or full client addresses.

Context travels in `extra` (`logger.info("...", extra={"click_id": ...})`) and becomes top-level
fields. Fields whose names look like secrets are masked, and every IP address in a message or
a field is cut to its network part, the same truncation the records use. The access log is off
unless `edge.access_log` is set; when on, it writes the same JSON lines.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
import time
from typing import Any, TextIO

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from clickbus.records import truncate_ip
from clickbus.worker import ENV_WORKER as ENV_WORKER  # where it was declared before clickbus.worker
from clickbus.worker import worker_name

MASK = "***"
ACCESS_LOGGER = "clickbus.access"
_SECRET_NAME = re.compile(r"secret|passw|token|authoriz|cookie|api_?key|signature", re.IGNORECASE)
_V4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IP_LIKE = re.compile(rf"(?<![\w.:])(?:{_V4}|[0-9A-Fa-f]{{0,4}}(?::[0-9A-Fa-f]{{0,4}}){{2,7}}(?:{_V4})?)(?![\w.:])")
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _cut_address(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text  # a time of day, a MAC, a version: not an address
    return truncate_ip(text)


def scrub(text: str) -> str:
    """`text` with every IP address cut to its network part (/24, /48)."""
    return _IP_LIKE.sub(_cut_address, text)


def _field(name: str, value: Any) -> Any:
    if _SECRET_NAME.search(name):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return scrub(repr(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: ts, level, logger, msg, then its context fields."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
            "pid": record.process,
        }
        if self.worker is not None:
            doc["worker"] = self.worker
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                doc[name] = _field(name, value)
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(doc).decode()


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def configure(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send every log record of this process, as JSON lines, to `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(worker_name()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class JsonAccessLogger(AbstractAccessLogger):
    """One access record per request: method, path (no query), status, time, truncated client address."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d",
            request.method,
            request.path,
            response.status,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "client": truncate_ip(request.remote),
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def access_logger() -> logging.Logger:
    return logging.getLogger(ACCESS_LOGGER)
