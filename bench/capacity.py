"""One dyno's capacity: the most requests a second one gunicorn (the project's
gunicorn.conf.py, WEB_CONCURRENCY workers, the onnx backend) serves with p99
latency under a target.

    python bench/capacity.py [--workers 2] [--p99-ms 100] [--seconds 5] [--repeats 3]

wrk (bench/load.py's way: one thread, loopback, 15-word CoNLL test sentences as
{"text": ...}) loads the server at 1, 2, 4, ... connections; each level runs
--repeats times and its medians are kept. The climb stops at the first level
whose p99 is over the target, or that serves fewer requests than the level
before. The capacity is the best req/s among the levels under the target.
"""

from __future__ import annotations

import argparse

from common import bodies_file, gunicorn, machine, require_wrk, write_json
from common import wrk as run_wrk
from load import WARM_UP_CONNECTIONS, WARM_UP_SECONDS, measure, median_row

MAX_CONNECTIONS = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--p99-ms", type=float, default=100)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="capacity.json")
    args = parser.parse_args()
    require_wrk()

    rows = []
    with bodies_file() as bodies, gunicorn(args.workers, "onnx") as server:
        run_wrk(server.url, WARM_UP_CONNECTIONS, WARM_UP_SECONDS, bodies)
        connections = 1
        while connections <= MAX_CONNECTIONS:
            row = {"connections": connections,
                   **median_row([measure(server.url, connections, args.seconds, bodies) for _ in range(args.repeats)])}
            rows.append(row)
            print(f"c={connections:<4} {row['rps']:7.1f} req/s  p50 {row['p50_ms']:6.1f}  p99 {row['p99_ms']:6.1f} ms  "
                  f"errors {row['errors']}", flush=True)
            if row["p99_ms"] >= args.p99_ms or (len(rows) > 1 and row["rps"] < rows[-2]["rps"]):
                break
            connections *= 2
    under = [row for row in rows if row["p99_ms"] < args.p99_ms and row["errors"] == 0]
    best = max(under, key=lambda row: row["rps"], default=None)
    if best is None:
        print(f"no level kept p99 under {args.p99_ms:g} ms")
    else:
        print(f"capacity: {best['rps']:.0f} req/s at p99 {best['p99_ms']:.1f} ms < {args.p99_ms:g} ms "
              f"({best['connections']} connections, {args.workers} workers)")
    path = write_json(args.output, {**machine(), "workers": args.workers, "p99_target_ms": args.p99_ms,
                                    "seconds": args.seconds, "repeats": args.repeats, "rows": rows, "capacity": best})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
