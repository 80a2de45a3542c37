"""Typed keys for the objects the edge application shares between handlers."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from clickbus.config import ApiKeyConfig, Config, InsertKeyConfig
from clickbus.creative import Inserter
from clickbus.edge.apikeys import ApiKeys, RateLimiter
from clickbus.log.port import Log
from clickbus.metrics import Metrics
from clickbus.reports.port import Store
from clickbus.tokens import Keyring

CONFIG = web.AppKey("config", Config)
LOG = web.AppKey("log", Log)
KEYRING = web.AppKey("keyring", Keyring)
INSERTER = web.AppKey("inserter", Inserter)
DRAINING = web.AppKey("draining", asyncio.Event)
API_KEYS: web.AppKey[ApiKeys[ApiKeyConfig]] = web.AppKey("api_keys")
INSERT_KEYS: web.AppKey[ApiKeys[InsertKeyConfig]] = web.AppKey("insert_keys")
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
METRICS = web.AppKey("metrics", Metrics)
INSERT_THREAD = web.AppKey("insert_thread", ThreadPoolExecutor)  # large markups (see insert)
ADDRESS_SECRET = web.AppKey("address_secret", bytes)  # keys the hash of full client addresses (dedup)
REPORTS = web.AppKey("reports", Store)  # read-only, for /v1/reports
