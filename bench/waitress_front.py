"""The red team's question, measured: waitress instead of the buffered worker (nerserve/server/buffered_worker.py).

    .venv/bin/python bench/waitress_front.py

(bench/results/waitress_front.json: about 5 minutes, with the defaults:
--seconds 25 --stalled 200 --trickling 40 --load-seconds 2 --rounds 3 --heavy 4;
waitress from bench/requirements.txt, wrk from apt.)

waitress also reads whole requests and buffers answers, but it is one process
with threads, so four servers of this working tree run side by side, on loopback:
gunicorn as the Procfile runs it (buffered worker) with 1 and with 2 workers,
and waitress (1 process) with 8 and with 32 threads, set up for a flood
(WAITRESS_TUNED). Measured, the servers taking turns:

- ordinary traffic: wrk at 1 and 8 kept-alive connections, --rounds rounds of
  --load-seconds (stalled_connections.py's figures: p50, req/s, CPU ms a request);
- memory: RSS, PSS, USS of each server's processes, idle after that warm-up,
  and its footprint (idle_memory);
- a slow reader of a ~4.5 MB answer (tests/test_hardening_gunicorn.py) that
  pauses, then reads, while normal requests go on;
- the flood of stalled_connections.py: --stalled stalled and --trickling
  trickling connections for --seconds, normal requests meanwhile;
- what a head cut short gets back (a 408, or nothing);
- SIGTERM to every process, as Heroku sends it, with --heavy requests in flight
  (nginx_front.py), gunicorn with 2 workers against waitress with 32 threads;
- unless --skip-defaults, the flood once more (DEFAULTS_FLOOD_S) against
  waitress with its own defaults (connection_limit 100, channel_timeout 120 s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path

import psutil
from common import bodies_file, machine, memory, ordinary_bodies, require_wrk, write_json, wrk
from nginx_front import lost_at_sigterm
from stalled_connections import (
    CLOSE_WAIT_S,
    NORMAL_TIMEOUT_S,
    close_times,
    cpu_seconds,
    flood,
    normal_requests,
)

from tests import launcher
from tests.launcher import HOST
from tests.test_hardening_gunicorn import (
    LARGE_ANSWER_BODY,
    SLOW_READ_PAUSE_S,
    dechunked,
    read_until_closed,
    send_large_answer_request,
    stall,
)

# waitress set up against a flood, as the dyno would have to run it: as many
# connections as the worker's worker_connections (its default, 100, is below
# the flood), poll() as select() stops at 1024 descriptors, and an inactivity
# timeout of the worker's head deadline, checked every second (defaults: 120 s
# and every 30 s).
WAITRESS_TUNED = {"connection_limit": 4000, "asyncore_use_poll": True, "channel_timeout": 10, "cleanup_interval": 1}
# waitress has no launcher hooks: the service's malloc setting (post_worker_init) is made before it serves.
WAITRESS_MAIN = """
import json, sys
from nerserve.tagger.memory import limit_malloc_arenas
limit_malloc_arenas()
import waitress
from nerserve.web.app import app
waitress.serve(app, **json.loads(sys.argv[1]))
"""
SERVERS = {"gunicorn, 1 worker": ("gunicorn", 1), "gunicorn, 2 workers": ("gunicorn", 2),
           "waitress, 8 threads": ("waitress", 8), "waitress, 32 threads": ("waitress", 32)}
STALLED_HEAD = b"POST /api HTTP/1.1\r\nHost: localhost\r\n"
SLOW_READ_BYTES = 64 * 1024  # what the slow reader takes each SLOW_READ_EVERY_S after its pause
SLOW_READ_EVERY_S = 0.01
SIGTERM_SERVERS = ("gunicorn, 2 workers", "waitress, 32 threads")
# waitress's defaults close an idle connection after 120 s at the soonest: its
# flood's closes are not waited for, only its normal requests are measured.
DEFAULTS_CLOSE_WAIT_S = 5
DEFAULTS_FLOOD_S = 15  # long enough to see what its defaults do to normal requests


@contextmanager
def waitress(log: Path, threads: int, **adjustments):
    """This working tree's app on waitress, on a free loopback port, ready when
    yielded (its model loaded: the first /readyz starts the loader), stopped after.
    A launcher.Gunicorn, so that stalled_connections.cpu_seconds takes it."""
    port = launcher.free_port()
    options = {"host": HOST, "port": port, "threads": threads, **adjustments}
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-c", WAITRESS_MAIN, json.dumps(options)], cwd=launcher.ROOT,
                                   env={**os.environ, "PORT": str(port)}, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    try:
        launcher.wait_until_ready(url, process)
        yield launcher.Gunicorn(url, port, process, log, time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(timeout=30)


def start(stack: ExitStack, tmp: Path, name: str, kind: str, size: int,
          adjustments: dict = WAITRESS_TUNED) -> launcher.Gunicorn:
    log = tmp / (name.replace(", ", "-").replace(" ", "_") + ".log")
    if kind == "gunicorn":
        return stack.enter_context(launcher.gunicorn(log, size))
    return stack.enter_context(waitress(log, size, **adjustments))


def processes(server) -> list[psutil.Process]:
    return [psutil.Process(server.process.pid), *server.workers()]


def wrk_round(server, connections: int, seconds: int, bodies: Path) -> dict:
    cpu_before = cpu_seconds(server)
    summary = wrk(server.url, connections, seconds, bodies)
    return {"p50_ms": summary["latency_us"]["p50"] / 1000,
            "req_s": summary["requests"] / (summary["duration_us"] / 1e6),
            "cpu_ms_per_request": (cpu_seconds(server) - cpu_before) * 1000 / summary["requests"],
            "errors": sum(summary["errors"].values())}


def ordinary_traffic(running: dict, args) -> dict:
    """Medians over rounds, the servers taking turns within each round."""
    results = {}
    with bodies_file() as bodies:
        for connections in (1, 8):
            rounds: dict[str, list] = {name: [] for name in running}
            for _ in range(args.rounds):
                for name, server in running.items():
                    rounds[name].append(wrk_round(server, connections, args.load_seconds, bodies))
            median = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                      | {"errors": sum(r["errors"] for r in runs)} for name, runs in rounds.items()}
            results[str(connections)] = {"rounds": rounds, "median": median}
            print(f"  {connections} connections: {median}", flush=True)
    return results


def idle_memory(server) -> dict:
    """RSS, PSS and USS summed over the server's processes, and its footprint:
    the first process's RSS plus what each worker holds alone (USS), the pages
    the dyno would hold for it. The servers run side by side and map the same
    files (libraries, the word vectors), so PSS splits those pages between
    servers too, and a summed RSS counts the pages a worker shares with its
    master twice. (The footprint misses pages only the workers share.)"""
    first, *workers = processes(server)
    each = [memory(p) for p in (first, *workers)]
    return {"processes": len(each), **{key: sum(m[key] for m in each) for key in ("rss_mb", "pss_mb", "uss_mb")},
            "footprint_mb": each[0]["rss_mb"] + sum(m["uss_mb"] for m in each[1:])}


def slow_read(port: int) -> dict:
    """Ask for LARGE_ANSWER_BODY's answer, stall SLOW_READ_PAUSE_S, then read
    SLOW_READ_BYTES every SLOW_READ_EVERY_S: whether the answer came whole, and when."""
    started = time.perf_counter()
    try:
        with send_large_answer_request(port, b"Connection: close") as sock:
            answer = sock.recv(SLOW_READ_BYTES)
            time.sleep(SLOW_READ_PAUSE_S)
            while chunk := sock.recv(SLOW_READ_BYTES):
                answer += chunk
                time.sleep(SLOW_READ_EVERY_S)
            answer += read_until_closed(sock)
    except OSError as error:
        return {"whole": False, "error": type(error).__name__, "seconds": time.perf_counter() - started}
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        body = dechunked(body) if b"transfer-encoding: chunked" in head.lower() else body
        whole = len(json.loads(body)["results"]) == len(json.loads(LARGE_ANSWER_BODY)["texts"])
    except ValueError:
        whole = False
    return {"whole": whole, "status_line": head.split(b"\r\n")[0].decode(), "bytes": len(body),
            "seconds": time.perf_counter() - started}


def slow_reader_run(server, bodies: list[bytes], args) -> dict:
    """The slow reader in a thread; normal requests meanwhile, for a window that covers its pause and its read."""
    outcome: dict = {}
    reader = threading.Thread(target=lambda: outcome.update(slow_read(server.port)))
    reader.start()
    normal = normal_requests(server.port, bodies, args.slow_window, args.normal_clients)
    reader.join()
    return {"slow_reader": outcome, "normal_meanwhile": normal}


def flood_run(server, bodies: list[bytes], args, seconds: float, close_wait: float) -> dict:
    """stalled_connections.py's flood against one server; its attacker is given up
    on (and its closes left unknown) if they have not all ended within `close_wait` s of its end."""
    results = multiprocessing.Queue()
    attacker = multiprocessing.Process(target=flood, args=(server.port, args.stalled, args.trickling, seconds,
                                                             results))
    attacker.start()
    time.sleep(2)  # the connections are open and stalled before the measurement starts
    normal = normal_requests_or_none(server.port, bodies, seconds - 2, args.normal_clients)
    try:
        closes = close_times(results.get(timeout=close_wait))
    except queue.Empty:
        closes = f"not all closed within {close_wait:.0f} s of the flood's end"
    attacker.terminate()
    attacker.join()
    log = server.log.read_text(errors="replace")
    return {"normal_during_flood": normal, "closes": closes, "tracebacks_in_log": log.count("Traceback"),
            "process_alive": server.process.poll() is None}


def normal_requests_or_none(port: int, bodies: list[bytes], seconds: float, clients: int) -> dict:
    """stalled_connections.normal_requests, which has no percentiles to give when
    none was answered: then what one more request gets, as an example."""
    try:
        return normal_requests(port, bodies, seconds, clients)
    except (IndexError, ValueError):
        return {"answered": 0, "failed": "every one", "failures": [one_request(port, bodies[0])],
                "p50_ms": None, "p99_ms": None, "slowest_ms": None}


def one_request(port: int, body: bytes) -> str:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=NORMAL_TIMEOUT_S)
    try:
        connection.request("POST", "/api", body, {"Content-Type": "application/json"})
        outcome = f"status {connection.getresponse().status}"
    except (OSError, http.client.HTTPException) as error:
        outcome = type(error).__name__
    finally:
        connection.close()
    return f"{outcome} after {time.perf_counter() - started:.1f} s"


def stalled_head_answers(running: dict) -> dict:
    """What a head cut short gets before the server closes it, from every server at once."""
    def answer(server) -> dict:
        started = time.perf_counter()
        got = stall(server.port, STALLED_HEAD)
        return {"status_line": got.split(b"\r\n")[0].decode() or "(nothing)",
                "closed_after_s": time.perf_counter() - started}

    with ThreadPoolExecutor(len(running)) as pool:
        return dict(zip(running, pool.map(answer, running.values()), strict=True))


def floods(running: dict, bodies: list[bytes], args) -> dict:
    results = {}
    for name, server in running.items():
        results[name] = flood_run(server, bodies, args, args.seconds, args.close_wait)
        print(f"  {name}: {results[name]['normal_during_flood']}", flush=True)
    return results


def sigterm(running: dict, args) -> dict:
    """SIGTERM to every process of the server at once, --heavy requests in flight. Last: it stops them."""
    results = {}
    for name in SIGTERM_SERVERS:
        server = running[name]
        results[name] = lost_at_sigterm(server.url, [p.pid for p in processes(server)], args.heavy)
        results[name]["exited_within_s"] = exit_time(server.process)
        print(f"  {name}: {results[name]}", flush=True)
    return results


def exit_time(process: subprocess.Popen) -> float | None:
    started = time.perf_counter()
    try:
        process.wait(timeout=35)  # Heroku's SIGKILL comes at 30 s
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - started


def defaults_flood(bodies: list[bytes], args) -> dict:
    """waitress as it comes (32 threads): the flood's normal requests only."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        server = start(stack, Path(tmp), "waitress-defaults", "waitress", 32, adjustments={})
        return flood_run(server, bodies, args, DEFAULTS_FLOOD_S, DEFAULTS_CLOSE_WAIT_S)


def print_table(results: dict) -> None:
    names = list(SERVERS)
    rows = [("ready after start, s", lambda n: results["ready_s"][n]),
            ("req/s, 1 connection", lambda n: results["ordinary_traffic"]["1"]["median"][n]["req_s"]),
            ("p50 ms, 1 connection", lambda n: results["ordinary_traffic"]["1"]["median"][n]["p50_ms"]),
            ("req/s, 8 connections", lambda n: results["ordinary_traffic"]["8"]["median"][n]["req_s"]),
            ("p50 ms, 8 connections", lambda n: results["ordinary_traffic"]["8"]["median"][n]["p50_ms"]),
            ("CPU ms a request, 8 conn.", lambda n: results["ordinary_traffic"]["8"]["median"][n]["cpu_ms_per_request"]),
            ("idle footprint MB", lambda n: results["memory"][n]["footprint_mb"]),
            ("idle PSS MB (all processes)", lambda n: results["memory"][n]["pss_mb"]),
            ("slow reader: whole answer", lambda n: results["slow_reader"][n]["slow_reader"]["whole"]),
            ("slow reader: seconds", lambda n: results["slow_reader"][n]["slow_reader"]["seconds"]),
            ("  normal p50 ms meanwhile", lambda n: results["slow_reader"][n]["normal_meanwhile"]["p50_ms"]),
            ("  normal p99 ms meanwhile", lambda n: results["slow_reader"][n]["normal_meanwhile"]["p99_ms"]),
            ("flood: normal answered", lambda n: results["flood"][n]["normal_during_flood"]["answered"]),
            ("flood: normal failed", lambda n: results["flood"][n]["normal_during_flood"]["failed"]),
            ("flood: normal p50 ms", lambda n: results["flood"][n]["normal_during_flood"]["p50_ms"]),
            ("flood: normal p99 ms", lambda n: results["flood"][n]["normal_during_flood"]["p99_ms"]),
            ("flood: 'head cut short' closed p50 s", lambda n: closed_p50(results["flood"][n], "head cut short")),
            ("flood: trickling closed p50 s",
             lambda n: closed_p50(results["flood"][n], "trickling a byte a second")),
            ("a stalled head gets", lambda n: results["stalled_head"][n]["status_line"][9:] or "nothing"),
            ("SIGTERM: heavy requests not answered", lambda n: results["sigterm"][n]["not_answered"]),
            ("SIGTERM: exited within s", lambda n: results["sigterm"][n]["exited_within_s"])]
    print(f"\n{'':<38}" + "".join(f"{n:>22}" for n in names))
    for label, value in rows:
        print(f"{label:<38}" + "".join(f"{cell(value, n):>22}" for n in names))
    if "flood_waitress_defaults" in results:
        normal = results["flood_waitress_defaults"]["normal_during_flood"]
        print(f"flood against waitress's defaults (32 threads): {normal['answered']} answered, {normal['failed']} "
              f"failed {normal['failures']}, p50 {normal['p50_ms']} ms, p99 {normal['p99_ms']} ms")


def closed_p50(flood_result: dict, kind: str):
    closes = flood_result["closes"]
    return closes[kind]["p50_s"] if isinstance(closes, dict) else None


def cell(value, name: str) -> str:
    try:
        figure = value(name)
    except KeyError:
        return "-"
    return f"{figure:,.1f}" if isinstance(figure, float) else str(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=25, help="the flood's length")
    parser.add_argument("--stalled", type=int, default=200)
    parser.add_argument("--trickling", type=int, default=40)
    parser.add_argument("--normal-clients", type=int, default=2)
    parser.add_argument("--close-wait", type=float, default=20,
                        help="seconds after the flood's end that its connections have to be closed")
    parser.add_argument("--load-seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-window", type=float, default=15, help="normal requests' seconds beside the slow reader")
    parser.add_argument("--heavy", type=int, default=4, help="requests in flight at SIGTERM (0: no SIGTERM run)")
    parser.add_argument("--skip-defaults", action="store_true", help="no flood against waitress's defaults")
    args = parser.parse_args()
    args.close_wait = min(args.close_wait, CLOSE_WAIT_S)
    require_wrk()
    bodies = ordinary_bodies()
    results: dict = {"machine": machine(), "args": vars(args), "waitress": version("waitress"),
                     "gunicorn": version("gunicorn"), "waitress_adjustments": WAITRESS_TUNED}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = {name: start(stack, Path(tmp), name, kind, size) for name, (kind, size) in SERVERS.items()}
        results["ready_s"] = {name: server.ready_s for name, server in running.items()}
        print("ordinary traffic (wrk):", flush=True)
        results["ordinary_traffic"] = ordinary_traffic(running, args)
        time.sleep(1)  # idle: the last requests' memory handed back
        results["memory"] = {name: idle_memory(server) for name, server in running.items()}
        print(f"memory, idle: {results['memory']}", flush=True)
        print("a slow reader of a ~4.5 MB answer:", flush=True)
        results["slow_reader"] = {}
        for name, server in running.items():
            results["slow_reader"][name] = slow_reader_run(server, bodies, args)
            print(f"  {name}: {results['slow_reader'][name]}", flush=True)
        print(f"flood: {args.stalled} stalled + {args.trickling} trickling connections for {args.seconds:.0f} s",
              flush=True)
        results["flood"] = floods(running, bodies, args)
        results["stalled_head"] = stalled_head_answers(running)
        print(f"a head cut short, then nothing: {results['stalled_head']}", flush=True)
        if args.heavy:
            print(f"SIGTERM with {args.heavy} heavy requests in flight:", flush=True)
            results["sigterm"] = sigterm(running, args)
    if not args.skip_defaults:
        print("flood against waitress's defaults (32 threads):", flush=True)
        results["flood_waitress_defaults"] = defaults_flood(bodies, args)
        print(f"  {results['flood_waitress_defaults']['normal_during_flood']}", flush=True)
    results["load_average_at_end"] = list(os.getloadavg())
    print_table(results)
    print(f"load average at start {results['machine']['load_average_at_start']}, at end "
          f"{results['load_average_at_end']}; written to {write_json('waitress_front.json', results)}")


if __name__ == "__main__":
    main()
