"""Quotas under attack (issue 32, items 1 and 8): a real gunicorn on loopback.

    python bench/quota_concurrency.py [--seconds 40] [--requests 20000] [--checkout DIR]

Part 1, tokens answered against the allowance: NER_TOKEN_RATE_LIMIT=1000/5second
counted in a redis-server on loopback, THREADS threads each posting 600-token
bodies on its own kept-alive connection for --seconds. The token quota allows
1,000 tokens a window, and windows follow each other at best, so the tokens
answered may be at most 1,000 a window begun (elapsed / 5 s, plus one).

Part 2, many clients: --requests POSTs of a one-token text, each from a new
address in X-Forwarded-For (NER_TRUSTED_PROXIES=1, so the header counts), to
one worker counting both quotas in its memory (no Redis): the worker's RSS
before and after, and the p50 latency of the first and the last thousand.

--checkout runs another checkout of the repository (the code before a fix, say)
with this one's Python. Writes bench/results/quota_concurrency.json.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, machine, write_json

from tests import launcher

THREADS = 16
TOKEN_QUOTA = 1000
WINDOW_S = 5
BODY = json.dumps({"text": " ".join(["Angela Merkel visited Washington."] * 120)})  # 600 tokens
BODY_TOKENS = 600
SMALL_BODY = json.dumps({"text": "Paris"})  # 1 token
LATENCY_SAMPLE = 1000
FIRST_ADDRESS = ipaddress.IPv4Address("10.0.0.0")  # each client one address on from here


def post(connection: http.client.HTTPConnection, body: str, headers: dict[str, str] | None = None
         ) -> http.client.HTTPResponse:
    connection.request("POST", "/api", body, {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    response.read()
    return response


def tokens_against_the_allowance(checkout: Path, seconds: float) -> dict:
    """Part 1: THREADS threads of 600-token bodies against 1000/5second counted in Redis."""
    with (launcher.redis_server() as redis, tempfile.TemporaryDirectory() as tmp,
          launcher.gunicorn(Path(tmp) / "gunicorn.log", 2, directory=checkout, REDIS_URL=redis.url,
                            NER_TOKEN_RATE_LIMIT=f"{TOKEN_QUOTA}/{WINDOW_S}second") as server):
        statuses: list[int] = []
        most_remaining = [0]
        lowest_count = [0]
        started = time.monotonic()

        def hammer() -> None:
            connection = http.client.HTTPConnection(launcher.HOST, server.port, timeout=60)
            while time.monotonic() - started < seconds:
                response = post(connection, BODY)
                statuses.append(response.status)
                remaining = int(response.headers.get("X-RateLimit-Remaining-Tokens", 0))
                most_remaining[0] = max(most_remaining[0], remaining)
            connection.close()

        def watch_redis() -> None:
            watcher = redis.client()
            while time.monotonic() - started < seconds:
                counts = [int(watcher.get(key) or 0) for key in watcher.scan_iter("ner-quota:*")]
                lowest_count[0] = min([lowest_count[0], *counts])
                time.sleep(0.05)

        threads = [threading.Thread(target=hammer) for _ in range(THREADS)] + [threading.Thread(target=watch_redis)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    windows = int(elapsed // WINDOW_S) + 1
    answered = statuses.count(200)
    return {"seconds": round(elapsed, 1), "threads": THREADS, "requests": len(statuses), "answered": answered,
            "tokens_answered": answered * BODY_TOKENS, "windows_at_most": windows,
            "tokens_allowed_at_most": windows * TOKEN_QUOTA, "refused_429": statuses.count(429),
            "other_statuses": sorted({s for s in statuses if s not in (200, 429)}),
            "most_remaining_tokens_header": most_remaining[0], "lowest_redis_count": lowest_count[0]}


def many_clients(checkout: Path, requests: int) -> dict:
    """Part 2: `requests` one-token POSTs, each from a new address, to one worker counting in memory."""
    with (tempfile.TemporaryDirectory() as tmp,
          launcher.gunicorn(Path(tmp) / "gunicorn.log", 1, directory=checkout, NER_TRUSTED_PROXIES="1",
                            NER_RATE_LIMIT="600/minute", NER_TOKEN_RATE_LIMIT="200000/minute") as server):
        worker = server.workers()[0]
        connection = http.client.HTTPConnection(launcher.HOST, server.port, timeout=60)
        for _ in range(50):  # warm up, from one address
            post(connection, SMALL_BODY)
        rss_before = worker.memory_info().rss
        times, statuses = [], []
        for i in range(requests):
            address = str(FIRST_ADDRESS + i + 1)
            sent = time.perf_counter()
            statuses.append(post(connection, SMALL_BODY, {"X-Forwarded-For": address}).status)
            times.append(time.perf_counter() - sent)
        rss_after = worker.memory_info().rss
        connection.close()
    return {"requests": requests, "answered": statuses.count(200),
            "rss_before_mb": round(rss_before / 2**20, 1), "rss_after_mb": round(rss_after / 2**20, 1),
            "rss_growth_mb": round((rss_after - rss_before) / 2**20, 1),
            "p50_first_thousand_ms": round(statistics.median(times[:LATENCY_SAMPLE]) * 1000, 2),
            "p50_last_thousand_ms": round(statistics.median(times[-LATENCY_SAMPLE:]) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40, help="part 1: how long the threads post")
    parser.add_argument("--requests", type=int, default=20_000, help="part 2: requests, each a new client")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the repository checkout to run")
    args = parser.parse_args()

    tokens = tokens_against_the_allowance(args.checkout, args.seconds)
    print(f"part 1: {tokens['threads']} threads x {tokens['seconds']} s of {BODY_TOKENS}-token bodies, "
          f"{TOKEN_QUOTA}/{WINDOW_S}second in Redis: {tokens['answered']} answered = {tokens['tokens_answered']} "
          f"tokens, allowed at most {tokens['tokens_allowed_at_most']} ({tokens['windows_at_most']} windows); "
          f"{tokens['refused_429']} refused; most X-RateLimit-Remaining-Tokens "
          f"{tokens['most_remaining_tokens_header']} of {TOKEN_QUOTA}; lowest Redis count "
          f"{tokens['lowest_redis_count']}", flush=True)
    clients = many_clients(args.checkout, args.requests)
    print(f"part 2: {clients['requests']} requests, each a new X-Forwarded-For: worker RSS "
          f"{clients['rss_before_mb']} -> {clients['rss_after_mb']} MB (+{clients['rss_growth_mb']}); p50 "
          f"{clients['p50_first_thousand_ms']} ms first thousand, {clients['p50_last_thousand_ms']} ms last thousand",
          flush=True)
    name = "quota_concurrency.json" if args.checkout == ROOT else "quota_concurrency_other_checkout.json"
    path = write_json(name, {"machine": machine(), "checkout": str(args.checkout),
                             "tokens_against_the_allowance": tokens, "many_clients": clients})
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
