"""A minimal webhook receiver for the benchmark, in its own process so that its CPU
is not Home Assistant's: answers every POST with 204 at once and counts what it
got. ``scenario.py`` starts it (``ingestor_webhook``), reads the port from its
first line of output, asks ``GET /count`` until every event has arrived, and
stops it by its pid.

Counting reads the bytes, not the JSON: HA Ingestor's bodies are compact JSON
arrays of enriched events (Home Assistant's encoder, no spaces), each object
starting with ``{"time":``, and the benchmark's own events are the ones whose
``entity_id`` is ``sensor.power_*`` (the health entities' state changes are sent
too, and left out, as they are from InfluxDB's count). Signatures are checked
(``X-HA-Ingestor-Signature``, HMAC-SHA256 of ``"<t>.<body>"``); a bad one is
counted, not refused.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import signal

from aiohttp import web

EVENT = b'{"time":'
BENCH_EVENT = b'"entity_id":"sensor.power_'


class Counts:
    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.requests = 0
        self.events = 0
        self.bench_events = 0
        self.bytes = 0
        self.bad_signatures = 0

    def check(self, header: str, body: bytes) -> bool:
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        signed = parts.get("t", "").encode() + b"." + body
        digest = hmac.new(self.secret, signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest, parts.get("v1", ""))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    counts = Counts(args.secret)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        counts.requests += 1
        counts.bytes += len(body)
        counts.events += body.count(EVENT)
        counts.bench_events += body.count(BENCH_EVENT)
        if not counts.check(request.headers.get("X-HA-Ingestor-Signature", ""), body):
            counts.bad_signatures += 1
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": counts.requests,
                "events": counts.events,
                "bench_events": counts.bench_events,
                "bytes": counts.bytes,
                "bad_signatures": counts.bad_signatures,
            }
        )

    # A batch of 5,000 enriched events is several MB: no body size limit.
    app = web.Application(client_max_size=2**31)
    app.router.add_post("/", receive)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    # The port the system chose.
    print(runner.addresses[0][1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
