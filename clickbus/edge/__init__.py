"""The edge: the aiohttp application browsers, ad servers and publishers talk to."""

from clickbus.edge.app import create_admin_app, create_app

__all__ = ["create_admin_app", "create_app"]
