"""The service under load: real gunicorn (the project's gunicorn.conf.py), both
backends side by side, WEB_CONCURRENCY 1, 2 and 4, rising concurrency.

    python bench/load.py [--workers 1 2 4] [--connections 1 2 4 8 16 32 64] [--seconds 5] [--repeats 3]

wrk (one thread, on the same machine, loopback only) POSTs {"text": ...} bodies
of 15-word CoNLL test sentences to /api. For each worker count, one server a
backend is started and both are loaded in turn at every level, so that a noisy
moment hits both alike; every level is run --repeats times for --seconds each
and the median is kept. Bounded: levels x repeats x seconds per server pair.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack
from pathlib import Path

from common import BACKENDS, bodies_file, gunicorn, machine, require_wrk, write_json
from common import wrk as run_wrk

WARM_UP_SECONDS = 2
WARM_UP_CONNECTIONS = 4


def measure(url: str, connections: int, seconds: float, bodies: Path, headers: dict[str, str] | None = None) -> dict:
    summary = run_wrk(url, connections, seconds, bodies, headers=headers)
    duration = summary["duration_us"] / 1e6
    latency = summary["latency_us"]
    return {
        "requests": summary["requests"], "rps": summary["requests"] / duration,
        "p50_ms": latency["p50"] / 1000, "p95_ms": latency["p95"] / 1000, "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000, "errors": sum(summary["errors"].values()), "error_kinds": summary["errors"],
    }


def median_row(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")
    return {**{key: statistics.median(run[key] for run in runs) for key in keys},
            "requests": sum(run["requests"] for run in runs), "errors": sum(run["errors"] for run in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="load.json")
    args = parser.parse_args()
    require_wrk()

    rows = []
    with bodies_file() as bodies:
        for workers in args.workers:
            with ExitStack() as stack:
                servers = {b: stack.enter_context(gunicorn(workers, b)) for b in args.backends}
                for server in servers.values():
                    run_wrk(server.url, WARM_UP_CONNECTIONS, WARM_UP_SECONDS, bodies)
                runs: dict[tuple[str, int], list[dict]] = {}
                for _ in range(args.repeats):
                    for connections in args.connections:
                        for backend, server in servers.items():
                            runs.setdefault((backend, connections), []).append(
                                measure(server.url, connections, args.seconds, bodies))
                for (backend, connections), level_runs in runs.items():
                    row = {"workers": workers, "backend": backend, "connections": connections,
                           **median_row(level_runs), "runs": level_runs}
                    rows.append(row)
                    print(f"workers {workers} {backend:<10} c={connections:<3} {row['rps']:7.1f} req/s  "
                          f"p50 {row['p50_ms']:7.1f}  p95 {row['p95_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  "
                          f"errors {row['errors']}", flush=True)
    path = write_json(args.output, {
        **machine(), "seconds": args.seconds, "repeats": args.repeats, "rows": rows,
        "load_generator": "wrk 1 thread, Lua script bench/post.lua; 15-word CoNLL test sentences",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
