"""What one request may cost, within the limits: the token budget, sharing a
worker, memory, compression; and ordinary traffic against the service before.

    python bench/request_cost.py [--baseline-ref COMMIT] [--share-seconds 20] [--load-seconds 5] [--rounds 3]

- Maximal bodies, one at a time, `gunicorn app:app` with 2 workers: for each
  shape of bench/bounded_requests.py, as many texts of 10,000 characters as
  the token budget (NER_MAX_TOKENS) accepts, then a body of 50 of the costliest
  texts, over the budget. Seconds to the answer, the busiest worker's peak RSS
  (polled every 10 ms), every worker's RSS one second after, and the answer's
  size with and without gzip.
- Two maximal bodies at once on the 2 workers: the peak of the service's total
  PSS (master and workers; shared pages counted once).
- Sharing: one worker (1 worker) tagging maximal bodies one after another for
  --share-seconds, while a client sends 15-word requests one after another:
  their p50 and p99.
- Ordinary traffic: 15-word requests at 1 and 8 connections, this service and
  --baseline-ref's side by side, rounds in turn (bounded_requests.normal_round).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
from bounded_requests import SERVED_PATHS, heavy_bodies, normal_round, peak_rss, post, rss_mb, servers
from common import machine, ordinary_bodies, percentile, write_json

from nerserve import settings
from nerserve.tagger.pipeline import read_documents
from tests import launcher
from tests.launcher import Gunicorn

BASELINE_REF = "e82a04a"  # the service before the token budget and the slices
BASELINE_PATHS = [*SERVED_PATHS, "settings.py"]  # paths at the baseline ref, before the nerserve package
MAX_TOKENS = settings.defaults()["NER_MAX_TOKENS"]
MAX_TEXTS = settings.defaults()["NER_MAX_TEXTS"]
COSTLIEST = '"a," x 4,984 + a 32-letter word'
POLL_S = 0.05


def maximal_bodies() -> dict[str, bytes]:
    """Each shape's largest body within the limits, and one over the token budget."""
    bodies = {}
    for name, texts in heavy_bodies(MAX_TEXTS).items():
        tokens_a_text = read_documents(texts[:1])[0].token_count
        count = min(MAX_TEXTS, MAX_TOKENS // tokens_a_text)
        bodies[f"{name} x {count}"] = json.dumps({"texts": texts[:count]}).encode()
    bodies[f"{COSTLIEST} x {MAX_TEXTS} (over the budget)"] = json.dumps(
        {"texts": heavy_bodies(MAX_TEXTS)[COSTLIEST]}).encode()
    return bodies


def answer_sizes(port: int, body: bytes) -> dict[str, int]:
    sizes = {}
    for encoding in ("identity", "gzip"):
        connection = http.client.HTTPConnection(launcher.HOST, port, timeout=120)
        connection.request("POST", "/api", body, {"Content-Type": "application/json", "Accept-Encoding": encoding})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        sizes[encoding] = len(data)
        if encoding == "gzip" and response.getheader("Content-Encoding") == "gzip":
            assert json.loads(gzip.decompress(data))  # a whole answer
    return sizes


def one_at_a_time(server: Gunicorn, bodies: dict[str, bytes]) -> list[dict]:
    rows = []
    for name, body in bodies.items():
        workers = server.workers()
        with peak_rss(workers) as peak:
            status, seconds = post(server.port, body, 120)
        time.sleep(1)
        row = {"body": name, "kb": len(body) // 1024, "status": status, "seconds": seconds, "peak_rss_mb": peak[0],
               "rss_1s_after_mb": [rss_mb(w) for w in server.workers()],
               "answer_bytes": answer_sizes(server.port, body) if status == 200 else None}
        print(f"  {name}: {status} in {seconds:.2f} s, peak {peak[0]:.0f} MB, after 1 s "
              f"{', '.join(f'{m:.0f}' for m in row['rss_1s_after_mb'])} MB, answer {row['answer_bytes']}", flush=True)
        rows.append(row)
    return rows


def total_pss_mb(server: Gunicorn) -> float:
    master = psutil.Process(server.process.pid)
    total = 0.0
    for process in [master, *master.children()]:
        try:
            total += process.memory_full_info().pss / 2**20
        except psutil.NoSuchProcess:
            pass
    return total


def two_at_once(server: Gunicorn, body: bytes) -> dict:
    idle = total_pss_mb(server)
    peak, done = [idle], threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            peak[0] = max(peak[0], total_pss_mb(server))

    watcher = threading.Thread(target=watch)
    watcher.start()
    results: list = []
    senders = [threading.Thread(target=lambda: results.append(post(server.port, body, 120))) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    done.set()
    watcher.join()
    row = {"idle_pss_mb": idle, "peak_pss_mb": peak[0], "statuses": [status for status, _ in results],
           "seconds": [seconds for _, seconds in results]}
    print(f"  two maximal bodies at once: total PSS {idle:.0f} MB idle, peak {peak[0]:.0f} MB, {row}", flush=True)
    return row


def sharing(heavy_body: bytes, small: list[bytes], seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, launcher.gunicorn(Path(tmp) / "one.log", 1) as server:
        stop = threading.Event()
        heavy_times: list[float] = []

        def heavy_loop() -> None:
            while not stop.is_set():
                heavy_times.append(post(server.port, heavy_body, 120)[1])

        sender = threading.Thread(target=heavy_loop)
        sender.start()
        time.sleep(0.5)  # the first heavy request is under way
        times, statuses = [], []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, elapsed = post(server.port, small[len(times) % len(small)])
            times.append(elapsed)
            statuses.append(status)
        stop.set()
        sender.join()
    row = {"small_requests": len(times), "not_200": sum(s != 200 for s in statuses),
           "p50_s": statistics.median(times), "p99_s": percentile(times, 99), "max_s": max(times),
           "heavy_requests": len(heavy_times), "heavy_p50_s": statistics.median(heavy_times)}
    print(f"  one worker, maximal bodies in a loop, 15-word requests alongside: {row}", flush=True)
    return row


def ordinary(running: dict[str, Gunicorn], small: list[bytes], seconds: float, rounds: int) -> dict:
    results = {}
    for connections in (1, 8):
        runs: dict[str, list] = {name: [] for name in running}
        for _ in range(rounds):
            for name, server in running.items():
                runs[name].append(normal_round(server, small, connections, seconds))
        summary = {name: {"p50_ms": statistics.median(r["p50_ms"] for r in rs),
                          "req_s": statistics.median(r["req_s"] for r in rs),
                          "errors": sum(r["errors"] for r in rs)} for name, rs in runs.items()}
        summary["ratio"] = {key: summary["this"][key] / summary["baseline"][key] for key in ("p50_ms", "req_s")}
        results[str(connections)] = {"rounds": runs, "median": summary}
        print(f"  {connections} connections: {summary}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--share-seconds", type=float, default=20)
    parser.add_argument("--load-seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    small = ordinary_bodies()
    bodies = maximal_bodies()
    results: dict = {"machine": machine(), "args": vars(args), "max_tokens": MAX_TOKENS}
    with servers(args.baseline_ref, BASELINE_PATHS) as running:
        print("ordinary traffic (p50 ms, req/s), this service and the baseline, rounds in turn:", flush=True)
        results["ordinary"] = ordinary(running, small, args.load_seconds, args.rounds)
        print("maximal bodies, one at a time (2 workers):", flush=True)
        results["maximal"] = one_at_a_time(running["this"], bodies)
        costliest = next(body for name, body in bodies.items() if name.startswith(COSTLIEST))
        results["two_at_once"] = two_at_once(running["this"], costliest)
    print("sharing one worker:", flush=True)
    results["sharing"] = sharing(costliest, small, args.share_seconds)
    results["load_average_at_end"] = list(psutil.getloadavg())
    print(f"written to {write_json('request_cost.json', results)}")


if __name__ == "__main__":
    main()
