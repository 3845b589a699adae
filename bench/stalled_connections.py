"""Stalled and trickling connections against the Procfile's server, and the
cost of the buffered worker on ordinary traffic (issue 22).

    python bench/stalled_connections.py [--seconds 60] [--stalled 500] [--trickling 100]
        [--normal-clients 2] [--load-seconds 5] [--rounds 3] [--skip-baseline] [--skip-flood]
        [--baseline-directory DIR --output NAME.json]

- Flood (this working tree's server, 2 workers, loopback): for --seconds,
  --stalled connections each send part of a request (a head cut short, a body
  cut short, or nothing) and wait; --trickling connections each send a long
  head a byte a second. When the server closes one, it starts again. Beside
  them, --normal-clients clients post CoNLL sentences one after another:
  p50, p99, slowest and failures (an error status, a reset, or no answer
  within 10 s). For every stalled connection the seconds until the server
  closed it, against its deadline (buffered_worker.HEAD_DEADLINE_S, or the
  body's). The flood runs in a process of its own (asyncio), so that it does
  not share the clients' interpreter.
- Ordinary traffic: "baseline" (this working tree on gunicorn's plain gthread
  worker, GUNICORN_CMD_ARGS=--worker-class=gthread) and "this" (the buffered
  worker of gunicorn.conf.py), side by side:
  wrk with kept-alive connections posting 15-word sentences, at 1 and 8
  connections, --rounds rounds of --load-seconds a server, the servers taking
  turns; medians over the rounds of p50 latency, req/s, and the CPU time the
  server's processes used a request (which other work on the machine disturbs
  less).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
from common import bodies_file, machine, ordinary_bodies, percentile, require_wrk, write_json, wrk

from nerserve.server.buffered_worker import GRACE_S, HEAD_DEADLINE_S, MIN_CLIENT_RATE
from tests import launcher
from tests.launcher import HOST

WORKERS = 2
NORMAL_TIMEOUT_S = 10
CLOSE_WAIT_S = 120  # a stalled client gives up waiting for the server after this
STALLED_PARTS = {
    "head cut short": b"POST /api HTTP/1.1\r\nHost: localhost\r\n",
    "body cut short": b'POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"text": "Par',
    "nothing sent": b"",
}
TRICKLED_HEAD = b"POST /api HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"x" * 10_000


def deadline_s(kind: str) -> float:
    """The server's deadline for each kind of stalled connection (nerserve/server/buffered_worker.py)."""
    return GRACE_S + 100 / MIN_CLIENT_RATE if kind == "body cut short" else HEAD_DEADLINE_S


async def stalled_client(port: int, kind: str, until: float, closes: list) -> None:
    """Send STALLED_PARTS[kind], wait for the server to close; again until `until`."""
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(STALLED_PARTS[kind])
            await writer.drain()
            await asyncio.wait_for(reader.read(), CLOSE_WAIT_S)  # to EOF: the server closed it
            closes.append((kind, time.monotonic() - started))
            writer.close()
        except OSError as error:  # TimeoutError included
            closes.append((kind, f"{type(error).__name__} after {time.monotonic() - started:.1f} s"))
            await asyncio.sleep(1)


async def trickling_client(port: int, until: float, closes: list) -> None:
    """Send TRICKLED_HEAD a byte a second until the server answers or closes; again until `until`."""
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            answer = asyncio.ensure_future(reader.read())
            for byte in TRICKLED_HEAD:
                if answer.done() or time.monotonic() > until:
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(1)
            await asyncio.wait_for(answer, CLOSE_WAIT_S)
            closes.append(("trickling a byte a second", time.monotonic() - started))
            writer.close()
        except OSError as error:  # TimeoutError included
            closes.append(("trickling a byte a second", f"{type(error).__name__}"))
            await asyncio.sleep(1)


def flood(port: int, stalled: int, trickling: int, seconds: float, results) -> None:
    """The flood, in its own process: puts [(kind, seconds to close or an error)] on `results`."""
    async def run() -> list:
        until = time.monotonic() + seconds
        closes: list = []
        kinds = list(STALLED_PARTS)
        clients = [stalled_client(port, kinds[i % len(kinds)], until, closes) for i in range(stalled)]
        clients += [trickling_client(port, until, closes) for _ in range(trickling)]
        await asyncio.gather(*clients)
        return closes

    results.put(asyncio.run(run()))


def normal_requests(port: int, bodies: list[bytes], seconds: float, clients: int) -> dict:
    """Clients posting bodies one after another for `seconds`: latencies and failures."""
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.monotonic() < until:
            i += clients
            started = time.perf_counter()
            connection = http.client.HTTPConnection(HOST, port, timeout=NORMAL_TIMEOUT_S)
            try:
                connection.request("POST", "/api", bodies[i % len(bodies)], {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                outcome = None if response.status == 200 else f"status {response.status}"
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
            finally:
                connection.close()
            with lock:
                if outcome is None:
                    times.append(time.perf_counter() - started)
                else:
                    failures.append(outcome)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ms = [t * 1000 for t in times]
    return {"answered": len(times), "failed": len(failures), "failures": sorted(set(failures)),
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "slowest_ms": max(ms)}


def close_times(closes: list) -> dict:
    """Per kind of stalled connection: how many were closed, seconds to close, errors."""
    summary = {}
    for kind in [*STALLED_PARTS, "trickling a byte a second"]:
        seconds = [c for k, c in closes if k == kind and isinstance(c, float)]
        errors = [c for k, c in closes if k == kind and not isinstance(c, float)]
        summary[kind] = {"closed": len(seconds), "errors": len(errors), "error_examples": errors[:5],
                         "deadline_s": None if kind.startswith("trickling") else deadline_s(kind),
                         "min_s": min(seconds, default=None), "p50_s": percentile(seconds, 50) if seconds else None,
                         "max_s": max(seconds, default=None)}
    return summary


def flood_run(args, bodies: list[bytes]) -> dict:
    with tempfile.TemporaryDirectory() as tmp, launcher.gunicorn(Path(tmp) / "this.log", WORKERS) as server:
        quiet = normal_requests(server.port, bodies, min(10, args.seconds), args.normal_clients)
        print(f"  no flood (10 s): {quiet}", flush=True)
        results = multiprocessing.Queue()
        attacker = multiprocessing.Process(target=flood, args=(server.port, args.stalled, args.trickling,
                                                                 args.seconds, results))
        attacker.start()
        time.sleep(2)  # the connections are open and stalled before the measurement starts
        normal = normal_requests(server.port, bodies, args.seconds - 2, args.normal_clients)
        closes = results.get(timeout=args.seconds + CLOSE_WAIT_S + 60)
        attacker.join()
        log = server.log.read_text()
        row = {"normal_without_flood": quiet, "normal_during_flood": normal, "closes": close_times(closes),
               "closed_connection_log_lines": log.count("closed a connection from"),
               "tracebacks_in_log": log.count("Traceback")}
    print(f"  normal requests during the flood: {normal}", flush=True)
    for kind, figures in row["closes"].items():
        print(f"  {kind}: {figures}", flush=True)
    return row


@contextmanager
def baseline_and_this(baseline_directory: str | None = None):
    """{"baseline": the service on gthread, or another checkout's as it serves
    (baseline_directory), "this": on the buffered worker}, side by side."""
    baseline_options = ({"directory": Path(baseline_directory)} if baseline_directory
                        else {"GUNICORN_CMD_ARGS": "--worker-class=gthread"})
    with (tempfile.TemporaryDirectory() as tmp,
          launcher.gunicorn(Path(tmp) / "baseline.log", WORKERS, **baseline_options) as baseline,
          launcher.gunicorn(Path(tmp) / "this.log", WORKERS) as this):
        yield {"baseline": baseline, "this": this}


def cpu_seconds(server) -> float:
    """The CPU time the server's processes have used: less sensitive than
    latency and throughput to other work on the machine."""
    processes = [psutil.Process(server.process.pid), *server.workers()]
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def ordinary_traffic(args) -> dict:
    results = {}
    with baseline_and_this(args.baseline_directory) as running, bodies_file() as bodies:
        for connections in (1, 8):
            rounds: dict[str, list] = {name: [] for name in running}
            for _ in range(args.rounds):
                for name, server in running.items():
                    cpu_before = cpu_seconds(server)
                    summary = wrk(server.url, connections, args.load_seconds, bodies)
                    rounds[name].append({"p50_ms": summary["latency_us"]["p50"] / 1000,
                                         "req_s": summary["requests"] / (summary["duration_us"] / 1e6),
                                         "cpu_ms_per_request": (cpu_seconds(server) - cpu_before) * 1000
                                         / summary["requests"],
                                         "errors": sum(summary["errors"].values())})
            median = {name: {"p50_ms": statistics.median(r["p50_ms"] for r in runs),
                             "req_s": statistics.median(r["req_s"] for r in runs),
                             "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in runs),
                             "errors": sum(r["errors"] for r in runs)} for name, runs in rounds.items()}
            median["p50_ms_added"] = median["this"]["p50_ms"] - median["baseline"]["p50_ms"]
            median["req_s_ratio"] = median["this"]["req_s"] / median["baseline"]["req_s"]
            results[str(connections)] = {"rounds": rounds, "median": median}
            print(f"  {connections} connections: {median}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--stalled", type=int, default=500)
    parser.add_argument("--trickling", type=int, default=100)
    parser.add_argument("--normal-clients", type=int, default=2)
    parser.add_argument("--load-seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-baseline", action="store_true", help="the flood only")
    parser.add_argument("--skip-flood", action="store_true", help="ordinary traffic only")
    parser.add_argument("--baseline-directory",
                        help="compare ordinary traffic with this checkout as it serves, not with gthread")
    parser.add_argument("--output", default="stalled_connections.json")
    args = parser.parse_args()
    require_wrk()
    bodies = ordinary_bodies()
    results: dict = {"machine": machine(), "args": vars(args)}
    if not args.skip_flood:
        print(f"flood: {args.stalled} stalled + {args.trickling} trickling connections for {args.seconds:.0f} s",
              flush=True)
        results["flood"] = flood_run(args, bodies)
    if not args.skip_baseline:
        baseline = args.baseline_directory or "gthread"
        print(f"ordinary traffic, {baseline} against this (buffered worker):", flush=True)
        results["ordinary_traffic"] = ordinary_traffic(args)
    results["load_average_at_end"] = list(os.getloadavg())
    print(f"written to {write_json(args.output, results)}")


if __name__ == "__main__":
    main()
