"""clickbus: an impression-bus click redirector with a durable log and a bidder notifier."""

__version__ = "0.4.2"
