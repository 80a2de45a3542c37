"""A real bidder click handler on 127.0.0.1 for tests and benchmarks.

It records every request it receives (headers, body, arrival time) and
answers according to a script: a list of behaviours used one per request,
then `default` for every later one. Behaviours: "200", "500", "400", "410",
"429" (with `Retry-After: <retry_after>`), "hang" (never answers), "close"
(drops the connection without answering).

`python -m tests.support.bidder` serves one for a benchmark and prints its URL;
`GET /received` returns `[[webhook-id, arrival time], ...]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

from aiohttp import web

PATH = "/click"
HANG_S = 3600.0


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    answered: str

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass(slots=True)
class BidderStub:
    """An aiohttp bidder whose answers follow `script`, then `default`."""

    default: str = "200"
    script: list[str] = field(default_factory=list)
    retry_after: str = "0"
    click_response: bytes = b'{"click_response": {"ok": true}}'
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    hanging: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(PATH, self._click)
        app.router.add_get("/received", self._received)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{PATH}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def bodies(self, answered: str | None = None) -> list[bytes]:
        return [r.body for r in self.received if answered is None or r.answered == answered]

    async def _click(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.script.pop(0) if self.script else self.default
        body = await request.read()
        self.received.append(Received(dict(request.headers.items()), body, time.time(), behaviour))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await self._answer(request, behaviour)

    async def _answer(self, request: web.Request, behaviour: str) -> web.StreamResponse:
        if behaviour == "hang":
            self.hanging += 1
            try:
                await asyncio.sleep(HANG_S)
            finally:
                self.hanging -= 1
        if behaviour == "close":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if behaviour == "429":
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        if behaviour == "200":
            return web.Response(body=self.click_response, content_type="application/json")
        return web.Response(status=int(behaviour))

    async def _received(self, request: web.Request) -> web.Response:
        return web.json_response([[r.webhook_id, r.at] for r in self.received])


async def _serve() -> None:
    stub = BidderStub()
    print(await stub.start(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(_serve())
    except KeyboardInterrupt:
        sys.exit(0)
