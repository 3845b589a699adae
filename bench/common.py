"""What the service benchmarks share: a real gunicorn on loopback, wrk, process memory."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# After the repository root is importable.
from nerserve.tagger.backends import BACKENDS  # noqa: F401  (the scripts take it from here)
from nerserve.tagger.training.data import DEFAULT_DATA_DIR, read_conll
from tests import launcher

RESULTS = ROOT / "bench" / "results"
LUA_SCRIPT = ROOT / "bench" / "post.lua"
# The request bodies: CoNLL test sentences of 15 words, as {"text": ...}.
LOAD_WORDS = 15


@contextmanager
def gunicorn(workers: int, backend: str, **env: str):
    """The service as the tests start it (tests/launcher.py), on loopback, with NER_BACKEND and `env` set."""
    with (tempfile.TemporaryDirectory() as tmp,
          launcher.gunicorn(Path(tmp) / "gunicorn.log", workers, NER_BACKEND=backend,
                            TF_CPP_MIN_LOG_LEVEL="3", **env) as server):
        yield server


def ordinary_bodies() -> list[bytes]:
    """The ordinary requests every benchmark sends: {"text": ...} of each CoNLL test sentence of LOAD_WORDS words."""
    return [json.dumps({"text": " ".join(s.words)}).encode()
            for s in read_conll(DEFAULT_DATA_DIR / "test.txt") if len(s.words) == LOAD_WORDS]


@contextmanager
def bodies_file():
    """A temporary file of request bodies for wrk (post.lua), one JSON a line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bodies.jsonl"
        path.write_bytes(b"".join(body + b"\n" for body in ordinary_bodies()))
        yield path


def wrk(url: str, connections: int, seconds: int, bodies_file: Path, timeout_s: float = 5,
        headers: dict[str, str] | None = None) -> dict:
    """One wrk run (one thread) posting the bodies in turn, with `headers`; its summary as a dict."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
               "-s", str(LUA_SCRIPT), url + "/api", "--", str(bodies_file),
               *(f"{name}: {value}" for name, value in (headers or {}).items())]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    line = next(line for line in output.splitlines() if line.startswith("JSON "))
    return json.loads(line[len("JSON "):])


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (bench/run_all.sh does)")


def memory(process: psutil.Process) -> dict[str, float]:
    """RSS, PSS (shared pages split among the processes mapping them) and USS
    (the pages only this process maps), in MB."""
    info = process.memory_full_info()
    return {"rss_mb": info.rss / 2**20, "pss_mb": info.pss / 2**20, "uss_mb": info.uss / 2**20}


def machine() -> dict:
    """Where and when the figures were taken, and how busy the machine was."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(), "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "command": " ".join(["python", *sys.argv]),
    }


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    return result.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2))
    return path


def throughput(tag: Callable[[list], object], batch: list, tokens: int) -> float:
    """Tokens a second of one call tag(batch) that tags `tokens` tokens."""
    started = time.perf_counter()
    tag(batch)
    return tokens / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (numpy's linear interpolation), as every benchmark reports p50 and p99."""
    return float(np.percentile(values, q))


def call_times_ms(tag: Callable[[list], object], batch: list, calls: int) -> list[float]:
    """How long each of `calls` calls of tag(batch) takes, in milliseconds."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        tag(batch)
        times.append((time.perf_counter() - started) * 1000)
    return times


def side_by_side(ways: dict[str, Callable[[list], object]], sentences: list[list[str]], latency_sentence: list[str],
                 repeats: int, latency_calls: int) -> dict[str, dict[str, float]]:
    """For each way of tagging, the batched tokens a second over `sentences`
    ("tok/s") and the median ms of one call on `latency_sentence` ("ms"):
    medians of `repeats` runs, the ways interleaved, after one warm-up call
    each (every batch shape once)."""
    tokens = sum(len(s) for s in sentences)
    for tag in ways.values():
        tag(sentences)
    figures: dict[str, dict[str, list[float]]] = {name: {"tok/s": [], "ms": []} for name in ways}
    for _ in range(repeats):
        for name, tag in ways.items():
            figures[name]["tok/s"].append(throughput(tag, sentences, tokens))
            figures[name]["ms"].append(statistics.median(call_times_ms(tag, [latency_sentence], latency_calls)))
    return {name: {k: statistics.median(v) for k, v in f.items()} for name, f in figures.items()}


def print_side_by_side(medians: dict[str, dict[str, float]], tokens: int, repeats: int, latency_words: int) -> None:
    print(f"test set, {tokens:,} tokens; medians of {repeats} runs; ONNX Runtime, one thread")
    print(f"{'':<14} {'batched tok/s':>14} {f'{latency_words}-word sentence p50 ms':>24}")
    for name, m in medians.items():
        print(f"{name:<14} {m['tok/s']:>14,.0f} {m['ms']:>24.3f}")


def pyplot():
    """matplotlib's pyplot, drawing to files only. Imported when a plot is
    drawn: matplotlib is a benchmark requirement (bench/requirements.txt), and
    the tests read every script's options without it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt
