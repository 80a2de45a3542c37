"""ENS-style server-side clicks: `POST /api/v1/campaigns/click` with `Authorization: Bearer <key>`.

Every answer is `{"status": ..., "message": ...}`. The body parser collects every
problem; when there are several, the answer's one `message` joins them with
"; " in field order (campaignId, placement, location, device), so a single
problem reads exactly like the reference ("campaignId is required"). A string
field longer than `edge.max_text_chars` is refused first, with 422.

The key's rate limit is taken only from a valid request about to be recorded: a
request refused for its body does not spend it, and the token of a click the log
could not take (`503`) is given back. Taking first and giving back on failure
bounds the rate under any concurrency: a token is never used twice, only returned.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from clickbus.config import CampaignConfig
from clickbus.edge.apikeys import authorization
from clickbus.edge.appkeys import API_KEYS, CONFIG, RATE_LIMITER
from clickbus.edge.body import read_json
from clickbus.edge.client import MAX_HEADER_CHARS, Client, client_of
from clickbus.edge.events import event_of, record
from clickbus.errors import BodyError
from clickbus.ids import uuid7
from clickbus.iso3166 import ALPHA_2
from clickbus.records import ClickRecord, Source, clean_text, xandr_timestamp

routes = web.RouteTableDef()

PATH = "/api/v1/campaigns/click"
CAMPAIGN_ID = "campaignId"
PLACEMENT = "placement"
LOCATION = "location"
DEVICE = "device"
DEVICES = ("mobile", "desktop", "tablet")
SEPARATOR = "; "
_SUCCESS = orjson.dumps({"status": "success", "message": "Click tracked successfully"})


@dataclass(frozen=True, slots=True)
class ServerClick:
    """A valid server-side click request."""

    campaign: CampaignConfig
    placement: str
    location: str = ""
    device: str = ""


def _campaign(
    body: dict[str, Any], campaigns: Mapping[int, CampaignConfig], problems: list[str]
) -> CampaignConfig | None:
    value = body.get(CAMPAIGN_ID)
    if value is None:
        problems.append(f"{CAMPAIGN_ID} is required")
    elif isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{CAMPAIGN_ID} must be an integer")
    elif value not in campaigns:
        problems.append(f"{CAMPAIGN_ID} is not a known campaign")
    else:
        return campaigns[value]
    return None


def _placement(body: dict[str, Any], campaign: CampaignConfig | None, problems: list[str]) -> str:
    value = body.get(PLACEMENT)
    if value is None:
        problems.append(f"{PLACEMENT} is required")
    elif not isinstance(value, str):
        problems.append(f"{PLACEMENT} must be a string")
    elif campaign is not None and value not in campaign.placements:
        problems.append(f"{PLACEMENT} is not a placement of campaign {campaign.campaign_id}")
    else:
        return value
    return ""


def _optional(body: dict[str, Any], name: str, allowed: Collection[str]) -> str | None:
    """The field's value ("" when absent or null), or None when it is not one of `allowed`."""
    value = body.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) and value in allowed else None


def too_long(body: Any, max_chars: int) -> list[str]:
    """A problem for each string field longer than `max_chars` characters, in field order."""
    if not isinstance(body, dict):
        return []
    names = (PLACEMENT, LOCATION, DEVICE)
    long = [n for n in names if isinstance(body.get(n), str) and len(body[n]) > max_chars]
    return [f"{name} must be at most {max_chars} characters" for name in long]


def parse_click(body: Any, campaigns: Mapping[int, CampaignConfig]) -> tuple[ServerClick | None, list[str]]:
    """The click and no problems, or None and every problem (one message each, in field order)."""
    if not isinstance(body, dict):
        return None, ["body must be a JSON object"]
    problems: list[str] = []
    campaign = _campaign(body, campaigns, problems)
    placement = _placement(body, campaign, problems)
    location = _optional(body, LOCATION, ALPHA_2)
    if location is None:
        problems.append(f"{LOCATION} must be an ISO 3166-1 alpha-2 country code")
    device = _optional(body, DEVICE, DEVICES)
    if device is None:
        problems.append(f"{DEVICE} must be one of {', '.join(DEVICES)}")
    if problems or campaign is None or location is None or device is None:
        return None, problems
    return ServerClick(campaign, placement, location, device), []


def server_click_record(click: ServerClick, client: Client, *, now: float) -> ClickRecord:
    """The click record of a server-side click: no token, so the member comes from the campaign."""
    return ClickRecord(
        click_id=uuid7(),
        timestamp=xandr_timestamp(now),
        auction_id_64=0,
        member_id=click.campaign.member_id,
        user_id_64=0,
        referer_url="",
        user_agent=clean_text(client.user_agent, MAX_HEADER_CHARS),
        userdata_json="",
        custom_notify_data="",
        test=False,
        source=Source.SERVER,
        creative_id=0,
        landing_url="",
        client_ip=client.ip,
        device=click.device,
        campaign_id=click.campaign.campaign_id,
        placement=click.placement,
        location=click.location,
        country=click.location,  # the reporting dimension, as on records made from a token
    )


def answer(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The ENS answer shape."""
    body = orjson.dumps({"status": "error", "message": message})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


@routes.post(PATH)
async def server_click(request: web.Request) -> web.Response:
    """Record a click a publisher's server reports with its API key."""
    key = request.app[API_KEYS].identify(authorization(request.headers))
    if key is None:
        return answer(401, "unauthorized")
    try:
        raw = await read_json(request)
    except BodyError as exc:
        return answer(exc.status, exc.message)
    config = request.app[CONFIG]
    if long := too_long(raw, config.edge.max_text_chars):
        return answer(422, SEPARATOR.join(long))
    click, problems = parse_click(raw, config.campaigns)
    if click is None:
        return answer(400, SEPARATOR.join(problems))
    limiter = request.app[RATE_LIMITER]
    if not limiter.allow(key.name):
        return answer(429, "rate limit exceeded", {"Retry-After": str(limiter.retry_after(key.name))})
    client = client_of(request, trust_forwarded=config.edge.trust_forwarded)
    if not await record(request.app, event_of(server_click_record(click, client, now=time.time()))):
        limiter.give_back(key.name)
        return answer(503, "click not recorded, try again", {"Retry-After": "1"})
    return web.Response(body=_SUCCESS, content_type="application/json")
