"""Heavy clients against the service (issue 32, item 3): do small requests
still get answered, is every heavy request answered or refused in time, and
what does a worker hold?

    python bench/heavy_clients.py [--clients 64] [--seconds 60] [--ignore-retry-after] [--directory DIR]

`gunicorn app:app` with 2 workers on loopback, from this checkout or from
--directory (another checkout, for a side-by-side run). For --seconds:
- --clients threads each post the largest body the limits take (50 texts of
  1,999 tokens), again and again, each waiting ROUTER_TIMEOUT_S at most, as
  Heroku's router would, then leaving; refused (503), a client waits the
  seconds of Retry-After, as HTTP clients' retry policies do (urllib3's
  Retry), or, with --ignore-retry-after, posts again at once, as a hostile one;
- one client posts a 15-word text every SMALL_EVERY_S.
Then: the small requests' p50 and p99; the heavy requests answered (200) and
refused (503), and the slowest of each; every worker's RSS idle before the
load, its peak (polled every POLL_S) and SETTLE_S after the load; and from the access log, the 200s
computed for clients that had left (answered in the log, never received).
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from pathlib import Path

from common import ROOT, machine, ordinary_bodies, percentile, write_json

from tests import launcher
from tests.launcher import HOST

WORKERS = 2
MAXIMAL_BODY = json.dumps({"texts": ["a " * 1999] * 50}).encode()
ROUTER_TIMEOUT_S = 30
SMALL_EVERY_S = 0.2
POLL_S = 0.05
SETTLE_S = 5


def post(port: int, body: bytes, timeout_s: float) -> tuple[int | None, float, float]:
    """Status (None when the client gave up or the connection failed), seconds, and Retry-After (0 without)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request("POST", "/api", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started, float(response.getheader("Retry-After") or 0)
    except OSError:
        return None, time.perf_counter() - started, 0.0
    finally:
        connection.close()


def loop(port: int, body: bytes, until: float, every_s: float, timeout_s: float, honour_retry_after: bool,
         into: list) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        status, seconds, retry_after_s = post(port, body, timeout_s)
        into.append((status, seconds))
        pause_s = retry_after_s if honour_retry_after else 0.0
        time.sleep(max(pause_s, every_s - (time.perf_counter() - started)))


def watch_memory(server, until: threading.Event, peaks: dict[int, float]) -> None:
    while not until.is_set():
        for worker in server.workers():
            try:
                peaks[worker.pid] = max(peaks.get(worker.pid, 0.0), worker.memory_info().rss / 2**20)
            except OSError:
                pass
        until.wait(POLL_S)


def run(clients: int, seconds: float, honour_retry_after: bool, directory: Path) -> dict:
    with launcher.gunicorn(Path("/tmp") / f"heavy-clients-{time.time_ns()}.log", WORKERS, directory=directory) as server:
        idle = {worker.pid: worker.memory_info().rss / 2**20 for worker in server.workers()}
        until = time.perf_counter() + seconds
        heavy: list = []
        small: list = []
        threads = [threading.Thread(target=loop, args=(server.port, MAXIMAL_BODY, until, 0, ROUTER_TIMEOUT_S,
                                                       honour_retry_after, heavy)) for _ in range(clients)]
        threads.append(threading.Thread(target=loop, args=(server.port, ordinary_bodies()[0], until, SMALL_EVERY_S,
                                                           ROUTER_TIMEOUT_S * 4, True, small)))
        done, peaks = threading.Event(), {}
        watcher = threading.Thread(target=watch_memory, args=(server, done, peaks))
        watcher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ended = time.perf_counter()
        done.set()
        watcher.join()
        time.sleep(SETTLE_S)
        settled = {worker.pid: worker.memory_info().rss / 2**20 for worker in server.workers()}
        log = server.log.read_text()
    logged_200 = log.count('path="/api" status=200')
    received_200 = sum(status == 200 for status, _ in heavy + small)
    small_ms = [s * 1000 for status, s in small if status == 200]
    by_status = {str(k): sum(status == k for status, _ in heavy) for k in sorted({s for s, _ in heavy}, key=str)}
    return {
        "clients": clients, "seconds": seconds, "honour_retry_after": honour_retry_after,
        "drained_s": round(ended - until, 1),
        "small": {"sent": len(small), "answered": len(small_ms), "p50_ms": round(percentile(small_ms, 50), 1),
                  "p99_ms": round(percentile(small_ms, 99), 1), "max_ms": round(max(small_ms), 1)},
        "heavy": {"by_status": by_status,
                  "slowest_200_s": round(max((s for st, s in heavy if st == 200), default=0), 1),
                  "slowest_503_s": round(max((s for st, s in heavy if st == 503), default=0), 1),
                  "gave_up": sum(status is None for status, _ in heavy)},
        "worker_idle_rss_mb": sorted(round(v) for v in idle.values()),
        "worker_peak_rss_mb": sorted(round(v) for v in peaks.values()),
        "worker_rss_after_mb": sorted(round(v) for v in settled.values()),
        "computed_for_clients_gone": logged_200 - received_200,
        "dropped_logged": log.count("dropped POST /api"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--ignore-retry-after", action="store_true", help="post again at once when refused")
    parser.add_argument("--directory", type=Path, default=ROOT, help="the checkout to serve")
    parser.add_argument("--output", default="heavy_clients.json")
    args = parser.parse_args()
    result = {"machine": machine(),
              **run(args.clients, args.seconds, not args.ignore_retry_after, args.directory.resolve())}
    print(json.dumps(result, indent=2))
    write_json(args.output, result)


if __name__ == "__main__":
    main()
