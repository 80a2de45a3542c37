"""Building and appending the records of edge events: clicks (redirect, beacon, server) and impressions.

Every route that records something goes through here, so a click looks the same
in the log whichever way it arrived. Redirects, pixels and beacons are the hot
path: their records are encoded straight to JSON (`_Record.complete`, `encode`),
each field named once here, without building the record dataclass on the way.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from aiohttp import web

from clickbus.edge.appkeys import LOG, METRICS
from clickbus.edge.client import MAX_HEADER_CHARS, Client
from clickbus.errors import LogUnavailable
from clickbus.ids import uuid7
from clickbus.log.port import Headers, Topic
from clickbus.records import ClickRecord, ImpressionRecord, Reason, ad_key, clean_text, dedup_key, xandr_timestamp
from clickbus.tokens import Token

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
    values = ClickRecord.complete(
        click_id=click_id,
        **_shared(token, client, source=source, now=now, user_id=user_id, session_id=session_id, pos=pos),
        userdata_json=token.ad.userdata_json,
        custom_notify_data=token.ad.custom_notify_data,
        landing_url=landing,
    )
    reason = values["reason"]
    value, key = ClickRecord.encode(values), dedup_key(values.__getitem__, click_id)
    return Event(Topic.CLICKS, click_id, key, value, ClickRecord.HEADERS, source, reason)


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
    values = ImpressionRecord.complete(
        impression_id=impression_id,
        **_shared(token, client, source=source, now=now, user_id=user_id, session_id=session_id, pos=pos),
    )
    reason = values["reason"]
    value, key = ImpressionRecord.encode(values), dedup_key(values.__getitem__, impression_id)
    return Event(Topic.IMPRESSIONS, impression_id, key, value, ImpressionRecord.HEADERS, source, reason)


def _shared(
    token: Token, client: Client, *, source: str, now: float, user_id: str, session_id: str, pos: int | None
) -> dict[str, Any]:
    """The fields clicks and impressions share; an expired token makes an invalid record."""
    ad = token.ad
    reason = Reason.EXPIRED if token.expired(now) else None
    return {
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
        "ad_key": ad_key(token),
        "client_key": client.key,
        "campaign_id": ad.campaign_id,
        "placement": ad.placement,
        "publisher_id": ad.publisher_id,
        "country": ad.country,
    }


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
