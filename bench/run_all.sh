#!/usr/bin/env bash
# Every benchmark in one run, then BENCHMARKS.md and bench/latency_throughput.png.
# Loopback only; about 25 minutes on 2 cores. Take the figures on a quiet machine.
#   bash bench/run_all.sh            # the full run
#   QUICK=1 bash bench/run_all.sh    # a dry run with small counts (a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
python3 -m pip install -q -r requirements-dev.txt -r bench/requirements.txt

if pgrep -f "model\.train" >/dev/null && [ -z "${QUICK:-}" ]; then
  echo "model.training.train is running: the figures would be noisy. Wait for it, or use QUICK=1 for a dry run." >&2
  exit 1
fi

if [ -n "${QUICK:-}" ]; then
  speed="--repeats 1 --limit 300 --latency-scale 0.1"; profile="--repeats 1"; cold="--repeats 1"
  memory="--load-seconds 3"; load="--connections 1 4 16 --seconds 2 --repeats 1"
else
  speed=""; profile=""; cold=""; memory=""; load=""
fi

set -x
python3 bench/model_speed.py $speed --json bench/results/model_speed.json
python3 bench/batch_profile.py $profile --json bench/results/batch_profile.json
python3 bench/ensemble_cost.py $profile
python3 bench/score_cost.py $profile
python3 bench/calibration.py
python3 bench/cold_start.py $cold
python3 bench/memory.py $memory
python3 bench/load.py $load
python3 bench/load.py $load --backends onnx --connections 128 256 --output load_capacity.json
python3 bench/report.py
