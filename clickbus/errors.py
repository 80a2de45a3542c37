"""Domain exceptions. Every clickbus error derives from `ClickbusError`.

The web layer alone translates these into HTTP answers.
"""

from __future__ import annotations


class ClickbusError(Exception):
    """Root of every error clickbus raises on purpose."""


class ConfigError(ClickbusError):
    """Configuration is invalid; the message names every offending key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class TokenError(ClickbusError):
    """A token failed verification: malformed, unknown key or bad tag."""


class LandingURLError(ClickbusError):
    """A landing URL was refused; `problems` lists every reason."""

    def __init__(self, url: str, problems: list[str]) -> None:
        self.url = url
        self.problems = problems
        super().__init__(f"landing URL refused: {'; '.join(problems)}")


class InsertRequestError(ClickbusError):
    """An insertion request is invalid; `problems` lists every error."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} error(s) in insertion request")


class LogUnavailable(ClickbusError):
    """The log cannot durably accept a record right now."""


class BodyError(ClickbusError):
    """A request body that cannot be read: too large (413), wrong type (415) or not JSON (400)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class AddressRefused(ClickbusError):
    """A bidder's address is loopback, private, link-local or metadata, and the bidder may not use one."""


class CannotStart(ClickbusError):
    """`clickbus run` cannot start: its data directory is held, or a listener's address cannot be taken."""


class AddressInUse(CannotStart):
    """Something else listens on a listener's address (another `clickbus run`, or any other program)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"{address} is already in use")
