"""What API keys, quotas and metrics cost: the service with them off and on, side by side.

    python bench/public_overhead.py [--connections 1 8] [--seconds 5] [--repeats 3] [--workers 2]

Two gunicorn servers (the project's gunicorn.conf.py, loopback), started together:
  off  no key, no quota, NER_METRICS=off (the open demo);
  on   an API key checked on every request, a request and a token quota (high
       enough never to refuse) counted in a redis-server on loopback (one round
       trip a request counts both), and metrics.
wrk (one thread) posts 15-word CoNLL test sentences to both servers in turn at
every level, so that a noisy moment hits both alike; medians of --repeats runs of
--seconds. Beside req/s and latency, which a busy machine blurs, each run gives
the CPU time the server's processes (and Redis) spent a request, which it
blurs much less: at saturation, req/s is the cores over it. Then each server's memory (RSS and PSS of the workers, and the PSS
total against the 512 MB dyno), and what each part costs a request, timed
alone: the key check, the metrics a request updates (in multiprocess mode, as
under gunicorn), and the quota charge (access.QuotaStore.add of both quotas:
one Redis round trip) in a loop and right after a model call, as in a worker: on a busy machine
the process that has just used the CPU waits for its turn when the answer comes back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack

import psutil
from common import ROOT, bodies_file, gunicorn, machine, memory, require_wrk, write_json
from common import wrk as run_wrk
from load import WARM_UP_CONNECTIONS, WARM_UP_SECONDS, measure, median_row

from nerserve import settings
from nerserve.tagger.pipeline import load_pipeline
from nerserve.web import access
from tests.launcher import redis_server

KEY = "bench-key"
QUOTAS = {"NER_RATE_LIMIT": "100000000/minute", "NER_TOKEN_RATE_LIMIT": "1000000000/minute"}
DYNO_MB = 512
CALLS = 2000


def configurations(redis_url: str) -> dict[str, dict[str, str]]:
    return {"off": {"NER_METRICS": "off"},
            "on": {"NER_API_KEYS": hashlib.sha256(KEY.encode()).hexdigest(), **QUOTAS, "REDIS_URL": redis_url,
                   "NER_METRICS": "on"}}


def median_us(call: Callable[[], object], calls: int = CALLS) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def cpu_seconds(pid: int, children: bool) -> float:
    """User and system CPU time of a process (and its children: gunicorn's workers)."""
    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [process, *(process.children() if children else [])])


def measure_cpu(server, redis, connections: int, seconds: int, bodies, headers: dict) -> dict:
    """One wrk run, with the server's and Redis's CPU milliseconds a request."""
    server_before, redis_before = cpu_seconds(server.process.pid, True), cpu_seconds(redis.process.pid, False)
    run = measure(server.url, connections, seconds, bodies, headers)
    requests = max(run["requests"], 1)
    run["cpu_ms_per_request"] = (cpu_seconds(server.process.pid, True) - server_before) * 1000 / requests
    run["redis_cpu_ms_per_request"] = (cpu_seconds(redis.process.pid, False) - redis_before) * 1000 / requests
    return run


# One request's metric updates (nerserve/web/metrics.py's hooks and counted()), timed in a
# process of their own: prometheus_client's mode is fixed when it is imported.
METRICS_TIMING = """
import time, metrics
result = {"tokens": [None] * 15, "entities": [{"type": "PER"}, {"type": "LOC"}]}
def one_request():
    metrics.IN_FLIGHT.inc()
    list(metrics.counted(iter([result])))
    metrics.REQUESTS.labels("/api", 200).inc()
    metrics.DURATION.labels("/api").observe(0.003)
    metrics.IN_FLIGHT.dec()
one_request()
started = time.perf_counter()
for _ in range(%d):
    one_request()
print((time.perf_counter() - started) / %d * 1e6)
"""


def metrics_us(calls: int = CALLS) -> float:
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        output = subprocess.run([sys.executable, "-c", METRICS_TIMING % (calls, calls)], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True).stdout
    return float(output)


def workers_memory(server) -> dict:
    workers = [memory(worker) for worker in psutil.Process(server.process.pid).children()]
    master = memory(psutil.Process(server.process.pid))
    return {"workers": workers, "total_pss_mb": master["pss_mb"] + sum(w["pss_mb"] for w in workers),
            "worker_rss_mb": statistics.mean(w["rss_mb"] for w in workers),
            "worker_pss_mb": statistics.mean(w["pss_mb"] for w in workers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default="public_overhead.json")
    args = parser.parse_args()
    require_wrk()
    started = machine()  # the load average as the run begins
    headers = {"Authorization": f"Bearer {KEY}"}

    with bodies_file() as bodies, redis_server() as redis, ExitStack() as stack:
        servers = {name: stack.enter_context(gunicorn(args.workers, "onnx", **env))
                   for name, env in configurations(redis.url).items()}
        for server in servers.values():
            run_wrk(server.url, WARM_UP_CONNECTIONS, WARM_UP_SECONDS, bodies, headers=headers)
        runs: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.repeats):
            for connections in args.connections:
                for name, server in servers.items():
                    run = measure_cpu(server, redis, connections, args.seconds, bodies, headers)
                    assert run["errors"] == 0, (name, run)  # a 401 or a 429 would count as an error
                    runs.setdefault((name, connections), []).append(run)
        rows = [{"server": name, "connections": connections, **median_row(level_runs),
                 **{key: statistics.median(run[key] for run in level_runs)
                    for key in ("cpu_ms_per_request", "redis_cpu_ms_per_request")},
                 "runs": level_runs}
                for (name, connections), level_runs in runs.items()]
        memories = {name: workers_memory(server) for name, server in servers.items()}

        store = access.QuotaStore(redis.url)
        charges = [("bench-requests", 60, 1), ("bench-tokens", 60, 15)]
        charge_us = median_us(lambda: store.add(charges))
        pipeline = load_pipeline(settings.current()["NER_MODEL_DIR"], "onnx")
        sentence = json.loads(bodies.read_text().splitlines()[0])["text"]
        after_model = []
        for _ in range(CALLS // 10):
            pipeline.tag([sentence])
            after_model.append(median_us(lambda: store.add(charges), 1))
        charge_after_model_us = statistics.median(after_model)
    digests = (hashlib.sha256(KEY.encode()).hexdigest(),)
    parts_us = {"key check": median_us(lambda: access.matching_key_id(KEY, digests)),
                "metrics": metrics_us(), "quota charge (Redis)": charge_us,
                "quota charge (Redis), after a model call": charge_after_model_us}

    print(f"{args.workers} workers; medians of {args.repeats} runs of {args.seconds} s; load average "
          f"{os.getloadavg()[0]:.2f} (the machine is shared)")
    print(f"{'':<10} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s vs off':>13} {'p50 vs off':>11} "
          f"{'CPU ms/req':>11} {'+Redis':>7} {'CPU vs off':>11}")
    off = {row["connections"]: row for row in rows if row["server"] == "off"}
    for row in sorted(rows, key=lambda r: (r["connections"], list(servers).index(r["server"]))):
        base = off[row["connections"]]
        row["rps_ratio"] = row["rps"] / base["rps"]
        row["p50_delta_ms"] = row["p50_ms"] - base["p50_ms"]
        row["cpu_ratio"] = (row["cpu_ms_per_request"] + row["redis_cpu_ms_per_request"]) / base["cpu_ms_per_request"]
        print(f"{row['server']:<10} {row['connections']:>3} {row['rps']:>8.1f} {row['p50_ms']:>8.3f} "
              f"{row['p99_ms']:>8.3f} {row['rps_ratio']:>13.3f} {row['p50_delta_ms']:>+11.3f} "
              f"{row['cpu_ms_per_request']:>11.3f} {row['redis_cpu_ms_per_request']:>7.3f} {row['cpu_ratio']:>11.3f}")
    for name, m in memories.items():
        print(f"{name:<10} worker RSS {m['worker_rss_mb']:.0f} MB, PSS {m['worker_pss_mb']:.0f} MB; "
              f"total PSS {m['total_pss_mb']:.0f} of {DYNO_MB} MB")
    for part, us in parts_us.items():
        print(f"{part:<42} {us:6.0f} us a request" + (" (both quotas)" if "quota" in part else ""))
    path = write_json(args.output, {
        **started, "load_average_at_end": os.getloadavg(), "workers": args.workers,
        "seconds": args.seconds, "repeats": args.repeats, "rows": rows, "memory": memories,
        "parts_us": parts_us, "dyno_mb": DYNO_MB,
        "load_generator": "wrk 1 thread, Lua script bench/post.lua; 15-word CoNLL test sentences",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
