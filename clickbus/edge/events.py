"""Building and appending the records of edge events: clicks (redirect, beacon, server) and impressions.

Every route that records something goes through here, so a click looks the same
in the log whichever way it arrived.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from clickbus.edge.appkeys import LOG, METRICS
from clickbus.edge.client import MAX_HEADER_CHARS, Client
from clickbus.errors import LogUnavailable
from clickbus.ids import uuid7
from clickbus.log.port import Topic
from clickbus.records import ClickRecord, ImpressionRecord, Reason, ad_key, clean_text, xandr_timestamp
from clickbus.tokens import Token

logger = logging.getLogger(__name__)


def _common(token: Token, client: Client, now: float, user_id: str, session_id: str, pos: int | None) -> dict[str, Any]:
    """The fields clicks and impressions share; expired tokens make invalid records."""
    ad = token.ad
    expired = token.expired(now)
    return {
        "timestamp": xandr_timestamp(now),
        "auction_id_64": ad.auction_id_64,
        "member_id": ad.member_id,
        "user_id_64": ad.user_id_64,
        "referer_url": clean_text(client.referer, MAX_HEADER_CHARS),
        "user_agent": clean_text(client.user_agent, MAX_HEADER_CHARS),
        "test": ad.test,
        "creative_id": ad.creative_id,
        "client_ip": client.ip,
        "device": client.device,
        "pos": ad.pos if pos is None else pos,
        "valid": not expired,
        "reason": Reason.EXPIRED if expired else None,
        "user_id": user_id,
        "session_id": session_id,
        "ad_key": ad_key(token),
        "client_key": client.key,
    }


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
) -> ClickRecord:
    """A click record for an authentic token; expired tokens make invalid clicks."""
    return ClickRecord(
        click_id=uuid7(),
        userdata_json=token.ad.userdata_json,
        custom_notify_data=token.ad.custom_notify_data,
        source=source,
        landing_url=landing,
        **_common(token, client, now, user_id, session_id, pos),
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
) -> ImpressionRecord:
    """An impression record for an authentic token; expired tokens make invalid impressions."""
    return ImpressionRecord(
        impression_id=uuid7(), source=source, **_common(token, client, now, user_id, session_id, pos)
    )


async def record_click(app: web.Application, record: ClickRecord) -> bool:
    """Durably append a click (and count it); False (and logged) when the log cannot take it."""
    if not await _append(app, Topic.CLICKS, record, record.click_id):
        return False
    app[METRICS].click(record.source, record.reason)
    return True


async def record_impression(app: web.Application, record: ImpressionRecord) -> bool:
    """Durably append an impression (and count it); False (and logged) when the log cannot take it."""
    if not await _append(app, Topic.IMPRESSIONS, record, record.impression_id):
        return False
    app[METRICS].impression(record.source, record.reason)
    return True


async def _append(app: web.Application, topic: Topic, record: ClickRecord | ImpressionRecord, rid: str) -> bool:
    try:
        await app[LOG].append(topic, record.dedup_key(), record.to_json(), record.headers())
    except LogUnavailable as exc:
        logger.error("%s not recorded: %s", record.KIND, exc, extra={"record_id": rid})
        return False
    return True
