"""Building and appending the records of edge events: clicks (redirect, beacon, server) and impressions.

Every route that records something goes through here, so a click looks the same
in the log whichever way it arrived. Redirects, pixels and beacons are the hot
path: their records are encoded straight to JSON (`_Record.complete`, `encode`),
each field named once here in a dict literal, without building the record dataclass on the way
(a frozen dataclass's `__init__` and orjson's reading of one cost several microseconds a record).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from clickbus.edge.appkeys import LOG, METRICS
from clickbus.edge.client import MAX_HEADER_CHARS, Client
from clickbus.errors import LogUnavailable
from clickbus.ids import uuid7
from clickbus.log.port import Headers, Topic
from clickbus.records import (
    ClickRecord,
    ImpressionRecord,
    Reason,
    Source,
    ad_key,
    clean_text,
    dedup_key,
    user_part,
    xandr_timestamp,
)
from clickbus.tokens import AdContext, Token

logger = logging.getLogger(__name__)
KINDS = {Topic.CLICKS: ClickRecord.KIND, Topic.IMPRESSIONS: ImpressionRecord.KIND}


class Event(NamedTuple):
    """A record ready to append, and what the metrics count of it.

    A NamedTuple rather than a frozen dataclass: one is built per request, and a tuple
    is built several times faster while being as immutable.
    """

    topic: Topic
    record_id: str
    key: bytes
    value: bytes
    headers: Headers
    source: str
    reason: str | None


def click_record(
    token: Token,
    client: Client,
    *,
    source: str,
    landing: str,
    now: float,
    user_id: str = "",
    session_id: str = "",
    pos: int | None = None,
) -> Event:
    """The click of an authentic token; expired tokens make invalid clicks."""
    click_id = uuid7()
    ad = token.ad
    reason = Reason.EXPIRED if now >= token.expires_at else None  # `token.expired(now)`
    key = ad_key(token)
    # Every field of ClickRecord, in its order (tests/edge/test_events.py checks it against the dataclass).
    values = {
        "click_id": click_id,
        "timestamp": xandr_timestamp(now),
        "auction_id_64": ad.auction_id_64,
        "member_id": ad.member_id,
        "user_id_64": ad.user_id_64,
        "referer_url": clean_text(client.referer, MAX_HEADER_CHARS),
        "user_agent": clean_text(client.user_agent, MAX_HEADER_CHARS),
        "userdata_json": ad.userdata_json,
        "custom_notify_data": ad.custom_notify_data,
        "test": ad.test,
        "source": source,
        "creative_id": ad.creative_id,
        "landing_url": landing,
        "client_ip": client.ip,
        "device": client.device,
        "pos": ad.pos if pos is None else pos,
        "valid": reason is None,
        "reason": reason,
        "user_id": user_id,
        "session_id": session_id,
        "campaign_id": ad.campaign_id,
        "placement": ad.placement,
        "location": "",
        "ad_key": key,
        "client_key": client.key,
        "publisher_id": ad.publisher_id,
        "country": ad.country,
    }
    return Event(
        Topic.CLICKS,
        click_id,
        _dedup_key(values, ad, client, source, user_id, session_id, key, click_id),
        orjson.dumps(values),
        ClickRecord.HEADERS,
        source,
        reason,
    )


def impression_record(
    token: Token,
    client: Client,
    *,
    source: str,
    now: float,
    user_id: str = "",
    session_id: str = "",
    pos: int | None = None,
) -> Event:
    """The impression of an authentic token; expired tokens make invalid impressions."""
    impression_id = uuid7()
    ad = token.ad
    reason = Reason.EXPIRED if now >= token.expires_at else None  # `token.expired(now)`
    key = ad_key(token)
    # Every field of ImpressionRecord, in its order (tests/edge/test_events.py checks it against the dataclass).
    values = {
        "impression_id": impression_id,
        "timestamp": xandr_timestamp(now),
        "auction_id_64": ad.auction_id_64,
        "member_id": ad.member_id,
        "user_id_64": ad.user_id_64,
        "referer_url": clean_text(client.referer, MAX_HEADER_CHARS),
        "user_agent": clean_text(client.user_agent, MAX_HEADER_CHARS),
        "test": ad.test,
        "source": source,
        "creative_id": ad.creative_id,
        "client_ip": client.ip,
        "device": client.device,
        "pos": ad.pos if pos is None else pos,
        "valid": reason is None,
        "reason": reason,
        "user_id": user_id,
        "session_id": session_id,
        "ad_key": key,
        "client_key": client.key,
        "campaign_id": ad.campaign_id,
        "placement": ad.placement,
        "publisher_id": ad.publisher_id,
        "country": ad.country,
    }
    return Event(
        Topic.IMPRESSIONS,
        impression_id,
        _dedup_key(values, ad, client, source, user_id, session_id, key, impression_id),
        orjson.dumps(values),
        ImpressionRecord.HEADERS,
        source,
        reason,
    )


def _dedup_key(
    values: dict[str, Any],
    ad: AdContext,
    client: Client,
    source: str,
    user_id: str,
    session_id: str,
    key: str,
    record_id: str,
) -> bytes:
    """`records.dedup_key` of the record `values` holds, from the parts already at hand (the common case)."""
    if source == Source.SERVER or not key:  # the general rule, field by field
        return dedup_key(values.__getitem__, record_id)
    user = user_part(user_id, ad.user_id_64, session_id, client.key, record_id)
    return f"{ad.member_id}/{user}/{client.device}/{key}".encode()


def event_of(click: ClickRecord) -> Event:
    """The event of a click built as a record (server-side clicks, which carry no token)."""
    key, value = click.dedup_key(), click.to_json()
    return Event(Topic.CLICKS, click.click_id, key, value, click.HEADERS, click.source, click.reason)


async def record(app: web.Application, event: Event) -> bool:
    """Durably append a click or impression (and count it); False (and logged) when the log cannot take it."""
    try:
        await app[LOG].append(event.topic, event.key, event.value, event.headers)
    except LogUnavailable as exc:
        logger.error("%s not recorded: %s", KINDS[event.topic], exc, extra={"record_id": event.record_id})
        return False
    if event.topic == Topic.CLICKS:
        app[METRICS].click(event.source, event.reason)
    else:
        app[METRICS].impression(event.source, event.reason)
    return True
