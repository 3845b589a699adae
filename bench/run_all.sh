#!/usr/bin/env bash
# Every benchmark in one run, then BENCHMARKS.md and bench/latency_throughput.png.
# Loopback only; about 25 minutes on 2 cores. Take the figures on a quiet machine.
#   bash bench/run_all.sh            # the full run
#   QUICK=1 bash bench/run_all.sh    # a dry run with small counts (a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
# nginx only for bench/nginx_front.py, which measures the front that was not chosen (issue 22).
command -v nginx >/dev/null || (apt-get update && apt-get install -y nginx-light)
# The project's virtual environment (the Makefile makes it); gunicorn from there too.
PYTHON=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"
"$PYTHON" -m pip install -q -r requirements-dev.txt -r bench/requirements.txt

if pgrep -f "tagger\.training\.train" >/dev/null && [ -z "${QUICK:-}" ]; then
  echo "nerserve.tagger.training.train is running: the figures would be noisy. Wait for it, or use QUICK=1 for a dry run." >&2
  exit 1
fi

if [ -n "${QUICK:-}" ]; then
  speed="--repeats 1 --limit 300 --latency-scale 0.1"; profile="--repeats 1"; cold="--repeats 1"
  memory="--load-seconds 3"; load="--connections 1 4 16 --seconds 2 --repeats 1"; capacity="--seconds 2 --repeats 1"
  bounded="--texts 5 --slow-connections 8 --slow-seconds 4 --load-seconds 1 --rounds 1"
  public="--seconds 2 --repeats 1"; cost="--share-seconds 3 --load-seconds 1 --rounds 1"
  stalled="--seconds 15 --stalled 100 --trickling 20 --load-seconds 1 --rounds 1"; front="--load-seconds 1 --rounds 1"
  steps="--rounds 1 --limit 300"
else
  speed=""; profile=""; cold=""; memory=""; load=""; capacity=""; bounded=""; public=""; cost=""; steps=""
  stalled="--rounds 9 --load-seconds 3"; front="--rounds 5"
fi

set -x
"$PYTHON" bench/model_speed.py $speed --json bench/results/model_speed.json
"$PYTHON" bench/batch_profile.py $profile --json bench/results/batch_profile.json
"$PYTHON" bench/ensemble_cost.py $profile
"$PYTHON" bench/score_cost.py $profile
"$PYTHON" bench/calibration.py
"$PYTHON" bench/cold_start.py $cold
"$PYTHON" bench/memory.py $memory
"$PYTHON" bench/load.py $load
"$PYTHON" bench/load.py $load --backends onnx --connections 128 256 --output load_capacity.json
"$PYTHON" bench/capacity.py $capacity
"$PYTHON" bench/windowing_f1.py
"$PYTHON" bench/bounded_requests.py $bounded
"$PYTHON" bench/request_cost.py $cost
"$PYTHON" bench/stalled_connections.py $stalled
"$PYTHON" bench/nginx_front.py $front
"$PYTHON" bench/slug_size.py
"$PYTHON" bench/public_overhead.py $public
# Issue 32's: the service before it, for the side-by-side runs (CHECKOUT_BEFORE).
before=$(mktemp -d) && git archive 442627e | tar -x -C "$before" && ln -s "$PWD/.venv" "$before/.venv"
"$PYTHON" bench/heavy_clients.py
"$PYTHON" bench/heavy_clients.py --directory "$before" --output heavy_clients_before.json
"$PYTHON" bench/heavy_clients.py --ignore-retry-after --output heavy_clients_hostile.json
"$PYTHON" bench/never_reading_clients.py
"$PYTHON" bench/quota_concurrency.py
"$PYTHON" bench/stalled_connections.py --skip-flood --baseline-directory "$before" --output ordinary_traffic.json \
  --rounds 5 --load-seconds 4
"$PYTHON" bench/waitress_front.py
# Issue 29's: the service before it (commit 61559b2) beside this one, then its steps, each from a git
# worktree of its commit under .cache/steps/.
before29=$(mktemp -d) && git archive 61559b2 | tar -x -C "$before29" && ln -s "$PWD/.venv" "$before29/.venv"
"$PYTHON" bench/stalled_connections.py --skip-flood --baseline-directory "$before29" --output ordinary_traffic_29.json \
  --rounds 5 --load-seconds 4
"$PYTHON" bench/steps.py $steps
"$PYTHON" bench/report.py
