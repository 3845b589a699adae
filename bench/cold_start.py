"""Cold start, both backends: from process start to the first 200 from /readyz
(gunicorn with the project's config, 2 workers), and from `python` start to the
first tagged sentence through serve.py (one process, no web server).

    python bench/cold_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from common import BACKENDS, ROOT, gunicorn, machine, write_json

SERVICE_WORKERS = 2
FIRST_TAG = (
    "from serve import get_model_api; "
    "result = get_model_api()(['Angela Merkel visited Washington.']); "
    "assert result[0]['entities'], result"
)


def process_to_first_tag(backend: str) -> float:
    env = {**os.environ, "NER_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FIRST_TAG], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--output", default="cold_start.json")
    args = parser.parse_args()

    runs: dict[str, dict[str, list[float]]] = {b: {"service_s": [], "first_tag_s": []} for b in args.backends}
    for _ in range(args.repeats):
        for backend in args.backends:  # interleaved
            with gunicorn(SERVICE_WORKERS, backend) as server:
                runs[backend]["service_s"].append(server.ready_s)
            runs[backend]["first_tag_s"].append(process_to_first_tag(backend))
    rows = []
    for backend, times in runs.items():
        row = {"backend": backend, **{f"{k}_median": statistics.median(v) for k, v in times.items()},
               **{f"{k}_runs": v for k, v in times.items()}}
        rows.append(row)
        print(f"{backend:<10} gunicorn start -> /readyz 200: {row['service_s_median']:.2f} s   "
              f"python start -> first tagged sentence: {row['first_tag_s_median']:.2f} s")
    path = write_json(args.output, {**machine(), "repeats": args.repeats, "workers": SERVICE_WORKERS, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
