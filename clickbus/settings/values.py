"""The value types settings are made of, each parsed from its TOML form with one checked conversion.

pydantic v2 does the walking; these aliases add clickbus's own checks and messages. A failed check raises
`invalid(...)`, whose message becomes `key.path: message, got <value>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, PlainValidator, Strict
from pydantic_core import PydanticCustomError

T = TypeVar("T")
Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value whose repr never shows it."""

    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"


def invalid(message: str, *, at: str | None = None, value: object = None) -> PydanticCustomError:
    """The error a check raises; `at` names a key inside the checked table (for checks across keys).

    `value` is the value as converted (`-1.0` for a float setting given `-1`); without it the input is shown.
    """
    return PydanticCustomError("clickbus", "{message}", {"message": message, "at": at, "value": value})


def check(problem: Callable[[T], str | None]) -> AfterValidator:
    """A validator from a function that returns what is wrong with a value, or None."""

    def validate(value: T) -> T:
        message = problem(value)
        if message:
            raise invalid(message, value=value)
        return value

    return AfterValidator(validate)


def parsed(parse: Callable[[str], Any], expected: str) -> PlainValidator:
    """A validator that turns a TOML string into a value with `parse` (which raises ValueError when it cannot)."""

    def validate(value: object) -> Any:
        if not isinstance(value, str):
            raise invalid(expected)
        try:
            return parse(value)
        except ValueError:
            raise invalid(expected) from None

    return PlainValidator(validate)


def parse_host_port(text: str) -> HostPort:
    """Parse `host:port` or `[v6]:port`; raise ValueError when it is neither."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return HostPort(host, int(port))


def parse_host_ports(text: str) -> tuple[HostPort, ...]:
    """Parse a comma-separated, non-empty list of `host:port`."""
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts:
        raise ValueError(text)
    return tuple(parse_host_port(p) for p in parts)


def _sha256(text: str) -> bytes:
    if len(text) != 64 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(text)
    return bytes.fromhex(text)


def _secret(text: str) -> Secret:
    if not text:
        raise ValueError(text)
    return Secret(text.encode())


def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a positive number"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "expected >= 0"


def one_of(*choices: str) -> AfterValidator:
    """A check that the value is one of `choices`."""
    return check(lambda value: None if value in choices else f"expected one of {', '.join(choices)}")


def http_url(text: str) -> str | None:
    """What is wrong with an http(s) URL, or None."""
    parts = urlsplit(text)
    return None if parts.scheme in ("http", "https") and parts.hostname else "expected an http(s) URL"


def base_url(text: str) -> str | None:
    """What is wrong with an http(s) base URL (no query, no fragment), or None."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return "expected an http(s) base URL without query"
    return None


Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]
Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), check(_positive)]
NonNegativeInt = Annotated[int, Strict(), check(_not_negative)]
PositiveFloat = Annotated[float, Strict(), check(_positive)]
FilePath = Annotated[Path, parsed(Path, "expected a path")]
Address = Annotated[HostPort, parsed(parse_host_port, "expected host:port")]
Addresses = Annotated[tuple[HostPort, ...], parsed(parse_host_ports, "expected host:port[,host:port...]")]
SecretText = Annotated[Secret, parsed(_secret, "expected a non-empty string")]
Sha256 = Annotated[bytes, parsed(_sha256, "expected 64 hex digits")]
CIDR = Annotated[Network, parsed(ip_network, "expected a CIDR network such as 10.0.0.0/8")]
