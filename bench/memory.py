"""Memory of the service: RSS and PSS of gunicorn's master and each worker, and
the totals, at idle and after load, for 2 and 4 workers, both backends.

    python bench/memory.py [--workers 2 4] [--load-seconds 20] [--connections 8]

PSS (proportional set size) counts a page shared by n processes as 1/n in each,
so the PSS total is what the processes take together; the RSS total counts
shared pages once a process, and overstates it. Heroku's 512 MB limit is about
the dyno's memory as a whole, closer to the PSS total.
"""

from __future__ import annotations

import argparse
import time

import psutil
from common import BACKENDS, bodies_file, gunicorn, machine, memory, require_wrk, write_json
from common import wrk as run_wrk

IDLE_SETTLE_S = 2
DYNO_MB = 512


def snapshot(master_pid: int) -> dict:
    master = psutil.Process(master_pid)
    workers = master.children()
    per_worker = [memory(worker) for worker in workers]
    master_memory = memory(master)
    everything = [master_memory, *per_worker]
    return {
        "master": master_memory, "workers": per_worker,
        "total_rss_mb": sum(m["rss_mb"] for m in everything),
        "total_pss_mb": sum(m["pss_mb"] for m in everything),
    }


def describe(label: str, snap: dict) -> str:
    worker_rss = ", ".join(f"{w['rss_mb']:.0f}" for w in snap["workers"])
    worker_pss = ", ".join(f"{w['pss_mb']:.0f}" for w in snap["workers"])
    return (f"{label:<11} master RSS {snap['master']['rss_mb']:.0f} PSS {snap['master']['pss_mb']:.0f} | "
            f"workers RSS [{worker_rss}] PSS [{worker_pss}] | total RSS {snap['total_rss_mb']:.0f} "
            f"PSS {snap['total_pss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--load-seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--output", default="memory.json")
    args = parser.parse_args()
    require_wrk()

    rows = []
    with bodies_file() as bodies:
        for workers in args.workers:
            for backend in args.backends:
                with gunicorn(workers, backend) as server:
                    time.sleep(IDLE_SETTLE_S)
                    idle = snapshot(server.process.pid)
                    load = run_wrk(server.url, args.connections, args.load_seconds, bodies)
                    after = snapshot(server.process.pid)
                rows.append({"workers": workers, "backend": backend, "idle": idle, "after_load": after,
                             "load_requests": load["requests"], "load_errors": sum(load["errors"].values()),
                             "fits_dyno": after["total_pss_mb"] <= DYNO_MB})
                print(f"workers {workers} {backend}")
                print("  " + describe("idle", idle))
                print("  " + describe("after load", after) + f" ({load['requests']} requests)", flush=True)
    path = write_json(args.output, {**machine(), "load_seconds": args.load_seconds,
                                    "connections": args.connections, "dyno_mb": DYNO_MB, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
