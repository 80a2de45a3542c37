"""The notifier: consume clicks, drop invalid traffic, deliver signed callbacks to bidders."""

from __future__ import annotations

from clickbus.notifier.service import Notifier

__all__ = ["Notifier"]
