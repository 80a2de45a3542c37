"""`auction.redirect_hosts` entries that are not host names or are public suffixes, and `?pos=` written twice or padded.

An entry allows appended `?r=` destinations to its host and every host under it: `com` allowed
every .com site. Such entries are refused at insertion (`422`); in a token signed under an older
policy they allow nothing (the click goes to the signed landing). A beacon's `pos` given twice or
zero-padded is `422`: the record names one position, read alike by every reader of the URL.
"""

from __future__ import annotations

from urllib.parse import quote

from clickbus.tokens import AdContext
from tests.hostile.harness import LANDING, SIGNED_HOST, Tally, fetch, insert_url, inserter, session
from tests.support.service import Service

ENTRIES = [".", "*", "*.com", "%2e", "com", "co.uk", "github.io", "blogspot.com", "s3.amazonaws.com", "xn--p1ai"]
ENTRIES += ["localhost", "127.0.0.1", "[::1]", "intranet", "shop.example.", ".shop.example", "%73hop.example", ""]
ENTRIES += ["shop example", "shop/example", "shop\\example", "0x7f.1", "a" * 64 + ".example", "b\u00fccher.example"]
UNDER = [
    "https://evil.com/",
    "https://evil.co.uk/",
    "https://evil.github.io/",
    "http://127.0.0.1/",
    "https://x.shop.example.evil/",
]


async def test_redirect_hosts_that_allow_too_much_are_refused(service: Service) -> None:
    tally = Tally("redirect_hosts entries")
    async with session() as client:
        for entry in ENTRIES:
            body = {
                "markup": "${CLICK_URL}",
                "landing_url": LANDING,
                "auction": {"member_id": 13, "redirect_hosts": [entry]},
            }
            tally.count(await fetch(client, "POST", insert_url(service), json=body), f"insert {entry!r}", (422,))
            minted = inserter(service).click_url(AdContext(member_id=13, landing_url=LANDING, redirect_hosts=(entry,)))
            for appended in UNDER:
                answer = await fetch(client, "GET", f"{minted}?r={quote(appended, safe='')}")
                tally.count(answer, f"token allowing {entry!r}, ?r={appended}", (302,))
    tally.report()


async def test_beacon_pos_written_twice_or_padded_is_422(service: Service) -> None:
    tally = Tally("beacon ?pos=")
    token = inserter(service).click_url(AdContext(member_id=13, landing_url=LANDING, redirect_hosts=(SIGNED_HOST,)))
    token = token.rsplit("/", 1)[1]
    queries = {"?pos=1&pos=2": 422, "?pos=1&pos=1": 422, "?pos=01": 422, "?pos=00": 422, "?pos=-0": 422, "?pos=+1": 422}
    queries |= {"?pos=1": 202, "?pos=0": 202, "": 202}
    async with session() as client:
        for kind in ("click", "impression"):
            for query, status in queries.items():
                url = f"{service.url}/v1/beacon/{kind}/{token}{query}"
                answer = await fetch(client, "POST", url, json={"user_id": "u"})
                tally.count(answer, f"{kind} {query}", (status,))
    tally.report()
