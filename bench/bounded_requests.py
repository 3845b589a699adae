"""Heavy requests, slow clients and normal traffic (issue 10), today's service against this one.

    python bench/bounded_requests.py [--baseline-ref COMMIT] [--texts 50] [--slow-connections 32]
        [--slow-seconds 20] [--load-seconds 5] [--rounds 3]

Two servers run side by side, both `gunicorn app:app` with 2 workers on loopback:
"baseline" is the code of --baseline-ref (git archive into a temporary folder,
its own gunicorn.conf.py: sync workers), "this" is the working tree.

- Heavy requests (this server only: the baseline takes gigabytes and is killed
  at its 25 s timeout): each body once; seconds to the answer, the peak RSS of
  the busiest worker (polled every 10 ms), every worker's RSS 1 s after.
- Slow clients: --slow-connections connections each send a request a byte a
  second for --slow-seconds, while one client sends normal requests one after
  another; how many were answered, their median and slowest time.
- Normal traffic: CoNLL test sentences of 15 words, a new connection a
  request, at 1 and 8 connections, --rounds rounds of --load-seconds a server,
  the servers taking turns; medians over the rounds of p50 latency and req/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
from common import ROOT, machine, ordinary_bodies, write_json

from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from tests import launcher
from tests.launcher import HOST, Gunicorn

# What the baseline needs from its commit to serve.
# The service's files at the baseline ref (before the nerserve package).
SERVED_PATHS = ["app.py", "serve.py", "model", "gunicorn.conf.py", "Procfile", "simple_client.html", "results/crf"]
# The service before issue 10: sync workers, sentences tagged whole, batches by count.
BASELINE_REF = "0b89532"
HEAVY_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 60
POLL_S = 0.01
WORKERS = 2


def heavy_bodies(texts: int) -> dict[str, list[str]]:
    sentences = [" ".join(s.words) for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    news, i = "", 0
    while len(news) < 10_000:
        news, i = news + sentences[i] + " ", i + 1
    url = "https://example.com/" + "x" * 90
    cities = ", ".join(["Paris", "London", "New York", "Berlin", "Tokyo", "Moscow"] * 300)[: 9_999 - len(url)]
    return {
        '"a," x 4,984 + a 32-letter word': ["a," * 4984 + "b" * 32] * texts,
        "one sentence of 2,000 words": [" ".join(["word"] * 2000) + "."] * texts,
        "city names, commas, a long URL": [cities + " " + url] * texts,
        "10,000 characters of news": [news[:10_000]] * texts,
    }


@contextmanager
def servers(baseline_ref: str, served_paths: list[str] = SERVED_PATHS):
    """{"baseline": the service at baseline_ref (its served_paths), "this": the working tree's}, side by side."""
    with tempfile.TemporaryDirectory() as tmp:
        baseline_dir = Path(tmp) / "baseline"
        baseline_dir.mkdir()
        archive = subprocess.run(["git", "archive", baseline_ref, *served_paths], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline_dir)], input=archive, check=True)
        with (launcher.gunicorn(Path(tmp) / "baseline.log", WORKERS, directory=baseline_dir) as baseline,
              launcher.gunicorn(Path(tmp) / "this.log", WORKERS) as this):
            yield {"baseline": baseline, "this": this}


def post(port: int, body: bytes, timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, float]:
    start = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("POST", "/api", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        connection.close()


def rss_mb(process: psutil.Process) -> float:
    try:
        return process.memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


@contextmanager
def peak_rss(workers: list[psutil.Process]):
    """[the highest RSS of any of the workers, in MB, polled while the block runs]."""
    peak, done = [0.0], threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            peak[0] = max(peak[0], *(rss_mb(w) for w in workers))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield peak
    finally:
        done.set()
        watcher.join()


def heavy(server: Gunicorn, bodies: dict[str, list[str]]) -> list[dict]:
    rows = []
    for name, texts in bodies.items():
        workers = server.workers()
        idle = [rss_mb(w) for w in workers]
        with peak_rss(workers) as peak:
            try:
                status, seconds = post(server.port, json.dumps({"texts": texts}).encode(), HEAVY_TIMEOUT_S)
            except OSError as error:  # timed out or cut off: a figure of its own
                status, seconds = type(error).__name__, HEAVY_TIMEOUT_S
        time.sleep(1)  # the target: every worker's RSS one second after the answer
        row = {"body": name, "kb": len(json.dumps({"texts": texts})) // 1024, "status": status,
               "seconds": seconds, "idle_rss_mb": idle, "peak_rss_mb": peak[0],
               "rss_1s_after_mb": [rss_mb(w) for w in server.workers()],
               "workers_replaced": {w.pid for w in server.workers()} != {w.pid for w in workers}}
        print(f"  {name}: {status} in {seconds:.1f} s, peak {peak[0]:.0f} MB, "
              f"after 1 s {', '.join(f'{m:.0f}' for m in row['rss_1s_after_mb'])} MB", flush=True)
        rows.append(row)
    return rows


def trickle(port: int, stop: threading.Event, seconds: float) -> None:
    head = b'POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"text": "' + b"a" * 200
    deadline = time.monotonic() + seconds
    try:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            for byte in head:
                if stop.wait(1.0) or time.monotonic() > deadline:
                    return
                sock.sendall(bytes([byte]))
    except OSError:
        return  # the server closed it


def slow_clients(name: str, server: Gunicorn, normal: list[bytes], connections: int, seconds: float) -> dict:
    stop = threading.Event()
    slow = [threading.Thread(target=trickle, args=(server.port, stop, seconds)) for _ in range(connections)]
    for thread in slow:
        thread.start()
    times, failed, sent = [], 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent += 1
        try:
            status, elapsed = post(server.port, normal[sent % len(normal)])
            if status == 200:
                times.append(elapsed)
            else:
                failed += 1
        except OSError:
            failed += 1
    stop.set()
    for thread in slow:
        thread.join()
    row = {"server": name, "sent": sent, "answered": len(times), "failed": failed,
           "p50_s": statistics.median(times) if times else None, "slowest_s": max(times) if times else None}
    print(f"  {name}: {row}", flush=True)
    return row


def normal_round(server: Gunicorn, normal: list[bytes], connections: int, seconds: float) -> dict:
    times: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    errors = 0

    def client(offset: int) -> None:
        nonlocal errors
        i = offset
        while time.monotonic() < deadline:
            i += connections
            try:
                status, elapsed = post(server.port, normal[i % len(normal)])
            except OSError:
                status, elapsed = 0, 0.0
            with lock:
                if status == 200:
                    times.append(elapsed)
                else:
                    errors += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        list(pool.map(client, range(connections)))
    wall = time.perf_counter() - start
    return {"p50_ms": statistics.median(times) * 1000, "req_s": len(times) / wall, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--texts", type=int, default=50, help="texts in each heavy body")
    parser.add_argument("--slow-connections", type=int, default=32)
    parser.add_argument("--slow-seconds", type=float, default=20)
    parser.add_argument("--load-seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    normal = ordinary_bodies()
    results: dict = {"machine": machine(), "args": vars(args)}
    with servers(args.baseline_ref) as running:
        print("normal traffic (p50 ms, req/s), rounds in turn:", flush=True)
        results["normal"] = {}
        for connections in (1, 8):
            rounds: dict[str, list] = {name: [] for name in running}
            for _ in range(args.rounds):
                for name, server in running.items():
                    rounds[name].append(normal_round(server, normal, connections, args.load_seconds))
            summary = {name: {"p50_ms": statistics.median(r["p50_ms"] for r in runs),
                              "req_s": statistics.median(r["req_s"] for r in runs),
                              "errors": sum(r["errors"] for r in runs)} for name, runs in rounds.items()}
            results["normal"][str(connections)] = {"rounds": rounds, "median": summary}
            print(f"  {connections} connections: {summary}", flush=True)
        print(f"slow clients ({args.slow_connections} connections, a byte a second, {args.slow_seconds:.0f} s):",
              flush=True)
        results["slow_clients"] = [slow_clients(name, server, normal, args.slow_connections, args.slow_seconds)
                                   for name, server in running.items()]
        print(f"heavy requests ({args.texts} texts each), this server:", flush=True)
        results["heavy"] = heavy(running["this"], heavy_bodies(args.texts))
    print(f"written to {write_json('bounded_requests.json', results)}")


if __name__ == "__main__":
    main()
