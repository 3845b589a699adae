"""What serving one model costs against another, side by side in one run: issue 11's
"p50 and memory within 10% of today's", for the cased-plus-caseless model against
the cased one it replaced.

    python bench/model_cost.py --before .cache/previous_crf_served --after results/crf \
        [--repeats 7] [--memory-repeats 3]  # writes bench/results/model_cost.json

The previous model as the service last served it (with the meta.json and
calibration.json that the service reads): `mkdir -p .cache/previous_crf_served &&
git archive e59d320 results/crf | tar -x -C .cache/previous_crf_served --strip-components=2`.

1. Latency, p50 and p99, of one 15-word CoNLL-2003 test sentence through
   serve.get_model_api(directory, "onnx"), as written and lowercased (the
   lowercased one goes to the caseless networks where a model has them).
2. Batched throughput: the whole test set, each sentence's words joined by
   spaces, in one model_api call; tokens/s counts the CoNLL tokens.
3. Memory of a real gunicorn worker (tests/launcher.py, WEB_CONCURRENCY=1,
   NER_MODEL_DIR set to the model): RSS, PSS and USS once it is ready, and
   again after the same sequence of ordinary requests.

Both models are loaded in this one process for 1 and 2, with ONNX Runtime's
one intra-op thread (as the runtime sets it). Every figure is the median of
interleaved repeats; the order of the two models alternates from one repeat to
the next, so that a noisy moment or a warm cache favours neither.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
from common import (
    DEFAULT_DATA_DIR,
    ROOT,
    call_times_ms,
    launcher,
    machine,
    memory,
    percentile,
    read_conll,
    throughput,
    write_json,
)

import serve
from nerserve.tagger import files
from nerserve.tagger.casing import is_caseless

LATENCY_WORDS = 15  # the first test sentence of this length, as in model_speed.py
LATENCY_CALLS = 300  # a repeat
REQUESTS = 200  # POST /api between the two memory readings
REQUEST_MIN_WORDS = 8  # ordinary news sentences, not "-DOCSTART-" or a score line
LOWERCASE_EVERY = 4  # every fourth request is lowercased


def post(url: str, text: str) -> None:
    request = urllib.request.Request(url + "/api", data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"POST /api answered {response.status}")
        response.read()


def served_memory(model: Path, requests: list[str]) -> dict[str, dict[str, float]]:
    """One gunicorn worker serving `model`: its memory once ready, and after `requests`."""
    with (tempfile.TemporaryDirectory() as tmp,
          launcher.gunicorn(Path(tmp) / "gunicorn.log", 1, NER_MODEL_DIR=str(model.resolve())) as server):
        (worker,) = server.workers()
        ready = memory(worker)
        for text in requests:
            post(server.url, text)
        return {"ready": ready, "after_requests": memory(worker)}


def alternating(names: list[str], repeat: int) -> list[str]:
    return names if repeat % 2 == 0 else names[::-1]


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def request_texts(sentences: list[list[str]]) -> list[str]:
    ordinary = [" ".join(words) for words in sentences if len(words) >= REQUEST_MIN_WORDS][:REQUESTS]
    return [text.lower() if i % LOWERCASE_EVERY == LOWERCASE_EVERY - 1 else text for i, text in enumerate(ordinary)]


def measure_speed(models: dict[str, Path], sentences: list[list[str]], repeats: int) -> dict[str, list[dict]]:
    texts = [" ".join(words) for words in sentences]
    tokens = sum(len(words) for words in sentences)
    latency_text = next(text for text, words in zip(texts, sentences, strict=True) if len(words) == LATENCY_WORDS)
    apis = {name: serve.get_model_api(directory, "onnx") for name, directory in models.items()}
    cases: dict[str, Callable[[str], str]] = {"as written": str, "lowercased": str.lower}
    runs: dict[str, list[dict]] = {name: [] for name in models}
    for repeat in range(repeats):
        for name in alternating(list(models), repeat):
            run = {"batched tok/s, as written": throughput(apis[name], texts, tokens)}
            for case, recase in cases.items():
                times = call_times_ms(apis[name], [recase(latency_text)], LATENCY_CALLS)
                run[f"p50 ms, {case}"] = statistics.median(times)
                run[f"p99 ms, {case}"] = percentile(times, 99)
            runs[name].append(run)
            print(f"  speed repeat {repeat + 1}, {name}: {run['batched tok/s, as written']:,.0f} tok/s, "
                  f"p50 {run['p50 ms, as written']:.2f} / {run['p50 ms, lowercased']:.2f} ms", flush=True)
    return runs


def measure_memory(models: dict[str, Path], requests: list[str], repeats: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name in models}
    for repeat in range(repeats):
        for name in alternating(list(models), repeat):
            served = served_memory(models[name], requests)
            runs[name].append({f"worker {m.upper()} MB, {when.replace('_', ' ')}": served[when][f"{m}_mb"]
                               for when in ("ready", "after_requests") for m in ("rss", "pss", "uss")})
            print(f"  memory repeat {repeat + 1}, {name}: RSS {served['ready']['rss_mb']:.0f} MB ready, "
                  f"{served['after_requests']['rss_mb']:.0f} MB after {len(requests)} requests", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=ROOT / ".cache" / "previous_crf_served")
    parser.add_argument("--after", type=Path, default=files.COMMITTED_MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=7, help="speed repeats (latency and throughput)")
    parser.add_argument("--memory-repeats", type=int, default=3, help="gunicorn starts a model")
    parser.add_argument("--output", default="model_cost.json")
    args = parser.parse_args()
    models = {"before": args.before, "after": args.after}
    started = machine()
    sentences = [s.words for s in read_conll(DEFAULT_DATA_DIR / "test.txt")]
    requests = request_texts(sentences)

    speed = measure_speed(models, sentences, args.repeats)
    memory = measure_memory(models, requests, args.memory_repeats)
    medians = {name: median_of(speed[name]) | median_of(memory[name]) for name in models}
    ratios = {figure: medians["after"][figure] / medians["before"][figure] for figure in medians["before"]}

    print(f"\nmedians of {args.repeats} speed and {args.memory_repeats} memory repeats, interleaved; "
          f"ONNX Runtime, one thread; load average at start {started['load_average_at_start'][0]:.2f}")
    print(f"before: {args.before}   after: {args.after}")
    print(f"{'':<30} {'before':>9} {'after':>9} {'after/before':>13}")
    for figure, ratio in ratios.items():
        print(f"{figure:<30} {medians['before'][figure]:>9,.2f} {medians['after'][figure]:>9,.2f} {ratio:>13.3f}")
    result = {
        **started, "before": str(args.before), "after": str(args.after),
        "repeats": args.repeats, "memory_repeats": args.memory_repeats,
        "latency_words": LATENCY_WORDS, "latency_calls": LATENCY_CALLS,
        "tokens": sum(len(words) for words in sentences), "requests": len(requests),
        # The requests the router sends to caseless networks: the lowercased ones, and any written so.
        "requests_caseless": sum(is_caseless(text.split()) for text in requests),
        "load_average_at_end": psutil.getloadavg(),
        "medians": medians, "after_over_before": ratios, "runs": {"speed": speed, "memory": memory},
    }
    print(f"wrote {write_json(args.output, result)}")


if __name__ == "__main__":
    main()
