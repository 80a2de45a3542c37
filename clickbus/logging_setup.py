"""Structured logs: one JSON object per line on stderr, without secrets or full client addresses.

Context travels in `extra` (`logger.info("...", extra={"click_id": ...})`) and becomes top-level
fields. Fields whose names look like secrets are masked. Client addresses are cut to their network
part, the same truncation the records use: every IP address in the lines of the loggers that serve
clients (the edge, aiohttp's server side, the access log), and fields named for a client anywhere.
Addresses of what clickbus itself connects to (Kafka brokers, bidders) stay whole: an operator must
be able to read which broker is unreachable. The access log is off unless `edge.access_log` is set;
when on, it writes the same JSON lines.
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
# Loggers whose lines may carry a client's address (a logger and its children)
CLIENT_FACING = ("clickbus.edge", ACCESS_LOGGER, "aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.internal")
CLIENT_FIELDS = frozenset({"client", "client_ip", "remote", "peer", "peername"})
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


def serves_clients(logger_name: str) -> bool:
    """True for the loggers whose lines may carry client addresses (`CLIENT_FACING` and their children)."""
    return any(logger_name == name or logger_name.startswith(name + ".") for name in CLIENT_FACING)


def _field(name: str, value: Any, clients: bool) -> Any:
    if _SECRET_NAME.search(name):
        return MASK
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return scrub(text) if clients or name in CLIENT_FIELDS else text


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: ts, level, logger, msg, then its context fields."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        clients = serves_clients(record.name or "")
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()) if clients else record.getMessage(),
            "pid": record.process,
        }
        if self.worker is not None:
            doc["worker"] = self.worker
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                doc[name] = _field(name, value, clients)
        if record.exc_info:
            exc = self.formatException(record.exc_info)
            doc["exc"] = scrub(exc) if clients else exc
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
